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
//
// Zone parsing, answering and serving are dns/localdns's (the dev stack's
// server); this package adds the testing.TB handling and the failure modes.
package dnstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/portal-domains/portal-domains/internal/harness/localdns"
)

// Query is one query the server received.
type Query struct {
	Name    string // lower case, no trailing dot
	Type    string // "A", "CAA", ...
	Net     string // "udp" or "tcp"
	Dropped bool   // not answered (Drop, DropEvery)
	From    string // the client's address, "ip:port": which socket asked
}

// Server is a running DNS server. Its methods are safe for concurrent use.
type Server struct {
	tb   testing.TB
	addr string

	mu        sync.Mutex
	zones     *localdns.Zones
	servFail  map[string]bool
	drop      map[string]bool
	truncate  map[string]bool
	noChase   map[string]bool
	dropEvery int
	queries   []Query

	received atomic.Int64
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
	zones := make([]*localdns.Zone, 0, len(zoneFiles))
	for _, f := range zoneFiles {
		z, err := loadZone(tb, f)
		if err != nil {
			tb.Fatalf("dnstest: %v", err)
		}
		zones = append(zones, z)
	}
	var err error
	if s.zones, err = localdns.NewZones(zones...); err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	ep, err := localdns.Serve("127.0.0.1:0", s)
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	tb.Cleanup(func() { _ = ep.Close(context.Background()) })
	s.addr = ep.Addr()
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

func loadZone(tb testing.TB, file string) (*localdns.Zone, error) {
	path := file
	if !filepath.IsAbs(path) {
		path = filepath.Join(FixturesDir(tb), file)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open zone: %w", err)
	}
	defer f.Close()
	return localdns.ParseZone(f, path)
}

// Addr is the server's "127.0.0.1:port", the same port for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Set replaces, for each owner name and type among rrs, that RRset with the
// given records (zone-file syntax with absolute names, "a.example.test. 300
// IN CNAME b.example.test."). A malformed record or one outside every served
// zone fails the test that started the server.
func (s *Server) Set(rrs ...string) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.zones.Set(rrs...); err != nil {
		s.tb.Fatalf("dnstest: Set: %v", err)
	}
}

// Remove deletes the records of one type at name; rrtype "" or "ANY"
// deletes every type.
func (s *Server) Remove(name, rrtype string) {
	s.tb.Helper()
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
	s.zones.Remove(name, t)
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

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	q, ok := localdns.OneQuestion(w, req)
	if !ok {
		return
	}
	qname := mdns.CanonicalName(q.Name)
	entry := Query{Name: strings.TrimSuffix(qname, "."), Type: mdns.TypeToString[q.Qtype], Net: network, From: w.RemoteAddr().String()}

	s.mu.Lock()
	n := s.received.Add(1)
	if s.dropEvery > 0 && n%int64(s.dropEvery) == 0 {
		entry.Dropped = true
		s.queries = append(s.queries, entry)
		s.mu.Unlock()
		return
	}
	m, drop := s.zones.Answer(req, qname, q.Qtype, s.fault)
	entry.Dropped = drop
	s.queries = append(s.queries, entry)
	truncate := s.truncate[qname]
	s.mu.Unlock()
	if drop {
		return
	}

	if network == "udp" {
		if truncate {
			m.Answer, m.Ns = nil, nil
			m.Truncated = true
		} else {
			m.Truncate(localdns.UDPSize(req))
		}
	}
	// A failed write looks to the client like a lost packet, which is all
	// a test could learn from it; logging here could outlive the test.
	_ = w.WriteMsg(m)
}

// fault is the failure mode at name, for localdns's Answer; s.mu is held.
func (s *Server) fault(name string) localdns.Fault {
	switch {
	case s.drop[name]:
		return localdns.FaultDrop
	case s.servFail[name]:
		return localdns.FaultServFail
	case s.noChase[name]:
		return localdns.FaultNoChase
	}
	return localdns.NoFault
}
