package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Outcome is the verdict of a DNS check. Its values are stable strings
// because they are stored in verification_details and read by the jobs.
type Outcome string

const (
	// OutcomeVerified: the chain reaches the canonical host and CAA (when
	// checked) allows the CA.
	OutcomeVerified Outcome = "verified"
	// OutcomeMismatch: the tenant's records are wrong or missing (NXDOMAIN,
	// no CNAME, a CNAME elsewhere, a loop, a chain too long, an invalid
	// name). The tenant has to act.
	OutcomeMismatch Outcome = "mismatch"
	// OutcomeCAAForbidden: the CNAME is right but CAA forbids the CA.
	OutcomeCAAForbidden Outcome = "caa_forbidden"
	// OutcomeResolverError: our resolvers could not get an answer (timeout,
	// SERVFAIL, network). Not the tenant's fault; check again later.
	OutcomeResolverError Outcome = "resolver_error"
)

// Check is one line of the doctor command's output.
type Check struct {
	Name     string `json:"name"` // "cname" or "caa"
	OK       bool   `json:"ok"`
	Seen     string `json:"seen"`
	Expected string `json:"expected"`
	Fix      string `json:"fix,omitempty"`
}

// Report is the result of checking one domain: an outcome for the workflow,
// one message for the tenant, checks for the doctor command and the raw
// observations for operators.
type Report struct {
	Domain        string     `json:"domain"`
	CanonicalHost string     `json:"canonical_host"`
	CAAIdentity   string     `json:"caa_identity,omitempty"`
	Outcome       Outcome    `json:"outcome"`
	Message       string     `json:"message"`
	Checks        []Check    `json:"checks"`
	Chain         Chain      `json:"chain"`
	CAA           *CAAResult `json:"caa,omitempty"`
	// Error is the underlying lookup error, for operators; empty when every
	// lookup got an answer.
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Observation is everything Decide needs, gathered beforehand by I/O.
type Observation struct {
	Domain        string
	CanonicalHost string
	// CAAIdentity is the CA's issuer domain ("letsencrypt.org"); empty
	// skips the CAA check.
	CAAIdentity string
	Chain       Chain
	ChainErr    error
	// CAA is nil when CAA was not looked up.
	CAA      *CAAResult
	CAAErr   error
	Duration time.Duration
}

// Check gathers the observations for domain and decides. The CAA lookup
// only runs when the chain lookup got answers, so a dead resolver costs one
// timeout per server rather than one per CAA level; it runs even when the
// CNAME is wrong so that the doctor shows both problems at once.
func (r *Resolver) Check(ctx context.Context, domain, canonicalHost, caaIdentity string) Report {
	start := time.Now()
	o := Observation{Domain: domain, CanonicalHost: canonicalHost, CAAIdentity: caaIdentity}
	l := r.newLookup()
	defer l.close()
	o.Chain, o.ChainErr = l.chain(ctx, domain)
	if o.ChainErr == nil && caaIdentity != "" {
		caa, err := l.caa(ctx, domain)
		o.CAA, o.CAAErr = &caa, err
	}
	o.Duration = time.Since(start)
	return Decide(o)
}

// Decide turns observations into a Report. It is pure: every message and
// every outcome can be tested from a table.
//
// The CNAME check passes when any hop's target equals the canonical host
// exactly (case and trailing dot aside): a chain may go on past the
// canonical host (our own CDN aliases), but "evil.<canonical>" or
// "<canonical>.evil.example" never pass. The outcome is taken from the CNAME
// check first, the CAA check only once the CNAME passes, so a tenant is
// told one thing to fix at a time, the first in pipeline order.
func Decide(o Observation) Report {
	rep := Report{
		Domain:        displayInput(o.Domain),
		CanonicalHost: displayInput(o.CanonicalHost),
		CAAIdentity:   o.CAAIdentity,
		Chain:         o.Chain,
		CAA:           o.CAA,
		Duration:      o.Duration,
	}
	domain, want := rep.Domain, rep.CanonicalHost
	if _, err := normalizeName(o.CanonicalHost); err != nil {
		rep.Outcome = OutcomeResolverError
		rep.Error = fmt.Sprintf("canonical host: %v", err)
		rep.Message = fmt.Sprintf("We could not check the DNS of %s because of a configuration problem on our side; this is not a problem with your records; we will keep checking.", domain)
		rep.Checks = []Check{
			{Name: "cname", Seen: "not checked: invalid canonical host " + fmt.Sprintf("%q", o.CanonicalHost)},
			{Name: "caa", Seen: "not checked"},
		}
		return rep
	}

	cname, outcome, msg := decideCNAME(o, domain, want)
	caa, caaOutcome, caaMsg := decideCAA(o, domain)
	rep.Checks = []Check{cname, caa}
	switch {
	case outcome != OutcomeVerified:
		rep.Outcome, rep.Message = outcome, msg
		if o.ChainErr != nil {
			rep.Error = o.ChainErr.Error()
		}
	case caaOutcome != OutcomeVerified:
		rep.Outcome, rep.Message = caaOutcome, caaMsg
		switch {
		case o.CAAErr != nil:
			rep.Error = o.CAAErr.Error()
		case o.CAA == nil:
			rep.Error = "CAA records were not looked up"
		}
	default:
		rep.Outcome, rep.Message = OutcomeVerified, msg+caaMsg
	}
	return rep
}

// decideCNAME judges the chain. For a pass it returns the first half of the
// verified message, which decideCAA completes.
func decideCNAME(o Observation, domain, want string) (Check, Outcome, string) {
	c := o.Chain
	check := Check{Name: "cname", Expected: "CNAME to " + want}
	fixRecord := fmt.Sprintf("`%s. CNAME %s.`", domain, want)
	check.Fix = "Set the record " + fixRecord
	update := fmt.Sprintf("Update the CNAME record of %s to point to %s.", domain, want)
	add := fmt.Sprintf("Add a CNAME record for %s pointing to %s.", domain, want)

	if errors.Is(o.ChainErr, ErrInvalidName) {
		check.Seen = "invalid name"
		check.Fix = "Register a valid host name such as portal.example.com"
		return check, OutcomeMismatch, fmt.Sprintf("%q is not a valid DNS host name. Register the name exactly as it appears in DNS, for example portal.example.com.", o.Domain)
	}
	for _, h := range c.Hops {
		if sameName(h.Target, want) {
			check.OK, check.Fix = true, ""
			check.Seen = describeChain(c)
			if len(c.Hops) == 1 || sameName(c.Hops[0].Target, want) {
				return check, OutcomeVerified, fmt.Sprintf("Detected CNAME %s for %s as expected", want, domain)
			}
			return check, OutcomeVerified, fmt.Sprintf("Detected CNAME chain %s, which reaches %s as expected", strings.Join(c.Names(), " → "), want)
		}
	}
	if o.ChainErr != nil {
		check.Seen = "no answer: " + errorSummary(o.ChainErr)
		check.Fix = "Nothing to change in your DNS; the check will be repeated"
		return check, OutcomeResolverError, resolverMessage(o.ChainErr, domain, c)
	}
	seen := describeChain(c)
	check.Seen = seen
	switch {
	case c.Loop:
		check.Seen = "CNAME loop " + strings.Join(c.Names(), " → ")
		return check, OutcomeMismatch, fmt.Sprintf("The CNAME records for %s form a loop (%s). %s",
			domain, strings.Join(c.Names(), " → "), update)
	case c.TooLong:
		check.Seen = fmt.Sprintf("CNAME chain longer than %d hops: %s → ...", len(c.Hops), strings.Join(c.Names(), " → "))
		return check, OutcomeMismatch, fmt.Sprintf("The CNAME chain of %s is longer than %d hops (%s → ...) without reaching %s. Point %s directly to %s with a CNAME record.",
			domain, len(c.Hops), strings.Join(c.Names(), " → "), want, domain, want)
	case len(c.Hops) == 0 && c.Rcode == "NXDOMAIN":
		return check, OutcomeMismatch, fmt.Sprintf("No DNS record found for %s (NXDOMAIN). %s", domain, add)
	case len(c.Hops) == 0 && len(c.Addresses) > 0:
		check.Fix = fmt.Sprintf("Remove the A/AAAA records of %s and set the record %s", domain, fixRecord)
		return check, OutcomeMismatch, fmt.Sprintf("Detected address records (%s) for %s but no CNAME; expected a CNAME to %s. Replace the address records of %s with a CNAME record pointing to %s.",
			strings.Join(c.Addresses, ", "), domain, want, domain, want)
	case len(c.Hops) == 0:
		return check, OutcomeMismatch, fmt.Sprintf("%s exists but has no CNAME record (%s). %s", domain, seen, add)
	case len(c.Hops) == 1:
		return check, OutcomeMismatch, fmt.Sprintf("Detected CNAME %s for %s; expected %s. %s", c.Hops[0].Target, domain, want, update)
	default:
		return check, OutcomeMismatch, fmt.Sprintf("Detected CNAME chain %s, which does not reach %s. %s",
			strings.Join(c.Names(), " → "), want, update)
	}
}

// decideCAA judges the CAA observation. For a pass it returns the end of the
// verified message.
func decideCAA(o Observation, domain string) (Check, Outcome, string) {
	id := strings.ToLower(strings.TrimSpace(o.CAAIdentity))
	check := Check{Name: "caa", Expected: "CAA allows " + id}
	if id == "" {
		check.OK, check.Expected = true, "no CA configured"
		check.Seen = "not checked: no certificate authority configured"
		return check, OutcomeVerified, "."
	}
	if o.CAAErr != nil {
		check.Seen = "no answer: " + errorSummary(o.CAAErr)
		check.Fix = "Nothing to change in your DNS; the check will be repeated"
		return check, OutcomeResolverError, resolverMessage(o.CAAErr, domain, Chain{})
	}
	if o.CAA == nil {
		check.Seen = "not checked"
		return check, OutcomeResolverError, fmt.Sprintf("We could not check the CAA records of %s yet; this is not a problem with your records; we will keep checking.", domain)
	}
	res := *o.CAA
	if len(res.Records) == 0 {
		check.OK = true
		check.Seen = fmt.Sprintf("no CAA records on %s or its parent domains", domain)
		return check, OutcomeVerified, "; no CAA records restrict certificate issuance."
	}
	where := res.Owner
	if res.Level != "" && res.Owner != res.Level {
		where = fmt.Sprintf("%s (the CNAME target of %s)", res.Owner, res.Level)
	}
	recs := make([]string, len(res.Records))
	for i, r := range res.Records {
		recs[i] = r.String()
	}
	check.Seen = fmt.Sprintf("CAA on %s: %s", where, strings.Join(recs, "; "))
	addRecord := fmt.Sprintf("`%s. CAA 0 issue %q`", res.Owner, id)

	v := EvaluateCAA(res.Records, id)
	switch {
	case v.Allowed:
		check.OK = true
		return check, OutcomeVerified, fmt.Sprintf(" and the CAA records on %s allow %s.", where, id)
	case v.Critical != nil:
		check.Fix = fmt.Sprintf("Remove the CAA record %s. CAA %s from %s or set its flag to 0", res.Owner, v.Critical, res.Owner)
		return check, OutcomeCAAForbidden, fmt.Sprintf("The CAA record `%s. CAA %s` on %s marks a tag certificate authorities do not understand as critical, which forbids all certificates for %s; remove it or set its flag to 0.",
			res.Owner, v.Critical, where, domain)
	case len(v.Issuers) == 0:
		check.Fix = "Add the record " + addRecord
		return check, OutcomeCAAForbidden, fmt.Sprintf("CAA records on %s forbid every certificate authority (%s); add %s so that a certificate can be issued for %s.",
			where, strings.Join(recs, "; "), addRecord, domain)
	default:
		check.Fix = "Add the record " + addRecord
		return check, OutcomeCAAForbidden, fmt.Sprintf("CAA records on %s allow only %s; add %s so that a certificate can be issued for %s.",
			where, joinAnd(v.Issuers), addRecord, domain)
	}
}

func resolverMessage(err error, domain string, c Chain) string {
	var qe *QueryError
	if !errors.As(err, &qe) {
		return fmt.Sprintf("Our DNS resolvers could not check %s (%v); this is not a problem with your records; we will keep checking.", domain, err)
	}
	what := qe.Name
	switch {
	case qe.Type == "CAA":
		what = fmt.Sprintf("the CAA records of %s", qe.Name)
	case qe.Name != domain && len(c.Hops) > 0:
		what = fmt.Sprintf("%s (reached from %s through CNAME %s)", qe.Name, domain, strings.Join(c.Names()[1:], " → "))
	}
	return fmt.Sprintf("Our DNS resolvers could not get an answer for %s (%s); this is not a problem with your records; we will keep checking.", what, qe.Summary())
}

func errorSummary(err error) string {
	var qe *QueryError
	if errors.As(err, &qe) {
		return qe.Summary()
	}
	return err.Error()
}

// describeChain is the "seen" text of the CNAME check.
func describeChain(c Chain) string {
	switch {
	case len(c.Hops) == 1:
		return "CNAME " + c.Hops[0].Target
	case len(c.Hops) > 1:
		return "CNAME chain " + strings.Join(c.Names(), " → ")
	case c.Rcode == "NXDOMAIN":
		return "NXDOMAIN"
	case len(c.Addresses) > 0:
		return "address records " + strings.Join(c.Addresses, ", ")
	case c.Rcode == "":
		return "no answer"
	default:
		return "no CNAME or address records"
	}
}

func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	default:
		return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
	}
}

// displayInput normalises a name for reports when it is valid and keeps it
// verbatim otherwise, so an invalid name is reported as the tenant typed it.
func displayInput(name string) string {
	if n, err := normalizeName(name); err == nil {
		return n
	}
	return name
}
