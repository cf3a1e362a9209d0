// Package dns answers one question for the portal-domain pipeline: does a
// tenant's domain point, through a CNAME chain, at its canonical host, and may
// the configured certificate authority issue for it?
//
// It is the only package that imports github.com/miekg/dns. Everything else
// (jobs, the doctor command) sees plain Go values: a [Chain], a [CAAResult]
// and a [Report] that serialises to JSON for verification_details.
//
// The work is split the way the rest of the project splits it: I/O gathers
// observations ([Resolver.LookupChain], [Resolver.LookupCAA]) and a pure
// function ([Decide]) turns them into an outcome and a tenant-facing message.
// The split keeps every wording and every edge case table-testable without a
// DNS server, and keeps the question "whose fault is it" (the tenant's records
// or our resolvers) in one place.
//
// Queries go straight to configured recursive resolvers rather than the Go
// standard resolver, because the standard resolver hides what matters here:
// the individual CNAME hops, the rcode (NXDOMAIN versus SERVFAIL) and which
// server said so.
package dns
