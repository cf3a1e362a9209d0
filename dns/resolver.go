package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults for [Config]. Two seconds per query is long enough for a cold
// recursive lookup and short enough that a dead resolver does not hold a
// worker for long; eight hops is far beyond any sane CNAME chain (CDNs use
// two or three) while still catching runaway chains.
const (
	DefaultTimeout  = 2 * time.Second
	DefaultMaxChain = 8
)

// ednsBufferSize is the DNS Flag Day 2020 recommendation: large enough for
// ordinary answers, small enough to avoid IP fragmentation. Bigger answers
// come back truncated and are retried over TCP.
const ednsBufferSize = 1232

// Sentinel errors for the ways a resolver can fail. A [QueryError] wraps one
// per server tried, so errors.Is(err, ErrTimeout) works on the whole lookup.
// None of them is about the tenant's records.
var (
	ErrTimeout     = errors.New("timeout")
	ErrServFail    = errors.New("SERVFAIL")
	ErrRefused     = errors.New("REFUSED")
	ErrNetwork     = errors.New("network error")
	ErrBadResponse = errors.New("bad response")
)

// Config configures a [Resolver]. Zero values take the defaults.
type Config struct {
	// Servers are recursive resolvers ("host:port", port 53 when omitted),
	// tried in order; see ParseServers and ServersFromResolvConf.
	Servers []string
	// Timeout bounds each query to one server, not the whole lookup.
	Timeout time.Duration
	// MaxChain is the most CNAME hops followed before a chain is reported
	// as too long.
	MaxChain int
}

// Resolver queries configured recursive resolvers directly. It is safe for
// concurrent use and holds no per-lookup state.
type Resolver struct {
	servers  []string
	maxChain int
	udp, tcp *mdns.Client
}

// NewResolver validates cfg and applies the defaults.
func NewResolver(cfg Config) (*Resolver, error) {
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("new resolver: %w: no servers configured", ErrBadServer)
	}
	servers := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		addr, err := parseServer(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("new resolver: %w: %q: %s", ErrBadServer, s, err)
		}
		servers = append(servers, addr)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("new resolver: negative timeout %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxChain < 0 {
		return nil, fmt.Errorf("new resolver: negative MaxChain %d", cfg.MaxChain)
	}
	if cfg.MaxChain == 0 {
		cfg.MaxChain = DefaultMaxChain
	}
	return &Resolver{
		servers:  servers,
		maxChain: cfg.MaxChain,
		udp:      &mdns.Client{Net: "udp", Timeout: cfg.Timeout},
		tcp:      &mdns.Client{Net: "tcp", Timeout: cfg.Timeout},
	}, nil
}

// Failure is one server's failure to answer one query.
type Failure struct {
	Server string
	// Reason is short and tenant-presentable: "timeout", "SERVFAIL",
	// "REFUSED", "network error", ...
	Reason string
	Err    error
}

// QueryError says that no configured server gave a usable answer to one
// query. It lists every server tried, because "timeout at 10.0.0.10:53;
// SERVFAIL at 10.0.0.11:53" points an operator at the right machine.
type QueryError struct {
	Name     string // the name queried, without trailing dot
	Type     string // "A", "CAA", ...
	Failures []Failure
}

func (e *QueryError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = fmt.Sprintf("%s: %v", f.Server, f.Err)
	}
	return fmt.Sprintf("query %s %s: %s", e.Name, e.Type, strings.Join(parts, "; "))
}

// Unwrap exposes each failure so errors.Is finds the sentinels.
func (e *QueryError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}

// Summary is the short form used in tenant messages: "timeout at
// 127.0.0.1:53; SERVFAIL at 127.0.0.2:53".
func (e *QueryError) Summary() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.Reason + " at " + f.Server
	}
	return strings.Join(parts, "; ")
}

// lookup is the queries of one lookup or check, asked in turn. It keeps one
// UDP socket per server for them, so a check of four or five queries sets
// up and tears down one socket rather than one per query (opening and
// closing sockets was a large share of the worker's CPU in a DNS-bound
// load). Each query still has its own random ID, replies with another ID
// are skipped, and the socket (on a random port) lives only as long as the
// lookup; one that failed a query is closed, so a late reply cannot be read
// as the next query's. Not safe for concurrent use.
type lookup struct {
	*Resolver
	conns map[string]*mdns.Conn
}

func (r *Resolver) newLookup() *lookup { return &lookup{Resolver: r} }

// close closes the lookup's sockets.
func (l *lookup) close() {
	for server, conn := range l.conns {
		conn.Close()
		delete(l.conns, server)
	}
}

// exchange asks each server in turn until one answers NOERROR or NXDOMAIN,
// the two rcodes that describe the tenant's zone. SERVFAIL, REFUSED and the
// rest describe the server, so the next one gets a chance. It returns the
// answer and the server that gave it.
func (l *lookup) exchange(ctx context.Context, name string, qtype uint16) (*mdns.Msg, string, error) {
	qerr := &QueryError{Name: display(name), Type: mdns.TypeToString[qtype]}
	for _, server := range l.servers {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("query %s %s: %w", qerr.Name, qerr.Type, err)
		}
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), qtype)
		q.RecursionDesired = true
		q.SetEdns0(ednsBufferSize, false)

		resp, err := l.exchangeOne(ctx, q, server)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, "", fmt.Errorf("query %s %s: %w", qerr.Name, qerr.Type, ctxErr)
			}
			qerr.Failures = append(qerr.Failures, classify(server, err))
			continue
		}
		switch resp.Rcode {
		case mdns.RcodeSuccess, mdns.RcodeNameError:
			return resp, server, nil
		case mdns.RcodeServerFailure:
			qerr.Failures = append(qerr.Failures, Failure{Server: server, Reason: "SERVFAIL", Err: ErrServFail})
		case mdns.RcodeRefused:
			qerr.Failures = append(qerr.Failures, Failure{Server: server, Reason: "REFUSED", Err: ErrRefused})
		default:
			rc := mdns.RcodeToString[resp.Rcode]
			qerr.Failures = append(qerr.Failures, Failure{Server: server, Reason: rc,
				Err: fmt.Errorf("%w: rcode %s", ErrBadResponse, rc)})
		}
	}
	return nil, "", qerr
}

// exchangeOne sends q to one server over UDP and repeats it over TCP when
// the answer is truncated: a truncated answer may miss the very CNAME or
// CAA record being looked for, so it is never used.
func (l *lookup) exchangeOne(ctx context.Context, q *mdns.Msg, server string) (*mdns.Msg, error) {
	resp, err := l.exchangeUDP(ctx, q, server)
	if err == nil && resp.Truncated {
		resp, _, err = l.tcp.ExchangeContext(ctx, q, server)
		if err != nil {
			err = fmt.Errorf("retry over tcp after truncated answer: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !sameName(resp.Question[0].Name, q.Question[0].Name) ||
		resp.Question[0].Qtype != q.Question[0].Qtype {
		return nil, fmt.Errorf("%w: answer is for a different question", ErrBadResponse)
	}
	return resp, nil
}

// exchangeUDP asks server over the lookup's socket to it, opening one when
// there is none.
func (l *lookup) exchangeUDP(ctx context.Context, q *mdns.Msg, server string) (*mdns.Msg, error) {
	conn := l.conns[server]
	if conn == nil {
		var err error
		if conn, err = l.udp.DialContext(ctx, server); err != nil {
			return nil, err
		}
		if l.conns == nil {
			l.conns = map[string]*mdns.Conn{}
		}
		l.conns[server] = conn
	}
	resp, _, err := l.udp.ExchangeWithConnContext(ctx, q, conn)
	if err != nil {
		conn.Close()
		delete(l.conns, server)
	}
	return resp, err
}

func classify(server string, err error) Failure {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return Failure{Server: server, Reason: "timeout", Err: fmt.Errorf("%w: %w", ErrTimeout, err)}
	case errors.Is(err, ErrBadResponse):
		return Failure{Server: server, Reason: "bad response", Err: err}
	case errors.As(err, &opErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Failure{Server: server, Reason: "network error", Err: fmt.Errorf("%w: %w", ErrNetwork, err)}
	default:
		return Failure{Server: server, Reason: "bad response", Err: fmt.Errorf("%w: %w", ErrBadResponse, err)}
	}
}

// cnameTarget finds the CNAME owned by name in an answer section.
func cnameTarget(rrs []mdns.RR, name string) (string, bool) {
	for _, rr := range rrs {
		if c, ok := rr.(*mdns.CNAME); ok && sameName(c.Hdr.Name, name) {
			return canonical(c.Target), true
		}
	}
	return "", false
}
