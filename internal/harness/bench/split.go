package bench

import (
	"errors"
	"fmt"
	"time"
)

// registrationTimes is one domain's way from the SQL insert to active in
// row 7, from the database's history and the bench's own Certificate watch.
type registrationTimes struct {
	Domain string
	// Inserted is the row's created_at; Verified, Applied and Active are
	// the pending_certificate, certificate_issuing and active events.
	Inserted, Verified, Applied, Active time.Time
	// DNSCheck is the DNS lookups' own time (the verify_dns stage's
	// observation, duration_ns): the tenant's DNS, not our queue.
	DNSCheck time.Duration
	// CertCreated and CertReady are when the bench's watch saw the
	// Certificate appear and turn Ready: issuance is cert-manager's and
	// Pebble's time between the two.
	CertCreated, CertReady time.Time
}

// registrationSplit holds, per domain, where its insert → active went.
// Total = DNS + Issuance + Ours; Ours is also given by segment
// (ToVerified minus DNS, VerifiedToApply, ReadyToActive) for issue 16's
// "which part is ours".
type registrationSplit struct {
	Total, DNS, Issuance, Ours []time.Duration
	// ToVerified is insert → DNS verified (queue wait + DNS check + commit);
	// VerifiedToApply is DNS verified → Certificate created (the apply
	// stage's queue wait and its server-side apply); ReadyToActive is
	// Certificate Ready → active (watch, await job, Secret copy, probe).
	ToVerified, VerifiedToApply, ReadyToActive []time.Duration
}

// splitRegistrations is a pure function: it checks every domain has each
// timestamp in order and splits its total into the tenant's DNS, the
// issuer's part and ours (everything else: queue waits and stages).
func splitRegistrations(ts []registrationTimes) (registrationSplit, error) {
	var s registrationSplit
	var errs []error
	for _, t := range ts {
		if err := t.check(); err != nil {
			errs = append(errs, err)
			continue
		}
		total := t.Active.Sub(t.Inserted)
		issuance := t.CertReady.Sub(t.CertCreated)
		s.Total = append(s.Total, total)
		s.DNS = append(s.DNS, t.DNSCheck)
		s.Issuance = append(s.Issuance, issuance)
		s.Ours = append(s.Ours, total-t.DNSCheck-issuance)
		s.ToVerified = append(s.ToVerified, t.Verified.Sub(t.Inserted))
		s.VerifiedToApply = append(s.VerifiedToApply, t.CertCreated.Sub(t.Verified))
		s.ReadyToActive = append(s.ReadyToActive, t.Active.Sub(t.CertReady))
	}
	return s, errors.Join(errs...)
}

func (t registrationTimes) check() error {
	for _, f := range []struct {
		name string
		at   time.Time
	}{{"insert", t.Inserted}, {"DNS verified", t.Verified}, {"Certificate created", t.CertCreated},
		{"Certificate Ready", t.CertReady}, {"active", t.Active}} {
		if f.at.IsZero() {
			return fmt.Errorf("%s: no %s time", t.Domain, f.name)
		}
	}
	switch {
	case t.DNSCheck <= 0 || t.DNSCheck > t.Verified.Sub(t.Inserted):
		return fmt.Errorf("%s: DNS check of %s does not fit between insert and DNS verified (%s)", t.Domain, t.DNSCheck, t.Verified.Sub(t.Inserted))
	case t.CertReady.Before(t.CertCreated):
		return fmt.Errorf("%s: Certificate Ready before it was created", t.Domain)
	case t.Active.Before(t.CertReady):
		return fmt.Errorf("%s: active before its Certificate was Ready", t.Domain)
	}
	return nil
}
