// Package localdns serves RFC 1035 zone files on one loopback port (UDP and
// TCP) outside tests: the dev stack (`portal-domains-dev dev`) points the
// worker's real resolver at it, so demo domains are checked over real DNS
// wire traffic without touching anyone's real zones.
//
// It answers like a recursive resolver that knows only the served zones: it
// chases CNAMEs across them and returns the whole chain, answers NXDOMAIN
// (or NODATA) with the zone's SOA for missing names inside a zone, and
// REFUSED outside every zone. Records can be replaced while it runs (Set),
// which is how the dev stack models a tenant fixing a wrong CNAME.
//
// dns/dnstest is the test-only sibling, built on Zones and Serve here: it
// takes a testing.TB and adds failure modes (SERVFAIL, drops, truncation),
// injecting them through Answer's fault hook. Server injects none and
// returns errors instead of failing a test.
package localdns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// maxChase bounds CNAME chasing the way recursive resolvers do (BIND and
// Unbound stop around 8 to 16 links).
const maxChase = 16

// Zone is one parsed zone file.
type Zone struct {
	apex string // canonical, fully qualified
	soa  *mdns.SOA
	rrs  map[string]map[uint16][]mdns.RR // canonical owner -> type -> records
}

// Apex is the zone's origin without the trailing dot ("acme.test").
func (z *Zone) Apex() string { return strings.TrimSuffix(z.apex, ".") }

// ParseZone reads a zone file. Its origin is file's base name without
// ".zone" unless the file sets $ORIGIN; it needs exactly one SOA, whose owner
// is the apex, and every record must be inside the zone.
func ParseZone(r io.Reader, file string) (*Zone, error) {
	origin := mdns.Fqdn(strings.TrimSuffix(path.Base(file), ".zone"))
	zp := mdns.NewZoneParser(r, origin, file)
	z := &Zone{rrs: map[string]map[uint16][]mdns.RR{}}
	var rrs []mdns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*mdns.SOA); isSOA {
			if z.soa != nil {
				return nil, fmt.Errorf("zone %s: more than one SOA", file)
			}
			z.soa = soa
			z.apex = mdns.CanonicalName(soa.Hdr.Name)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("parse zone %s: %w", file, err)
	}
	if z.soa == nil {
		return nil, fmt.Errorf("zone %s: no SOA record", file)
	}
	for _, rr := range rrs {
		if !inZone(mdns.CanonicalName(rr.Header().Name), z.apex) {
			return nil, fmt.Errorf("zone %s: %s is outside zone %s", file, rr.Header().Name, z.apex)
		}
		z.add(rr)
	}
	return z, nil
}

// LoadZones parses every file in fsys matching pattern (e.g. "*.zone").
func LoadZones(fsys fs.FS, pattern string) ([]*Zone, error) {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, fmt.Errorf("find zone files %s: %w", pattern, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no zone files match %s", pattern)
	}
	zones := make([]*Zone, 0, len(names))
	for _, name := range names {
		f, err := fsys.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open zone %s: %w", name, err)
		}
		z, err := ParseZone(f, name)
		f.Close()
		if err != nil {
			return nil, err
		}
		zones = append(zones, z)
	}
	return zones, nil
}

func inZone(name, apex string) bool {
	return name == apex || apex == "." || strings.HasSuffix(name, "."+apex)
}

func (z *Zone) add(rr mdns.RR) {
	name := mdns.CanonicalName(rr.Header().Name)
	if z.rrs[name] == nil {
		z.rrs[name] = map[uint16][]mdns.RR{}
	}
	t := rr.Header().Rrtype
	z.rrs[name][t] = append(slices.Clone(z.rrs[name][t]), rr)
}

// exists reports whether name owns records or is an empty non-terminal.
func (z *Zone) exists(name string) bool {
	if len(z.rrs[name]) > 0 {
		return true
	}
	for owner, types := range z.rrs {
		if len(types) > 0 && strings.HasSuffix(owner, "."+name) {
			return true
		}
	}
	return false
}

// Zones are the zones one server answers from: a name belongs to the zone
// with the longest apex containing it. Zones does no locking; Server and
// dns/dnstest guard it with their own mutex.
type Zones struct {
	list []*Zone // longest apex first
}

// NewZones puts zones together, failing if two have the same apex.
func NewZones(zones ...*Zone) (*Zones, error) {
	zs := &Zones{}
	for _, z := range zones {
		if slices.ContainsFunc(zs.list, func(o *Zone) bool { return o.apex == z.apex }) {
			return nil, fmt.Errorf("zone %s given twice", z.apex)
		}
		zs.list = append(zs.list, z)
	}
	slices.SortFunc(zs.list, func(a, b *Zone) int { return len(b.apex) - len(a.apex) })
	return zs, nil
}

func (zs *Zones) zoneFor(name string) *Zone {
	for _, z := range zs.list {
		if inZone(name, z.apex) {
			return z
		}
	}
	return nil
}

// Set replaces, for each owner name and type among rrs, that RRset with the
// given records (zone-file syntax with absolute names: "a.example.test. 300
// IN CNAME b.example.test."). Nothing changes if any record is malformed or
// outside every zone.
func (zs *Zones) Set(rrs ...string) error {
	parsed := make([]mdns.RR, 0, len(rrs))
	for _, text := range rrs {
		rr, err := mdns.NewRR(text)
		if err != nil {
			return fmt.Errorf("record %q: %w", text, err)
		}
		if rr == nil {
			return fmt.Errorf("record %q is empty", text)
		}
		parsed = append(parsed, rr)
	}
	for _, rr := range parsed {
		if zs.zoneFor(mdns.CanonicalName(rr.Header().Name)) == nil {
			return fmt.Errorf("record %s is outside every served zone", rr)
		}
	}
	cleared := map[string]bool{}
	for _, rr := range parsed {
		name := mdns.CanonicalName(rr.Header().Name)
		z := zs.zoneFor(name)
		key := fmt.Sprintf("%s/%d", name, rr.Header().Rrtype)
		if !cleared[key] {
			cleared[key] = true
			if z.rrs[name] != nil {
				delete(z.rrs[name], rr.Header().Rrtype)
			}
		}
		z.add(rr)
	}
	return nil
}

// Remove deletes the records of type rrtype at name; rrtype 0 deletes
// every type. A name outside every zone is left alone.
func (zs *Zones) Remove(name string, rrtype uint16) {
	key := mdns.CanonicalName(name)
	z := zs.zoneFor(key)
	if z == nil || z.rrs[key] == nil {
		return
	}
	if rrtype == 0 {
		delete(z.rrs, key)
		return
	}
	delete(z.rrs[key], rrtype)
}

// Fault is a failure injected at one name an answer reaches (the question's
// name or a CNAME target). dns/dnstest injects them; Server never does.
type Fault int

const (
	// NoFault answers normally.
	NoFault Fault = iota
	// FaultDrop sends no answer at all, like a resolver stuck on
	// unreachable authoritative servers: the client times out.
	FaultDrop
	// FaultServFail answers SERVFAIL with no records.
	FaultServFail
	// FaultNoChase stops the answer at the name's CNAME instead of
	// following it, like an authoritative-only server.
	FaultNoChase
)

// Answer builds the reply to req, whose question is qname (canonical) and
// qtype, like a recursive resolver that knows only these zones: it chases
// CNAMEs across them and returns the whole chain, answers NXDOMAIN (or
// NODATA) with the zone's SOA for missing names inside a zone, and REFUSED
// outside every zone. fault, when not nil, is asked about each name the
// answer reaches (only FaultDrop counts for a refused name); drop means
// send nothing.
func (zs *Zones) Answer(req *mdns.Msg, qname string, qtype uint16, fault func(name string) Fault) (m *mdns.Msg, drop bool) {
	faultAt := func(name string) Fault {
		if fault == nil {
			return NoFault
		}
		return fault(name)
	}
	m = new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if req.IsEdns0() != nil {
		m.SetEdns0(1232, false)
	}
	if zs.zoneFor(qname) == nil {
		m.Rcode = mdns.RcodeRefused
		return m, faultAt(qname) == FaultDrop
	}
	cur := qname
	seen := map[string]bool{}
	for range maxChase {
		f := faultAt(cur)
		switch f {
		case FaultDrop:
			return nil, true
		case FaultServFail:
			m.Answer, m.Ns = nil, nil
			m.Rcode = mdns.RcodeServerFailure
			return m, false
		}
		z := zs.zoneFor(cur)
		if z == nil {
			return m, false // the chain leaves the served zones: stop there, as an authoritative server does
		}
		seen[cur] = true
		types := z.rrs[cur]
		if cname := types[mdns.TypeCNAME]; len(cname) > 0 && qtype != mdns.TypeCNAME {
			m.Answer = append(m.Answer, copyRRs(cname)...)
			target := mdns.CanonicalName(cname[0].(*mdns.CNAME).Target)
			if f == FaultNoChase || seen[target] {
				return m, false
			}
			cur = target
			continue
		}
		if rrs := typeRecords(types, qtype); len(rrs) > 0 {
			m.Answer = append(m.Answer, copyRRs(rrs)...)
			return m, false
		}
		if !z.exists(cur) {
			m.Rcode = mdns.RcodeNameError
		}
		m.Ns = []mdns.RR{mdns.Copy(z.soa)}
		return m, false
	}
	return m, false
}

// OneQuestion returns req's question. A message with none or several is
// answered FORMERR on w, and ok is false.
func OneQuestion(w mdns.ResponseWriter, req *mdns.Msg) (q mdns.Question, ok bool) {
	if len(req.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return mdns.Question{}, false
	}
	return req.Question[0], true
}

// UDPSize is the largest answer req's client takes over UDP: 512 bytes, or
// its EDNS0 buffer size if larger. A longer answer is truncated to it (TC
// set), so the client retries over TCP.
func UDPSize(req *mdns.Msg) int {
	size := mdns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), mdns.MinMsgSize)
	}
	return size
}

func typeRecords(types map[uint16][]mdns.RR, qtype uint16) []mdns.RR {
	if qtype != mdns.TypeANY {
		return types[qtype]
	}
	keys := make([]uint16, 0, len(types))
	for t := range types {
		keys = append(keys, t)
	}
	slices.Sort(keys)
	var all []mdns.RR
	for _, t := range keys {
		all = append(all, types[t]...)
	}
	return all
}

func copyRRs(rrs []mdns.RR) []mdns.RR {
	out := make([]mdns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = mdns.Copy(rr)
	}
	return out
}

// Endpoint serves one DNS handler over UDP and TCP on one port.
type Endpoint struct {
	addr     string
	udp, tcp *mdns.Server
}

// Serve serves h on addr ("127.0.0.1:0" picks a free port, the same number
// for UDP and TCP) until Close, and returns once both are serving.
func Serve(addr string, h mdns.Handler) (*Endpoint, error) {
	pc, l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{addr: pc.LocalAddr().String()}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	e.udp = &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: notify}
	e.tcp = &mdns.Server{Listener: l, Handler: h, NotifyStartedFunc: notify}
	failed := make(chan error, 2)
	for _, srv := range []*mdns.Server{e.udp, e.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}()
	}
	timeout := time.After(5 * time.Second)
	for range 2 {
		select {
		case <-started:
		case err := <-failed:
			_ = e.Close(context.Background())
			return nil, fmt.Errorf("localdns: serve on %s: %w", e.addr, err)
		case <-timeout:
			_ = e.Close(context.Background())
			return nil, fmt.Errorf("localdns: server on %s did not start within 5s", e.addr)
		}
	}
	return e, nil
}

// listen opens UDP and TCP on the same port. With port 0 the UDP port is
// random and the same TCP port is usually free; a few attempts make a
// collision with another process harmless.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("localdns: address %q: %w", addr, err)
	}
	attempts := 1
	if port == "0" {
		attempts = 20
	}
	for range attempts {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("localdns: listen on %s/udp: %w", addr, err)
		}
		udpPort := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(udpPort)))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if attempts == 1 {
			return nil, nil, fmt.Errorf("localdns: listen on %s/tcp: %w", addr, err)
		}
	}
	return nil, nil, fmt.Errorf("localdns: no port on %s free for both UDP and TCP", host)
}

// Addr is the endpoint's "host:port", the same port for UDP and TCP.
func (e *Endpoint) Addr() string { return e.addr }

// Close stops serving, waiting up to ctx for in-flight answers.
func (e *Endpoint) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range []*mdns.Server{e.udp, e.tcp} {
		if srv == nil {
			continue
		}
		if err := srv.ShutdownContext(ctx); err != nil && !strings.Contains(err.Error(), "not started") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Server is a running DNS server. Its methods are safe for concurrent use.
type Server struct {
	ep *Endpoint

	mu    sync.RWMutex
	zones *Zones

	onQuery atomic.Pointer[func(Query)]
}

// Query is one question the server received, as OnQuery reports it.
type Query struct {
	// Name is lower case without the trailing dot; Type is "A", "CAA", ...
	Name, Type string
	// At is when the question arrived, before it was answered.
	At time.Time
}

// OnQuery makes the server call f with every question as it arrives (nil
// stops it). The benchmark times "row committed → first DNS query for the
// name" with it, which no log line can give to the millisecond. f runs on
// the serving goroutine before the answer is built: keep it short.
func (s *Server) OnQuery(f func(Query)) {
	if f == nil {
		s.onQuery.Store(nil)
		return
	}
	s.onQuery.Store(&f)
}

// Start serves zones on addr ("127.0.0.1:0" picks a free port, the same
// number for UDP and TCP) until Close.
func Start(addr string, zones ...*Zone) (*Server, error) {
	if len(zones) == 0 {
		return nil, errors.New("localdns: no zones to serve")
	}
	zs, err := NewZones(zones...)
	if err != nil {
		return nil, fmt.Errorf("localdns: %w", err)
	}
	s := &Server{zones: zs}
	if s.ep, err = Serve(addr, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is the server's "host:port", the same port for UDP and TCP.
func (s *Server) Addr() string { return s.ep.Addr() }

// Zones are the served zones' apexes, longest first.
func (s *Server) Zones() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, len(s.zones.list))
	for i, z := range s.zones.list {
		out[i] = z.Apex()
	}
	return out
}

// Close stops serving, waiting up to ctx for in-flight answers.
func (s *Server) Close(ctx context.Context) error { return s.ep.Close(ctx) }

// Set replaces, for each owner name and type among rrs, that RRset with the
// given records (zone-file syntax with absolute names: "a.example.test. 300
// IN CNAME b.example.test."). Nothing changes if any record is malformed or
// outside every served zone.
func (s *Server) Set(rrs ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.zones.Set(rrs...); err != nil {
		return fmt.Errorf("localdns: %w", err)
	}
	return nil
}

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	arrived := time.Now()
	q, ok := OneQuestion(w, req)
	if !ok {
		return
	}
	if f := s.onQuery.Load(); f != nil {
		(*f)(Query{Name: strings.TrimSuffix(mdns.CanonicalName(q.Name), "."), Type: mdns.TypeToString[q.Qtype], At: arrived})
	}
	s.mu.RLock()
	m, _ := s.zones.Answer(req, mdns.CanonicalName(q.Name), q.Qtype, nil)
	s.mu.RUnlock()
	if _, isUDP := w.LocalAddr().(*net.UDPAddr); isUDP {
		m.Truncate(UDPSize(req))
	}
	// A failed write looks to the client like a lost packet; it retries.
	_ = w.WriteMsg(m)
}
