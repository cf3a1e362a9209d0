package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
)

// ErrBadServer is wrapped by every error about a malformed resolver address,
// so configuration mistakes can be told apart from I/O errors.
var ErrBadServer = errors.New("bad DNS server address")

// ParseServers reads the PORTAL_DOMAIN_DNS_SERVERS value: resolver
// addresses separated by commas and/or white space, each "host", "host:port",
// a bare IPv6 address or "[IPv6]:port". The port defaults to 53. Host names
// are allowed (in Kubernetes the resolver is often a Service name such as
// kube-dns.kube-system.svc.cluster.local) and are resolved by the system
// when dialling.
//
// The result is in "host:port" form ready for dialling, IPv6 in brackets,
// in the given order with exact duplicates removed. An empty value, an empty
// entry ("a,,b" or a trailing comma) or anything unparsable is an error that
// names the offending entry: a typo in the resolver list should stop the
// process at start-up, not surface later as "timeout" on every domain.
func ParseServers(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: no servers given", ErrBadServer)
	}
	var out []string
	seen := make(map[string]bool)
	n := 0
	for piece := range strings.SplitSeq(s, ",") {
		fields := strings.Fields(piece)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%w: entry %d is empty (stray comma?)", ErrBadServer, n+1)
		}
		for _, f := range fields {
			n++
			addr, err := parseServer(f)
			if err != nil {
				return nil, fmt.Errorf("%w: entry %d %q: %s", ErrBadServer, n, f, err)
			}
			if !seen[addr] {
				seen[addr] = true
				out = append(out, addr)
			}
		}
	}
	return out, nil
}

// parseServer normalises one address; its errors are plain sentences that
// ParseServers prefixes with the entry.
func parseServer(entry string) (string, error) {
	if rest, ok := strings.CutPrefix(entry, "["); ok {
		host, after, ok := strings.Cut(rest, "]")
		if !ok {
			return "", errors.New("missing closing bracket")
		}
		addr, err := parseIP(host)
		if err != nil || !addr.Is6() {
			return "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		port := "53"
		if after != "" {
			p, ok := strings.CutPrefix(after, ":")
			if !ok {
				return "", fmt.Errorf("unexpected %q after the closing bracket", after)
			}
			if port, err = parsePort(p); err != nil {
				return "", err
			}
		}
		return net.JoinHostPort(addr.String(), port), nil
	}
	if addr, err := parseIP(entry); err == nil {
		return net.JoinHostPort(addr.String(), "53"), nil
	}
	if strings.Count(entry, ":") > 1 {
		return "", errors.New("not a valid IPv6 address (an IPv6 address with a port goes in brackets, like [::1]:5353)")
	}
	host, port := entry, "53"
	if i := strings.LastIndexByte(entry, ':'); i >= 0 {
		host = entry[:i]
		var err error
		if port, err = parsePort(entry[i+1:]); err != nil {
			return "", err
		}
	}
	if host == "" {
		return "", errors.New("missing host")
	}
	if addr, err := parseIP(host); err == nil {
		return net.JoinHostPort(addr.String(), port), nil
	}
	if strings.Trim(host, "0123456789.") == "" {
		return "", fmt.Errorf("%q is not a valid IPv4 address", host)
	}
	name, err := normalizeName(host)
	if err != nil {
		return "", fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return net.JoinHostPort(name, port), nil
}

// parseIP accepts IPv4 and IPv6 literals; an IPv6 zone (fe80::1%eth0) must
// look like an interface name so that the formatted address parses back to
// itself.
func parseIP(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, c := range addr.Zone() {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return netip.Addr{}, fmt.Errorf("zone %q is not an interface name", addr.Zone())
		}
	}
	return addr, nil
}

func parsePort(p string) (string, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || len(p) > 5 || p[0] == '+' || p[0] == '-' {
		return "", fmt.Errorf("port %q is not a number between 1 and 65535", p)
	}
	return strconv.Itoa(n), nil
}

// ServersFromResolvConf reads the nameserver lines of a resolv.conf(5) file,
// the fallback when PORTAL_DOMAIN_DNS_SERVERS is not set, so the worker uses
// the same resolvers as the rest of the pod.
func ServersFromResolvConf(path string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resolver config %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("%w: %s has no nameserver line", ErrBadServer, path)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		addr, err := parseIP(s)
		if err != nil {
			return nil, fmt.Errorf("%w: nameserver %q in %s is not an IP address", ErrBadServer, s, path)
		}
		out = append(out, net.JoinHostPort(addr.String(), cc.Port))
	}
	return out, nil
}
