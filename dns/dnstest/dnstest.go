// Package dnstest serves RFC 1035 zone files on loopback with a real
// miekg/dns server, UDP and TCP on one random port, so that tests exercise
// the resolver's real wire behaviour (truncation and TCP retry, timeouts,
// SERVFAIL, REFUSED) instead of a fake.
//
// The server answers like a recursive resolver that knows only the served
// zones: it chases CNAMEs across them and returns the whole chain in the
// answer section, answers NXDOMAIN (with the zone's SOA) for missing names
// inside a zone and REFUSED outside every zone. Records and failure modes can
// be changed while it runs, to model a tenant fixing their DNS between two
// checks or a resolver that goes bad.
package dnstest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// maxChase bounds CNAME chasing the way recursive resolvers do (BIND and
// Unbound stop around 8 to 16 links).
const maxChase = 16

// Query is one query the server received.
type Query struct {
	Name    string // lower case, no trailing dot
	Type    string // "A", "CAA", ...
	Net     string // "udp" or "tcp"
	Dropped bool   // not answered (Drop, DropEvery)
}

// Server is a running DNS server. Its methods are safe for concurrent use.
type Server struct {
	tb   testing.TB
	addr string

	mu        sync.Mutex
	zones     []*zone // longest apex first
	servFail  map[string]bool
	drop      map[string]bool
	truncate  map[string]bool
	noChase   map[string]bool
	dropEvery int
	queries   []Query

	received atomic.Int64
}

type zone struct {
	apex string // canonical, fully qualified
	soa  *mdns.SOA
	rrs  map[string]map[uint16][]mdns.RR // canonical owner -> type -> records
}

// Start loads zone files and serves them until the test ends. A relative
// file name is looked up in fixtures/dns of the module (found by walking up
// from the working directory to go.mod); with no names every *.zone file
// there is served. A file's origin is its name without ".zone" unless the
// file sets $ORIGIN; every zone needs an SOA record, whose owner is the
// zone's apex. Any problem fails the test: a test that needs a DNS server
// never runs without one.
func Start(tb testing.TB, zoneFiles ...string) *Server {
	tb.Helper()
	s := &Server{
		tb:       tb,
		servFail: map[string]bool{},
		drop:     map[string]bool{},
		truncate: map[string]bool{},
		noChase:  map[string]bool{},
	}
	if len(zoneFiles) == 0 {
		dir := FixturesDir(tb)
		matches, err := filepath.Glob(filepath.Join(dir, "*.zone"))
		if err != nil || len(matches) == 0 {
			tb.Fatalf("dnstest: no zone files in %s (%v)", dir, err)
		}
		zoneFiles = matches
	}
	for _, f := range zoneFiles {
		z, err := loadZone(tb, f)
		if err != nil {
			tb.Fatalf("dnstest: %v", err)
		}
		for _, other := range s.zones {
			if other.apex == z.apex {
				tb.Fatalf("dnstest: zone %s loaded twice", z.apex)
			}
		}
		s.zones = append(s.zones, z)
	}
	slices.SortFunc(s.zones, func(a, b *zone) int { return len(b.apex) - len(a.apex) })
	s.listen(tb)
	return s
}

// FixturesDir returns the module's fixtures/dns directory.
func FixturesDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "fixtures", "dns")
		}
		up := filepath.Dir(dir)
		if up == dir {
			tb.Fatalf("dnstest: no go.mod above the working directory")
		}
		dir = up
	}
}

func loadZone(tb testing.TB, file string) (*zone, error) {
	path := file
	if !filepath.IsAbs(path) {
		path = filepath.Join(FixturesDir(tb), file)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open zone: %w", err)
	}
	defer f.Close()
	origin := mdns.Fqdn(strings.TrimSuffix(filepath.Base(path), ".zone"))
	zp := mdns.NewZoneParser(f, origin, path)
	var rrs []mdns.RR
	z := &zone{rrs: map[string]map[uint16][]mdns.RR{}}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*mdns.SOA); isSOA {
			if z.soa != nil {
				return nil, fmt.Errorf("%s: more than one SOA", path)
			}
			z.soa = soa
			z.apex = mdns.CanonicalName(soa.Hdr.Name)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("parse zone: %w", err)
	}
	if z.soa == nil {
		return nil, fmt.Errorf("%s: no SOA record", path)
	}
	for _, rr := range rrs {
		if !inZone(mdns.CanonicalName(rr.Header().Name), z.apex) {
			return nil, fmt.Errorf("%s: %s is outside zone %s", path, rr.Header().Name, z.apex)
		}
		z.add(rr)
	}
	return z, nil
}

func inZone(name, apex string) bool {
	return name == apex || apex == "." || strings.HasSuffix(name, "."+apex)
}

func (z *zone) add(rr mdns.RR) {
	name := mdns.CanonicalName(rr.Header().Name)
	if z.rrs[name] == nil {
		z.rrs[name] = map[uint16][]mdns.RR{}
	}
	t := rr.Header().Rrtype
	z.rrs[name][t] = append(slices.Clone(z.rrs[name][t]), rr)
}

// exists reports whether name owns records or is an empty non-terminal.
func (z *zone) exists(name string) bool {
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

func (s *Server) listen(tb testing.TB) {
	tb.Helper()
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	// The UDP port is random; the same TCP port is usually free, and a few
	// attempts make a collision with another process harmless.
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		tb.Fatalf("dnstest: listen on loopback: %v", err)
	}
	s.addr = pc.LocalAddr().String()

	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &mdns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	tcp := &mdns.Server{Listener: l, Handler: s, NotifyStartedFunc: notify}
	failed := make(chan error, 2)
	for _, srv := range []*mdns.Server{udp, tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}()
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = udp.ShutdownContext(ctx)
		_ = tcp.ShutdownContext(ctx)
	})
	timeout := time.After(5 * time.Second)
	for range 2 {
		select {
		case <-started:
		case err := <-failed:
			tb.Fatalf("dnstest: serve: %v", err)
		case <-timeout:
			tb.Fatalf("dnstest: server did not start within 5s")
		}
	}
}

// Addr is the server's "127.0.0.1:port", the same port for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Set replaces, for each owner name and type among rrs, that RRset with the
// given records (zone-file syntax with absolute names, "a.example.test. 300
// IN CNAME b.example.test."). A malformed record or one outside every served
// zone fails the test that started the server.
func (s *Server) Set(rrs ...string) {
	s.tb.Helper()
	parsed := make([]mdns.RR, 0, len(rrs))
	for _, text := range rrs {
		rr, err := mdns.NewRR(text)
		if err != nil || rr == nil {
			s.tb.Fatalf("dnstest: Set %q: %v", text, err)
			return
		}
		parsed = append(parsed, rr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cleared := map[string]bool{}
	for _, rr := range parsed {
		name := mdns.CanonicalName(rr.Header().Name)
		z := s.zoneFor(name)
		if z == nil {
			s.tb.Fatalf("dnstest: Set %s: outside every served zone", rr)
			return
		}
		key := fmt.Sprintf("%s/%d", name, rr.Header().Rrtype)
		if !cleared[key] {
			cleared[key] = true
			if z.rrs[name] != nil {
				delete(z.rrs[name], rr.Header().Rrtype)
			}
		}
		z.add(rr)
	}
}

// Remove deletes the records of one type at name; rrtype "" or "ANY"
// deletes every type.
func (s *Server) Remove(name, rrtype string) {
	s.tb.Helper()
	key := mdns.CanonicalName(name)
	var t uint16
	if rrtype != "" && !strings.EqualFold(rrtype, "ANY") {
		var ok bool
		if t, ok = mdns.StringToType[strings.ToUpper(rrtype)]; !ok {
			s.tb.Fatalf("dnstest: Remove %s: unknown type %q", name, rrtype)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(key)
	if z == nil || z.rrs[key] == nil {
		return
	}
	if t == 0 {
		delete(z.rrs, key)
		return
	}
	delete(z.rrs[key], t)
}

// ServFail makes every query that reaches name (asked directly or reached
// through a CNAME) fail with SERVFAIL, as a resolver does when the name's
// authoritative servers are broken.
func (s *Server) ServFail(name string) { s.setMode(s.servFail, name, true) }

// Drop makes the server never answer queries that reach name, like a
// resolver stuck on unreachable authoritative servers: clients time out.
func (s *Server) Drop(name string) { s.setMode(s.drop, name, true) }

// Truncate forces UDP answers for name to come back empty with the TC bit,
// so the client must retry over TCP. Answers larger than the client's UDP
// buffer (512 bytes, or the EDNS0 size) are truncated without it.
func (s *Server) Truncate(name string) { s.setMode(s.truncate, name, true) }

// NoChase makes answers stop at name's CNAME instead of following it, like
// an authoritative-only server, so the client has to query the target
// itself.
func (s *Server) NoChase(name string) { s.setMode(s.noChase, name, true) }

// Heal undoes ServFail, Drop, Truncate and NoChase for name.
func (s *Server) Heal(name string) {
	for _, m := range []map[string]bool{s.servFail, s.drop, s.truncate, s.noChase} {
		s.setMode(m, name, false)
	}
}

// DropEvery drops every n-th query the server receives (1/n of the
// packets, deterministically so tests are repeatable); n <= 0 stops
// dropping.
func (s *Server) DropEvery(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropEvery = n
	s.received.Store(0)
}

func (s *Server) setMode(m map[string]bool, name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		m[mdns.CanonicalName(name)] = true
	} else {
		delete(m, mdns.CanonicalName(name))
	}
}

// Queries returns the queries received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

func (s *Server) zoneFor(name string) *zone {
	for _, z := range s.zones {
		if inZone(name, z.apex) {
			return z
		}
	}
	return nil
}

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	if len(req.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	qname := mdns.CanonicalName(q.Name)
	entry := Query{Name: strings.TrimSuffix(qname, "."), Type: mdns.TypeToString[q.Qtype], Net: network}

	s.mu.Lock()
	n := s.received.Add(1)
	if s.dropEvery > 0 && n%int64(s.dropEvery) == 0 {
		entry.Dropped = true
		s.queries = append(s.queries, entry)
		s.mu.Unlock()
		return
	}
	m, drop := s.answer(req, qname, q.Qtype)
	entry.Dropped = drop
	s.queries = append(s.queries, entry)
	truncate := s.truncate[qname]
	s.mu.Unlock()
	if drop {
		return
	}

	if network == "udp" {
		size := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		}
		if truncate {
			m.Answer, m.Ns = nil, nil
			m.Truncated = true
		} else {
			m.Truncate(size)
		}
	}
	// A failed write looks to the client like a lost packet, which is all
	// a test could learn from it; logging here could outlive the test.
	_ = w.WriteMsg(m)
}

// answer builds the reply; s.mu is held. drop means send nothing.
func (s *Server) answer(req *mdns.Msg, qname string, qtype uint16) (m *mdns.Msg, drop bool) {
	m = new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(1232, false)
	}
	if s.zoneFor(qname) == nil {
		m.Rcode = mdns.RcodeRefused
		return m, s.drop[qname]
	}
	cur := qname
	seen := map[string]bool{}
	for range maxChase {
		if s.drop[cur] {
			return nil, true
		}
		if s.servFail[cur] {
			m.Answer, m.Ns = nil, nil
			m.Rcode = mdns.RcodeServerFailure
			return m, false
		}
		z := s.zoneFor(cur)
		if z == nil {
			return m, false // the chain leaves the served zones: stop, as an authoritative server does
		}
		seen[cur] = true
		types := z.rrs[cur]
		if cname := types[mdns.TypeCNAME]; len(cname) > 0 && qtype != mdns.TypeCNAME {
			m.Answer = append(m.Answer, copyRRs(cname)...)
			target := mdns.CanonicalName(cname[0].(*mdns.CNAME).Target)
			if s.noChase[cur] || seen[target] {
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

func typeRecords(types map[uint16][]mdns.RR, qtype uint16) []mdns.RR {
	if qtype != mdns.TypeANY {
		return types[qtype]
	}
	var all []mdns.RR
	for _, t := range slices.Sorted(maps.Keys(types)) {
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
