// Package worker composes the portal-domains worker process: the River
// client and its queues, the adapters that give the jobs package real
// Postgres, DNS, Kubernetes and HTTPS probes, the Certificate watch, the
// periodic jobs and the HTTP endpoints. cmd/portal-domains only parses flags
// and calls it; tests drive it the same way.
package worker

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/gitrecord"
	"github.com/portal-domains/portal-domains/internal/probe"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// Config is everything the worker reads from the environment.
type Config struct {
	DatabaseURL     string
	CanonicalSuffix string

	DNSServers  []string
	DNSTimeout  time.Duration
	CAAIdentity string
	DNSDeadline time.Duration
	// DNSRecheckMin/Max bound the re-check schedule of a missing CNAME.
	DNSRecheckMin, DNSRecheckMax time.Duration

	// Kubeconfig is a kubeconfig path; empty tries in-cluster config, and
	// with neither the Kubernetes queue is not worked (jobs wait there).
	Kubeconfig string
	// KubeQPS and KubeBurst cap the worker's request rate to the API
	// server; zero keeps the rest config's, or k8s.DefaultQPS/DefaultBurst.
	KubeQPS      float64
	KubeBurst    int
	Kube         k8s.Config
	ManifestDir  string
	CertDeadline time.Duration

	Probe probe.Config

	// Workers per queue.
	DNSWorkers, KubeWorkers, ProbeWorkers int
	ShutdownTimeout                       time.Duration
	// JobTimeout cancels a job's context after this long: a stage is a few
	// network calls, so anything slower is stuck.
	JobTimeout time.Duration
	// RescueAfter: a job still running this long after it started belongs
	// to a worker that died (kill -9, OOM, lost node) and is retried by
	// another. It must be at least JobTimeout, or live jobs would be
	// rescued while they run.
	RescueAfter time.Duration
	// FetchCooldown is the least time between two fetches of one queue
	// (River's FetchCooldown); see DefaultFetchCooldown.
	FetchCooldown time.Duration
	// TransitionGroup is the most status transitions committed in one
	// transaction (db.TransitionGroup); 1 commits each alone.
	TransitionGroup int
	// SweepInterval: how often managed objects without a live row are deleted.
	SweepInterval time.Duration
	// Sweep bounds each sweep: least object age, most deletes per run, dry
	// run.
	Sweep jobs.SweepConfig
	// UIURL (PORTAL_DOMAIN_UI_URL) is the River UI's public address, ending
	// in /riverui: status, doctor and alerts link to a domain's jobs there.
	UIURL string
	// Appliance accepts AlgaPSA's appliance edition's writes (rows inserted
	// active, deleted to disable) and runs no pipeline (db.Settings).
	Appliance bool
	// KeepDisabled keeps a disabled row after its objects are removed
	// instead of deleting it (see jobs.Config.KeepDisabled).
	KeepDisabled bool
	// ReconcileInterval: how often domains in a working status without a
	// live stage job get it.
	ReconcileInterval time.Duration
	LogLevel          string

	// Alerts: the stuck scan's schedule, thresholds and webhook.
	Alerts AlertConfig
	// Recheck: how often active domains are re-checked and how long a
	// problem may last before it is alerted on (PORTAL_DOMAIN_ACTIVE_RECHECK,
	// PORTAL_DOMAIN_DRIFT_GRACE); RecheckWorkers work the recheck queue.
	Recheck        jobs.RecheckConfig
	RecheckWorkers int

	// Git is the repository recording every manifest change
	// (PORTAL_DOMAIN_GIT_*); off unless PORTAL_DOMAIN_GIT_REPO is set.
	Git gitrecord.Config
	// GitReviewRecheck: how soon an apply waiting for its review branch to
	// be merged looks again (jobs.Config.ReviewRecheck).
	GitReviewRecheck time.Duration
}

// DefaultFetchCooldown is the least time between two fetches of a queue.
// Below River's 100 ms because a new domain or a freed slot waits for the
// next fetch, and reacting in milliseconds is what this service is for. In
// a bulk import a short cooldown lets the DNS stage run ahead of the
// kubernetes queue, the bottleneck, and keeps every queue full (more
// memory): PORTAL_DOMAIN_FETCH_COOLDOWN=100ms suits bulk imports.
const DefaultFetchCooldown = 20 * time.Millisecond

// DefaultRecheckWorkers work the recheck queue: 100,000 domains every 6h
// are 4.6 checks a second, and a check is a few DNS queries and one HTTPS
// request.
const DefaultRecheckWorkers = 10

// DefaultTransitionGroup is the most transitions committed together; see
// db.TransitionGroup.
const DefaultTransitionGroup = 64

// transitionCommits is how many groups of transitions commit at once: two
// let one group fill while the other flushes; more only split the groups
// and compete for the same WAL flush.
const transitionCommits = 2

// DBSettings are the settings the SQL side reads.
func (c Config) DBSettings() db.Settings {
	return db.Settings{CanonicalSuffix: c.CanonicalSuffix, Appliance: c.Appliance, GitRecord: c.Git.Enabled()}
}

// ConfigFromEnv reads and validates the configuration; every error names
// the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{
		DatabaseURL:     cmp.Or(strings.TrimSpace(getenv("DATABASE_URL")), db.DefaultURL),
		CAAIdentity:     cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_CAA_IDENTITY")), "letsencrypt.org"),
		Kubeconfig:      getenv("KUBECONFIG"),
		ManifestDir:     getenv("PORTAL_DOMAIN_MANIFEST_DIR"),
		LogLevel:        cmp.Or(strings.TrimSpace(getenv("LOG_LEVEL")), "info"),
		Probe:           probe.Config{Path: getenv("PORTAL_DOMAIN_PROBE_PATH"), DialAddress: getenv("PORTAL_DOMAIN_PROBE_DIAL_ADDRESS"), CAFile: getenv("PORTAL_DOMAIN_PROBE_CA_FILE")},
		DNSWorkers:      50,
		KubeWorkers:     20,
		ProbeWorkers:    20,
		TransitionGroup: DefaultTransitionGroup,
		ShutdownTimeout: 30 * time.Second,
		Recheck:         jobs.DefaultRecheckConfig(),
		RecheckWorkers:  DefaultRecheckWorkers,
	}
	var err error
	if cfg.CanonicalSuffix, err = domain.NormalizeSuffix(cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_CANONICAL_SUFFIX")), domain.DefaultCanonicalSuffix)); err != nil {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_CANONICAL_SUFFIX: %w", err)
	}
	if servers := getenv("PORTAL_DOMAIN_DNS_SERVERS"); servers != "" {
		if cfg.DNSServers, err = dns.ParseServers(servers); err != nil {
			return cfg, fmt.Errorf("PORTAL_DOMAIN_DNS_SERVERS: %w", err)
		}
	} else if cfg.DNSServers, err = dns.ServersFromResolvConf("/etc/resolv.conf"); err != nil {
		return cfg, fmt.Errorf("no PORTAL_DOMAIN_DNS_SERVERS and /etc/resolv.conf unusable: %w", err)
	}
	durations := []struct {
		name string
		dst  *time.Duration
		def  time.Duration
	}{
		{"PORTAL_DOMAIN_DNS_TIMEOUT", &cfg.DNSTimeout, dns.DefaultTimeout},
		{"PORTAL_DOMAIN_DNS_DEADLINE", &cfg.DNSDeadline, 48 * time.Hour},
		{"PORTAL_DOMAIN_DNS_RECHECK_MIN", &cfg.DNSRecheckMin, 10 * time.Second},
		{"PORTAL_DOMAIN_DNS_RECHECK_MAX", &cfg.DNSRecheckMax, 15 * time.Minute},
		{"PORTAL_DOMAIN_CERT_DEADLINE", &cfg.CertDeadline, 6 * time.Hour},
		{"PORTAL_DOMAIN_PROBE_TIMEOUT", &cfg.Probe.Timeout, 10 * time.Second},
		{"PORTAL_DOMAIN_SHUTDOWN_TIMEOUT", &cfg.ShutdownTimeout, 30 * time.Second},
		{"PORTAL_DOMAIN_SWEEP_INTERVAL", &cfg.SweepInterval, 10 * time.Minute},
		{"PORTAL_DOMAIN_SWEEP_MIN_AGE", &cfg.Sweep.MinAge, jobs.DefaultSweepMinAge},
		{"PORTAL_DOMAIN_RECONCILE_INTERVAL", &cfg.ReconcileInterval, time.Minute},
		{"PORTAL_DOMAIN_JOB_TIMEOUT", &cfg.JobTimeout, 2 * time.Minute},
		{"PORTAL_DOMAIN_RESCUE_AFTER", &cfg.RescueAfter, 5 * time.Minute},
		{"PORTAL_DOMAIN_FETCH_COOLDOWN", &cfg.FetchCooldown, DefaultFetchCooldown},
		{"PORTAL_DOMAIN_ACTIVE_RECHECK", &cfg.Recheck.Interval, cfg.Recheck.Interval},
		{"PORTAL_DOMAIN_DRIFT_GRACE", &cfg.Recheck.Grace, cfg.Recheck.Grace},
	}
	for _, d := range durations {
		if *d.dst, err = parseDuration(getenv(d.name), d.def); err != nil {
			return cfg, fmt.Errorf("%s: %w", d.name, err)
		}
	}
	if cfg.RescueAfter < cfg.JobTimeout {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_RESCUE_AFTER (%s) must be at least PORTAL_DOMAIN_JOB_TIMEOUT (%s), or running jobs would be retried while they run",
			cfg.RescueAfter, cfg.JobTimeout)
	}
	if cfg.Recheck.Interval < time.Minute || cfg.Recheck.Interval > 7*24*time.Hour {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_ACTIVE_RECHECK (%s) must be from 1m to 168h", cfg.Recheck.Interval)
	}
	// The scheduler's period follows the interval (see RecheckConfig).
	cfg.Recheck.ScheduleEvery = 0
	if cfg.FetchCooldown < time.Millisecond || cfg.FetchCooldown > time.Second {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_FETCH_COOLDOWN (%s) must be from 1ms to 1s", cfg.FetchCooldown)
	}
	if cfg.Probe.MinStatus, cfg.Probe.MaxStatus, err = parseStatusRange(getenv("PORTAL_DOMAIN_PROBE_STATUSES")); err != nil {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_PROBE_STATUSES: %w", err)
	}
	if cfg.Probe.CAFile != "" {
		if _, err := os.Stat(cfg.Probe.CAFile); err != nil {
			return cfg, fmt.Errorf("PORTAL_DOMAIN_PROBE_CA_FILE: %w", err)
		}
	}
	ints := []struct {
		name string
		dst  *int
	}{
		{"PORTAL_DOMAIN_DNS_WORKERS", &cfg.DNSWorkers},
		{"PORTAL_DOMAIN_KUBE_WORKERS", &cfg.KubeWorkers},
		{"PORTAL_DOMAIN_PROBE_WORKERS", &cfg.ProbeWorkers},
		{"PORTAL_DOMAIN_RECHECK_WORKERS", &cfg.RecheckWorkers},
		{"PORTAL_DOMAIN_TRANSITION_GROUP", &cfg.TransitionGroup},
	}
	for _, n := range ints {
		if v := getenv(n.name); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i < 1 || i > 10000 {
				return cfg, fmt.Errorf("%s: %q is not a number from 1 to 10000", n.name, v)
			}
			*n.dst = i
		}
	}
	if v := strings.TrimSpace(getenv("PORTAL_DOMAIN_KUBE_QPS")); v != "" {
		if cfg.KubeQPS, err = strconv.ParseFloat(v, 64); err != nil || cfg.KubeQPS <= 0 || cfg.KubeQPS > 100000 {
			return cfg, fmt.Errorf("PORTAL_DOMAIN_KUBE_QPS: %q is not a request rate from 1 to 100000 per second", v)
		}
	}
	if v := strings.TrimSpace(getenv("PORTAL_DOMAIN_KUBE_BURST")); v != "" {
		if cfg.KubeBurst, err = strconv.Atoi(v); err != nil || cfg.KubeBurst < 1 || cfg.KubeBurst > 100000 {
			return cfg, fmt.Errorf("PORTAL_DOMAIN_KUBE_BURST: %q is not a number from 1 to 100000", v)
		}
	}
	cfg.Sweep.MaxDeletes = jobs.DefaultSweepMaxDeletes
	if v := strings.TrimSpace(getenv("PORTAL_DOMAIN_SWEEP_MAX_DELETES")); v != "" {
		if cfg.Sweep.MaxDeletes, err = strconv.Atoi(v); err != nil || cfg.Sweep.MaxDeletes < 0 || cfg.Sweep.MaxDeletes > 100000 {
			return cfg, fmt.Errorf("PORTAL_DOMAIN_SWEEP_MAX_DELETES: %q is not a number from 0 to 100000", v)
		}
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{
		{"PORTAL_DOMAIN_SWEEP_DRY_RUN", &cfg.Sweep.DryRun},
		{"PORTAL_DOMAIN_KEEP_DISABLED", &cfg.KeepDisabled},
		{"PORTAL_DOMAIN_APPLIANCE", &cfg.Appliance},
	} {
		switch v := strings.TrimSpace(getenv(b.name)); v {
		case "", "false", "0":
		case "true", "1":
			*b.dst = true
		default:
			return cfg, fmt.Errorf("%s: %q is not true or false", b.name, v)
		}
	}
	if v := strings.TrimSpace(getenv("PORTAL_DOMAIN_UI_URL")); v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			// Not echoed: it may carry credentials.
			return cfg, errors.New("PORTAL_DOMAIN_UI_URL is not an http(s) address without credentials, such as https://ops.example.com/riverui")
		}
		cfg.UIURL = strings.TrimRight(v, "/")
	}
	if cfg.Kube, err = k8s.ConfigFromEnv(getenv); err != nil {
		return cfg, err
	}
	if cfg.Alerts, err = alertConfigFromEnv(getenv); err != nil {
		return cfg, err
	}
	if cfg.Git, err = gitrecord.ConfigFromEnv(getenv); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func parseDuration(v string, def time.Duration) (time.Duration, error) {
	if strings.TrimSpace(v) == "" {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 30s, 15m or 48h", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", v)
	}
	return d, nil
}

// parseStatusRange reads "200-399" (or one code).
func parseStatusRange(v string) (int, int, error) {
	if strings.TrimSpace(v) == "" {
		return 0, 0, nil
	}
	lo, hi, found := strings.Cut(strings.TrimSpace(v), "-")
	if !found {
		hi = lo
	}
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || l < 100 || h > 599 || l > h {
		return 0, 0, fmt.Errorf("%q is not a status range like 200-399", v)
	}
	return l, h, nil
}
