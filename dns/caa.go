package dns

import (
	"context"
	"fmt"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// CAARecord is one CAA resource record (RFC 8659 §4.1).
type CAARecord struct {
	Flag  uint8  `json:"flag"`
	Tag   string `json:"tag"`
	Value string `json:"value"`
}

// String renders the record's data in zone-file form: 0 issue "letsencrypt.org".
func (r CAARecord) String() string {
	return fmt.Sprintf("%d %s %q", r.Flag, r.Tag, r.Value)
}

// Critical reports the issuer-critical flag (bit 0, value 128): a CA that
// does not understand a critical tag must not issue.
func (r CAARecord) Critical() bool { return r.Flag&128 != 0 }

// CAAResult is the relevant CAA RRset for a name, as LookupCAA found it.
type CAAResult struct {
	// Name is the name a certificate would be issued for.
	Name string `json:"name"`
	// Level is Name or the ancestor whose query returned the RRset; empty
	// when no CAA records exist up to the top-level domain.
	Level string `json:"level,omitempty"`
	// Owner is the owner of the records: Level itself, or the end of the
	// CNAME chain that Level is an alias for.
	Owner   string      `json:"owner,omitempty"`
	Records []CAARecord `json:"records,omitempty"`
	// Server is the resolver that gave the deciding answer.
	Server   string        `json:"server,omitempty"`
	Queries  int           `json:"queries"`
	Duration time.Duration `json:"duration_ns"`
}

// LookupCAA finds the relevant CAA RRset for name as a certificate authority
// does (RFC 8659 §3): query CAA at name, then at each parent up to (not
// including) the root, and stop at the first non-empty RRset. The query at
// each level follows that level's CNAMEs, so an alias inherits the CAA
// records of its target, but the climb continues from the level's own
// parent, never from the target's (the RFC 6844 behaviour that RFC 8659
// removed).
//
// A CNAME loop or an over-long chain at some level counts as "no records at
// that level". An error means a level could not be looked up; since a CA
// must not issue when CAA cannot be determined, callers should treat that as
// unknown, not as allowed.
func (r *Resolver) LookupCAA(ctx context.Context, name string) (CAAResult, error) {
	l := r.newLookup()
	defer l.close()
	return l.caa(ctx, name)
}

func (l *lookup) caa(ctx context.Context, name string) (res CAAResult, err error) {
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()

	qname, err := normalizeName(name)
	if err != nil {
		res.Name = name
		return res, err
	}
	res.Name = qname
	for level := qname; level != ""; level = parent(level) {
		records, owner, err := l.caaAt(ctx, level, &res)
		if err != nil {
			return res, err
		}
		if len(records) > 0 {
			res.Level, res.Owner, res.Records = level, owner, records
			return res, nil
		}
	}
	return res, nil
}

// caaAt is CAA(X) of RFC 8659: the CAA RRset of level after following its
// CNAME chain.
func (l *lookup) caaAt(ctx context.Context, level string, res *CAAResult) ([]CAARecord, string, error) {
	cur := level + "."
	seen := map[string]bool{cur: true}
	hops := 0
	for {
		asked := cur
		resp, server, err := l.exchange(ctx, cur, mdns.TypeCAA)
		if err != nil {
			return nil, "", err
		}
		res.Queries++
		res.Server = server
		for {
			target, ok := cnameTarget(resp.Answer, cur)
			if !ok {
				break
			}
			hops++
			if seen[target] || hops > l.maxChain {
				return nil, "", nil
			}
			seen[target] = true
			cur = target
		}
		var records []CAARecord
		for _, rr := range resp.Answer {
			if caa, ok := rr.(*mdns.CAA); ok && sameName(caa.Hdr.Name, cur) {
				records = append(records, CAARecord{Flag: caa.Flag, Tag: caa.Tag, Value: caa.Value})
			}
		}
		if len(records) == 0 && resp.Rcode == mdns.RcodeSuccess && cur != asked {
			continue // the answer ended at a CNAME: ask for the target ourselves
		}
		return records, display(cur), nil
	}
}

// CAAVerdict is the pure judgement of a relevant CAA RRset for one CA.
type CAAVerdict struct {
	Allowed bool
	// Issuers are the issuer domains named by the set's issue records
	// (parameters stripped), the CAs that may issue.
	Issuers []string
	// RestrictsIssue is set when the set has at least one issue record; a
	// set without any allows every CA for non-wildcard names.
	RestrictsIssue bool
	// Critical is the first record whose tag is unknown and marked critical;
	// it forbids issuance whatever else the set says.
	Critical *CAARecord
}

// knownTags are the property tags a CA may be expected to understand; an
// unknown tag only matters when it is marked critical.
var knownTags = map[string]bool{
	"issue": true, "issuewild": true, "iodef": true,
	"issuemail": true, "issuevmc": true, "contactemail": true, "contactphone": true,
}

// EvaluateCAA decides whether the CA identified by identity (its issuer
// domain, such as "letsencrypt.org") may issue a certificate for a
// non-wildcard name whose relevant CAA RRset is records (RFC 8659 §4):
//   - no records: allowed;
//   - an unknown tag with the critical flag: forbidden;
//   - issue records present: allowed only if one names identity, compared
//     case-insensitively; parameters after ";" (RFC 8657 accounturi and the
//     like) are not checked; an issue value with no issuer, "0 issue \";\"",
//     names nobody;
//   - no issue records (only issuewild, iodef, ...): allowed.
func EvaluateCAA(records []CAARecord, identity string) CAAVerdict {
	var v CAAVerdict
	for i, rec := range records {
		if rec.Critical() && !knownTags[strings.ToLower(rec.Tag)] {
			v.Critical = &records[i]
			return v
		}
	}
	id := strings.ToLower(strings.TrimSpace(identity))
	for _, rec := range records {
		if !strings.EqualFold(rec.Tag, "issue") {
			continue
		}
		v.RestrictsIssue = true
		issuer := IssuerDomain(rec.Value)
		if issuer == "" {
			continue
		}
		v.Issuers = append(v.Issuers, issuer)
		if id != "" && issuer == id {
			v.Allowed = true
		}
	}
	if !v.RestrictsIssue {
		v.Allowed = true
	}
	return v
}

// IssuerDomain extracts the issuer domain name from an issue or issuewild
// value (RFC 8659 §4.2: issuer-domain-name, then optional "; parameters"),
// lower-cased; "" when the value names no issuer.
func IssuerDomain(value string) string {
	domain, _, _ := strings.Cut(value, ";")
	return strings.ToLower(strings.Trim(domain, " \t"))
}
