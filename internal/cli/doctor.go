package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/probe"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// How much history doctor shows, and how long it waits for the cluster.
const (
	doctorEvents      = 5
	doctorJobs        = 10
	doctorKubeTimeout = 10 * time.Second
)

// DoctorReport is everything doctor found about one domain, in the order it
// prints it; --json writes it as is.
type DoctorReport struct {
	Domain    string    `json:"domain"`
	CheckedAt time.Time `json:"checked_at"`
	// Registered: the domain has a portal_domains row. Without one, only
	// DNS and CAA are checked.
	Registered bool           `json:"registered"`
	Row        *domain.Record `json:"row,omitempty"`
	// Events are the row's last history entries, oldest first.
	Events []db.Event `json:"events,omitempty"`
	// Jobs are the domain's River jobs, newest first.
	Jobs          []db.DomainJob `json:"jobs,omitempty"`
	JobsURL       string         `json:"jobs_url,omitempty"`
	ExpectedCNAME string         `json:"expected_cname"`
	DNS           dns.Report     `json:"dns"`
	Cluster       *DoctorCluster `json:"cluster,omitempty"`
	HTTPS         *DoctorHTTPS   `json:"https,omitempty"`
	Alerts        []db.Alert     `json:"alerts"`
	// Next is the one thing to do next; OK is false when that is a fix.
	Next string `json:"next"`
	OK   bool   `json:"ok"`
}

// DoctorCluster is what the API server holds about the domain.
type DoctorCluster struct {
	// Error says why the cluster could not be read (none configured,
	// unreachable, forbidden); the other fields are then empty.
	Error string `json:"error,omitempty"`
	k8s.DomainState
	// CAProblem is the CA's reason for a failed validation, from the
	// issuance's Challenge or Order.
	CAProblem *DoctorCAProblem `json:"ca_problem,omitempty"`
}

// DoctorCAProblem is k8s.CAProblem for JSON.
type DoctorCAProblem struct {
	Type   string `json:"type,omitempty"`
	Detail string `json:"detail"`
	URL    string `json:"url,omitempty"`
}

// DoctorHTTPS is what the domain's HTTPS endpoint serves now.
type DoctorHTTPS struct {
	URL        string     `json:"url"`
	OK         bool       `json:"ok"`
	Message    string     `json:"message"`
	StatusCode int        `json:"status_code,omitempty"`
	Issuer     string     `json:"issuer,omitempty"`
	Names      []string   `json:"names,omitempty"`
	NotAfter   *time.Time `json:"not_after,omitempty"`
}

// doctor walks a domain's whole chain, as cmctl status certificate does for
// cert-manager: the row and its history, its jobs, DNS and CAA, the objects
// in the cluster, the Certificate's conditions and issuance, what HTTPS
// serves and open alerts, then the one thing to do next. Exit 0 only when
// nothing needs fixing.
func (e *Env) doctor(args []string) error {
	fs := e.Flags("doctor")
	name := fs.String("domain", "", "the domain to check")
	domainID := fs.String("domain-id", "", "check a registered domain by id")
	canonical := fs.String("canonical-host", "", "the expected CNAME target (default: the registered one)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	// `doctor portal.acme.com [flags]`: the domain may come first.
	var positional string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = args[0], args[1:]
	}
	if err := Parse(fs, args); err != nil {
		return err
	}
	if positional != "" {
		if *name != "" {
			return Usagef("doctor: give the domain once")
		}
		*name = positional
	}
	if (*name == "") == (*domainID == "") {
		return Usagef("doctor: give exactly one of --domain or --domain-id")
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	if *name != "" {
		if *name, err = domain.ValidatePortalDomain(*name, cfg.CanonicalSuffix); err != nil {
			return err
		}
	}
	if *domainID != "" {
		if *domainID, err = domain.ParseDomainID(*domainID); err != nil {
			return err
		}
	}
	pool, err := e.open(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	var rec domain.Record
	if *domainID != "" {
		rec, err = db.GetDomain(e.Ctx, pool, *domainID)
	} else {
		rec, err = db.GetDomainByName(e.Ctx, pool, *name)
	}
	switch {
	case errors.Is(err, db.ErrNotFound) && *name != "" && *canonical == "":
		return Usagef("doctor: %s is not registered; pass --canonical-host to check its DNS anyway", *name)
	case errors.Is(err, db.ErrNotFound) && *name != "":
	case err != nil:
		return err
	}
	report, err := e.gatherDoctor(cfg, pool, *name, rec, *canonical)
	if err != nil {
		return err
	}
	if *asJSON {
		err = writeJSON(e.Stdout, report)
	} else {
		err = writeDoctor(e.Stdout, report, cfg)
	}
	if err != nil {
		return err
	}
	if !report.OK {
		return errSilent
	}
	return nil
}

// gatherDoctor runs every check of doctor; rec is zero for a domain the
// table does not know, which gets the DNS checks alone. Only the database
// failing is an error: the cluster and HTTPS failing are findings.
func (e *Env) gatherDoctor(cfg worker.Config, pool *pgxpool.Pool, host string, rec domain.Record, canonical string) (DoctorReport, error) {
	ctx := e.Ctx
	r := DoctorReport{Domain: host, CheckedAt: time.Now().UTC(), Registered: rec.ID != "", Alerts: []db.Alert{}}
	if r.Registered {
		r.Domain, r.Row = rec.Domain, &rec
		events, err := db.ListEvents(ctx, pool, rec.ID)
		if err != nil {
			return r, err
		}
		r.Events = events[max(0, len(events)-doctorEvents):]
		if r.Jobs, err = db.DomainJobs(ctx, pool, rec.ID, doctorJobs); err != nil {
			return r, err
		}
		if r.Alerts, err = db.DomainAlerts(ctx, pool, rec.ID); err != nil {
			return r, err
		}
		r.JobsURL = domain.JobsURL(cfg.UIURL, rec.Domain, rec.Tenant)
	}
	r.ExpectedCNAME = canonical
	if r.ExpectedCNAME == "" {
		r.ExpectedCNAME = rec.CNAMETarget()
	}
	resolver, err := dns.NewResolver(dns.Config{Servers: cfg.DNSServers, Timeout: cfg.DNSTimeout})
	if err != nil {
		return r, err
	}
	r.DNS = resolver.Check(ctx, r.Domain, r.ExpectedCNAME, cfg.CAAIdentity)
	if r.Registered {
		r.Cluster = e.doctorCluster(cfg, pool, rec)
		// Before its objects are applied a domain serves nothing of ours.
		if pastApply(rec.Status) {
			r.HTTPS = doctorHTTPS(ctx, cfg, rec.Domain)
		}
	}
	r.Next, r.OK = nextStep(r, cfg)
	return r, nil
}

// doctorCluster reads the domain's objects and issuance chain; a cluster
// that is not configured or cannot be read is reported, not returned.
func (e *Env) doctorCluster(cfg worker.Config, pool *pgxpool.Pool, rec domain.Record) *DoctorCluster {
	out := &DoctorCluster{}
	restCfg, err := worker.RestConfig(cfg)
	switch {
	case err != nil:
		out.Error = err.Error()
		return out
	case restCfg == nil:
		out.Error = "no Kubernetes cluster configured (KUBECONFIG unset and not in a cluster)"
		return out
	}
	restCfg.Timeout = doctorKubeTimeout
	client, err := k8s.NewClient(restCfg)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	kubeCfg := cfg.Kube
	if kubeCfg.Installation, err = db.InstallationID(e.Ctx, pool); err != nil {
		out.Error = err.Error()
		return out
	}
	ctx, cancel := context.WithTimeout(e.Ctx, 2*doctorKubeTimeout)
	defer cancel()
	out.DomainState, err = client.DescribeDomain(ctx, k8s.Domain{ID: rec.ID, Tenant: string(rec.Tenant), Host: rec.Domain,
		CanonicalHost: rec.CanonicalHost}, kubeCfg)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	if p, ok := out.Issuance.CAProblem(); ok {
		out.CAProblem = &DoctorCAProblem{Type: p.Type, Detail: p.Detail, URL: p.URL}
	}
	return out
}

func doctorHTTPS(ctx context.Context, cfg worker.Config, host string) *DoctorHTTPS {
	res := probe.Probe(ctx, cfg.Probe, host)
	out := &DoctorHTTPS{URL: res.URL, OK: res.OK, Message: res.Message, StatusCode: res.StatusCode,
		Issuer: res.CertificateIssuer, Names: res.CertificateNames}
	if !res.CertificateNotAfter.IsZero() {
		out.NotAfter = &res.CertificateNotAfter
	}
	return out
}

// condition returns the Certificate's condition of type t, if any.
func (c *DoctorCluster) condition(t string) (k8s.Condition, bool) {
	if c == nil || c.Certificate == nil {
		return k8s.Condition{}, false
	}
	for _, cond := range c.Certificate.Conditions {
		if cond.Type == t {
			return cond, true
		}
	}
	return k8s.Condition{}, false
}

// missing names the domain's objects that are not in the cluster.
func (c *DoctorCluster) missing() []string {
	var out []string
	for _, o := range c.Objects {
		if !o.Exists && o.Kind != "Secret" {
			out = append(out, o.Kind+" "+o.Namespace+"/"+o.Name)
		}
	}
	return out
}

// pastApply: a domain in this status has (or should have) its objects in
// the cluster.
func pastApply(s domain.Status) bool {
	return slices.Contains([]domain.Status{domain.StatusCertificateIssuing, domain.StatusCertificateFailed,
		domain.StatusDeploying, domain.StatusActive}, s)
}

// selfCheckPatience is how long cert-manager's own HTTP-01 check may fail
// before doctor calls it the thing to fix: it passes within seconds when the
// route works.
const selfCheckPatience = time.Minute

// stuckChallenge is a Challenge cert-manager has not yet handed to the CA
// and whose own check has been failing for longer than selfCheckPatience;
// nil when none.
func stuckChallenge(c *DoctorCluster, now time.Time) *k8s.IssuanceStep {
	if c == nil {
		return nil
	}
	for i, ch := range c.Issuance.Challenges {
		if ch.State == "pending" && ch.Reason != "" && ch.URL != "" && now.Sub(ch.CreatedAt) > selfCheckPatience {
			return &c.Issuance.Challenges[i]
		}
	}
	return nil
}

// nextStep is the one thing to do next, decided from everything doctor
// gathered; ok is false when it is a fix rather than "nothing to do".
func nextStep(r DoctorReport, cfg worker.Config) (string, bool) {
	dnsOK := r.DNS.Outcome == dns.OutcomeVerified
	dnsFix := r.DNS.Message
	for _, c := range r.DNS.Checks {
		if !c.OK && c.Fix != "" {
			dnsFix = c.Fix
			break
		}
	}
	if r.DNS.Outcome == dns.OutcomeResolverError {
		dnsFix = "The resolvers did not answer (" + r.DNS.Message + "); check PORTAL_DOMAIN_DNS_SERVERS and that they reach " + r.Domain + "'s DNS servers."
	}
	if !r.Registered {
		if !dnsOK {
			return dnsFix, false
		}
		return fmt.Sprintf("%s is not registered and its DNS is ready: portal-domains register --tenant <tenant> --domain %s", r.Domain, r.Domain), true
	}
	rec := *r.Row
	retry := fmt.Sprintf("portal-domains retry --tenant %s --domain-id %s", rec.Tenant, rec.ID)
	refresh := fmt.Sprintf("portal-domains refresh --tenant %s --domain-id %s", rec.Tenant, rec.ID)
	inCluster := pastApply(rec.Status)
	c := r.Cluster
	ready, _ := c.condition("Ready")
	issuing, _ := c.condition("Issuing")
	switch {
	case rec.Status == domain.StatusDisabled:
		return "Nothing to do: the domain is disabled and its objects are being removed.", true
	case !dnsOK && rec.Status == domain.StatusDNSFailed:
		return dnsFix + " Then: " + retry, false
	case !dnsOK:
		return dnsFix, false
	case rec.Status == domain.StatusDNSFailed:
		return "DNS is right now: " + retry, false
	case inCluster && c != nil && c.Error != "":
		return "Could not read the cluster (" + c.Error + "): check the worker's cluster access (KUBECONFIG, deploy/rbac.yaml).", false
	case inCluster && c != nil && len(c.missing()) > 0:
		return strings.Join(c.missing(), ", ") + " missing from the cluster: " + refresh, false
	case inCluster && ready.Status != "True" && c != nil && c.CAProblem != nil:
		msg := jobs.CAFailureMessage(rec, cfg.CAAIdentity, jobs.CAFailure{Kind: c.CAProblem.Type, Detail: c.CAProblem.Detail, URL: c.CAProblem.URL})
		if rec.Status == domain.StatusCertificateFailed {
			return msg + " Then: " + retry, false
		}
		return msg + " Once fixed, cert-manager tries again after its backoff (1h, 2h, 4h…), or at once with `cmctl renew`.", false
	case inCluster && ready.Status != "True" && stuckChallenge(c, r.CheckedAt) != nil:
		ch := stuckChallenge(c, r.CheckedAt)
		return fmt.Sprintf("cert-manager's own check of %s has not passed for %s: %s. Check that %s's CNAME points to %s and that port 80 of %s reaches the ingress gateway from inside the cluster.",
			ch.URL, r.CheckedAt.Sub(ch.CreatedAt).Round(time.Second), oneLine(ch.Reason, 300), rec.Domain, rec.CNAMETarget(), rec.Domain), false
	case inCluster && ready.Status != "True" && issuing.Status == "False" && issuing.Reason == "Failed":
		return "cert-manager could not issue the certificate: " + issuing.Message + " See `kubectl describe challenges -n " + cfg.Kube.CertNamespace + "`.", false
	case rec.Status == domain.StatusCertificateFailed:
		return "Fix what the message says (" + oneLine(rec.StatusMessage, 200) + "), then: " + retry, false
	case (rec.Status == domain.StatusActive || rec.Status == domain.StatusDeploying && ready.Status == "True") && r.HTTPS != nil && !r.HTTPS.OK:
		return "HTTPS does not serve the certificate yet: " + r.HTTPS.Message + " The ingress gateway must find the TLS Secret, or the worker's copy of it, in its own namespace (docs/issuance.md).", false
	case len(r.Alerts) > 0:
		return "An alert is open: " + r.Alerts[0].Message, false
	case rec.Status == domain.StatusActive && r.HTTPS != nil:
		until := ""
		if r.HTTPS.NotAfter != nil {
			until = " until " + r.HTTPS.NotAfter.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("Nothing to do: %s is active and serves a certificate from %s for %s%s.", rec.Domain, r.HTTPS.Issuer,
			strings.Join(r.HTTPS.Names, ", "), until), true
	}
	msg := fmt.Sprintf("Nothing to do yet: %s is %s", rec.Domain, rec.Status)
	if len(r.Jobs) > 0 {
		j := r.Jobs[0]
		msg += fmt.Sprintf("; its %s job is %s", j.Kind, j.State)
		if j.State == "scheduled" || j.State == "available" || j.State == "retryable" {
			msg += ", next run " + j.ScheduledAt.UTC().Format(time.RFC3339)
		}
	}
	return msg + ".", true
}

// writeDoctor prints the report as sections, in the order it was gathered.
func writeDoctor(w io.Writer, r DoctorReport, cfg worker.Config) error {
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	mark := func(ok bool) string {
		if ok {
			return "✓"
		}
		return "✗"
	}
	if !r.Registered {
		fmt.Fprintf(w, "%s is not registered in portal_domains: DNS and CAA only.\n", r.Domain)
	} else {
		rec := r.Row
		fmt.Fprintf(w, "Domain %s (id %s, tenant %s)\n", rec.Domain, rec.ID, rec.Tenant)
		fmt.Fprintf(w, "  status:   %s since %s (generation %d)\n", rec.Status, at(rec.StatusChangedAt), rec.Generation)
		fmt.Fprintf(w, "  message:  %s\n", rec.StatusMessage)
		if len(r.Events) > 0 {
			fmt.Fprintln(w, "  last events:")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, ev := range r.Events {
				from := string(ev.From)
				if from == "" {
					from = "(new)"
				}
				fmt.Fprintf(tw, "    %s\t%s → %s\t%s\n", ev.CreatedAt, from, ev.To, oneLine(ev.Message, 120))
			}
			_ = tw.Flush()
		}
		fmt.Fprintln(w, "\nJobs:")
		if len(r.Jobs) == 0 {
			fmt.Fprintln(w, "  none")
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, j := range r.Jobs {
			line := fmt.Sprintf("  %d\t%s\t%s\tgen %d\tattempt %d/%d\tscheduled %s", j.ID, j.Kind, j.State, j.Generation,
				j.Attempt, j.MaxAttempts, at(j.ScheduledAt))
			if j.LastError != "" {
				line += "\tlast error: " + oneLine(j.LastError, 100)
			}
			fmt.Fprintln(tw, line)
		}
		_ = tw.Flush()
		if r.JobsURL != "" {
			fmt.Fprintf(w, "  Jobs in River UI: %s\n", r.JobsURL)
		}
	}

	fmt.Fprintf(w, "\nDNS and CAA: %s → expected CNAME %s (resolvers %s)\n", r.Domain, r.ExpectedCNAME, strings.Join(cfg.DNSServers, ", "))
	for _, c := range r.DNS.Checks {
		fmt.Fprintf(w, "  %s %s: %s\n", mark(c.OK), c.Name, c.Seen)
		if !c.OK && c.Expected != "" {
			fmt.Fprintf(w, "      expected: %s\n", c.Expected)
		}
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(w, "      fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(w, "  %s\n", r.DNS.Message)

	if c := r.Cluster; c != nil {
		fmt.Fprintln(w, "\nObjects in the cluster:")
		if c.Error != "" {
			fmt.Fprintf(w, "  ✗ cluster not read: %s\n", c.Error)
		}
		for _, o := range c.Objects {
			if !o.Exists {
				fmt.Fprintf(w, "  ✗ %s %s/%s: not found\n", o.Kind, o.Namespace, o.Name)
				continue
			}
			owner := "installation " + o.Installation
			if o.Installation == "" {
				owner = "no installation label"
			}
			fmt.Fprintf(w, "  ✓ %s %s/%s (created %s, %s)\n", o.Kind, o.Namespace, o.Name, at(*o.CreatedAt), owner)
		}
		if cert := c.Certificate; cert != nil {
			fmt.Fprintf(w, "\nCertificate (issuer %s, names %s):\n", cert.Issuer, strings.Join(cert.DNSNames, ", "))
			for _, cond := range cert.Conditions {
				fmt.Fprintf(w, "  %s=%s %s: %s (since %s)\n", cond.Type, cond.Status, cond.Reason, cond.Message, at(cond.Since))
			}
			if cert.NotAfter != nil {
				fmt.Fprintf(w, "  valid until %s", at(*cert.NotAfter))
				if cert.RenewalTime != nil {
					fmt.Fprintf(w, ", renewed from %s", at(*cert.RenewalTime))
				}
				fmt.Fprintln(w)
			}
			if cert.FailedIssuanceAttempts > 0 {
				fmt.Fprintf(w, "  %d failed issuance attempts", cert.FailedIssuanceAttempts)
				if cert.LastFailureTime != nil {
					fmt.Fprintf(w, ", the last at %s", at(*cert.LastFailureTime))
				}
				fmt.Fprintln(w)
			}
			fmt.Fprintln(w, "\nIssuance:")
			steps := c.Issuance.Challenges
			if c.Issuance.Order != nil {
				steps = append([]k8s.IssuanceStep{*c.Issuance.Order}, steps...)
			}
			if c.Issuance.Request != nil {
				steps = append([]k8s.IssuanceStep{*c.Issuance.Request}, steps...)
			}
			if len(steps) == 0 {
				fmt.Fprintln(w, "  no CertificateRequest (none needed yet, or cleaned up after issuance)")
			}
			for _, s := range steps {
				fmt.Fprintf(w, "  %s %s: %s", s.Kind, s.Name, s.State)
				if s.URL != "" {
					fmt.Fprintf(w, " (%s %s)", s.Type, s.URL)
				}
				if s.Reason != "" {
					fmt.Fprintf(w, ": %s", oneLine(s.Reason, 400))
				}
				fmt.Fprintln(w)
			}
			if c.IssuanceError != "" {
				fmt.Fprintf(w, "  ✗ could not read the issuance: %s\n", c.IssuanceError)
			}
			if p := c.CAProblem; p != nil {
				fmt.Fprintf(w, "  The CA's reason (%s): %s\n", cmp.Or(p.Type, "unknown"), p.Detail)
			}
		}
	}

	if h := r.HTTPS; h != nil {
		fmt.Fprintf(w, "\nHTTPS %s:\n  %s %s\n", h.URL, mark(h.OK), h.Message)
		if h.Issuer != "" || len(h.Names) > 0 {
			fmt.Fprintf(w, "  serves a certificate from %s for %s", h.Issuer, strings.Join(h.Names, ", "))
			if h.NotAfter != nil {
				fmt.Fprintf(w, ", valid until %s", at(*h.NotAfter))
			}
			fmt.Fprintln(w)
		}
	}

	if r.Registered {
		fmt.Fprintln(w, "\nOpen alerts:")
		if len(r.Alerts) == 0 {
			fmt.Fprintln(w, "  none")
		}
		for _, a := range r.Alerts {
			fmt.Fprintf(w, "  %s (opened %s): %s\n", a.Kind, at(a.OpenedAt), a.Message)
		}
	}
	_, err := fmt.Fprintf(w, "\nNext: %s\n", r.Next)
	return err
}
