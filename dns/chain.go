package dns

import (
	"context"
	"time"

	mdns "github.com/miekg/dns"
)

// Hop is one CNAME record: Name is an alias of Target.
type Hop struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

// Chain is what LookupChain observed, recorded as data (not as a verdict) so
// that Decide can judge it and an operator can read it back later from
// verification_details. Names are lower case without trailing dot.
type Chain struct {
	// Name is the name looked up.
	Name string `json:"name"`
	// Hops are the CNAMEs followed, in order; Hops[0].Name is Name.
	Hops []Hop `json:"hops"`
	// Final is the last name reached: Name itself when it has no CNAME.
	Final string `json:"final"`
	// Rcode of the last answer ("NOERROR", "NXDOMAIN"); empty when no
	// server answered.
	Rcode string `json:"rcode"`
	// Server is the resolver that gave the last answer.
	Server string `json:"server"`
	// Queries counts the answers used (re-queries of a CNAME target the
	// resolver did not follow itself, and the AAAA query, included).
	Queries int `json:"queries"`
	// HasA and HasAAAA say whether Final has addresses; Addresses lists them.
	// AAAA is asked only of a name without a CNAME, whose address records
	// are what the tenant must replace; past a CNAME the final name's
	// addresses decide nothing, and asking cost a fifth of every check's
	// queries.
	HasA      bool     `json:"has_a"`
	HasAAAA   bool     `json:"has_aaaa"`
	Addresses []string `json:"addresses,omitempty"`
	// Loop is set when a CNAME points back to a name already in the chain;
	// the last hop is the one that closes the loop.
	Loop bool `json:"loop"`
	// TooLong is set when more than MaxChain hops would be needed.
	TooLong bool `json:"too_long"`
	// Duration is the wall time of the whole lookup.
	Duration time.Duration `json:"duration_ns"`
}

// Names lists the chain from Name to Final.
func (c Chain) Names() []string {
	names := []string{c.Name}
	for _, h := range c.Hops {
		names = append(names, h.Target)
	}
	return names
}

// LookupChain follows the CNAME chain that starts at name.
//
// It asks for A records, because a recursive resolver then returns the whole
// chain in one answer. When an answer stops at a CNAME without the target's
// records (an authoritative-only server, or a resolver that did not chase
// across zones), the target is queried in turn. Names are compared
// case-insensitively and without trailing dots; a repeated name ends the
// chain as a loop, and more than MaxChain hops end it as too long. Both are
// observations about the tenant's records, returned with a nil error.
//
// The error is non-nil only when name is not a valid host name
// (ErrInvalidName) or when no server answered a query (a *QueryError, or the
// context's error); the Chain then holds what was seen up to that point.
func (r *Resolver) LookupChain(ctx context.Context, name string) (Chain, error) {
	l := r.newLookup()
	defer l.close()
	return l.chain(ctx, name)
}

func (l *lookup) chain(ctx context.Context, name string) (c Chain, err error) {
	start := time.Now()
	defer func() { c.Duration = time.Since(start) }()
	c.Hops = []Hop{} // "hops": [] rather than null in JSON

	qname, err := normalizeName(name)
	if err != nil {
		c.Name, c.Final = name, name
		return c, err
	}
	c.Name, c.Final = qname, qname
	cur := qname + "."
	seen := map[string]bool{cur: true}
	for {
		asked := cur
		resp, server, err := l.exchange(ctx, cur, mdns.TypeA)
		if err != nil {
			return c, err
		}
		c.Queries++
		c.Server = server
		c.Rcode = mdns.RcodeToString[resp.Rcode]
		for {
			target, ok := cnameTarget(resp.Answer, cur)
			if !ok {
				break
			}
			if !seen[target] && len(c.Hops) >= l.maxChain {
				c.TooLong = true
				return c, nil
			}
			c.Hops = append(c.Hops, Hop{Name: display(cur), Target: display(target)})
			c.Final = display(target)
			if seen[target] {
				c.Loop = true
				return c, nil
			}
			seen[target] = true
			cur = target
		}
		addrs := addresses(resp.Answer, cur)
		if len(addrs) == 0 && resp.Rcode == mdns.RcodeSuccess && cur != asked {
			// The answer ended at a CNAME: ask for the target ourselves.
			continue
		}
		c.Addresses, c.HasA = addrs, len(addrs) > 0
		if resp.Rcode == mdns.RcodeSuccess && len(c.Hops) == 0 {
			l.lookupAAAA(ctx, &c, cur)
		}
		return c, nil
	}
}

// lookupAAAA completes the observation of a name without a CNAME. It is best
// effort: the verdict does not depend on addresses, so a failure here
// leaves HasAAAA false rather than failing the lookup.
func (l *lookup) lookupAAAA(ctx context.Context, c *Chain, name string) {
	resp, _, err := l.exchange(ctx, name, mdns.TypeAAAA)
	if err != nil || resp.Rcode != mdns.RcodeSuccess {
		return
	}
	c.Queries++
	addrs := addresses(resp.Answer, name)
	c.HasAAAA = len(addrs) > 0
	c.Addresses = append(c.Addresses, addrs...)
}

// addresses returns the A and AAAA records owned by name, as text.
func addresses(rrs []mdns.RR, name string) []string {
	var out []string
	for _, rr := range rrs {
		if !sameName(rr.Header().Name, name) {
			continue
		}
		switch a := rr.(type) {
		case *mdns.A:
			out = append(out, a.A.String())
		case *mdns.AAAA:
			out = append(out, a.AAAA.String())
		}
	}
	return out
}
