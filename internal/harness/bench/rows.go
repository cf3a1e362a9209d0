package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/fixtures/stuckscan"
	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// Targets.
const (
	minRatio         = 0.8
	insertToJobP95   = 100 * time.Millisecond
	readyToActiveP95 = time.Second
	scanTarget       = 100 * time.Millisecond
	rssTargetMB      = 200.0
	objectsPerDomain = 3 // Certificate, Gateway, VirtualService
	throughputTarget = "≥ 0.8× baseline"
	// Row 1 against the plain River stage: grouped reads and commits should
	// show.
	plainStageRatio   = 1.2
	plainStageTarget  = "≥ 1.2× baseline"
	fieldManagerBench = "portal-domains-bench"
)

func throughputRow(id, measure, unit string, value, baseline float64, baselineName, note string) Row {
	r := Row{ID: id, Measure: measure, Unit: unit, Value: value, Baseline: baseline, BaselineName: baselineName,
		Target: throughputTarget, Note: note}
	if baseline > 0 {
		r.Ratio = value / baseline
	}
	r.Pass = r.Ratio >= minRatio
	return r
}

// rowVerifyDNS is row 1: how fast the dns queue runs verify_dns against a
// loopback DNS server, compared with the plain River stage a user would
// write instead (riverPlainStageRate) over the same domains. River's no-op
// rate on the same queue is in the note for scale. The worker has no
// cluster, so domains stop at pending_certificate.
func (b *bench) rowVerifyDNS(ctx context.Context) ([]Row, error) {
	n := b.opts.N
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	noop, err := b.riverNoopRate(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("River no-op jobs: %w", err)
	}
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	plain, err := b.riverPlainStageRate(ctx, b.domains[phaseDNS])
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	w, err := b.startWorker(ctx, "verify-dns", workerEnv{})
	if err != nil {
		return nil, err
	}
	stage, err := func() (queueRun, error) {
		b.quiet(ctx, "verify_dns")
		if err := insertDomains(ctx, b.pool, b.domains[phaseDNS]); err != nil {
			return queueRun{}, err
		}
		run, err := b.timeQueueRun(ctx, w.pid(), domain.KindVerifyDNS, n)
		if err != nil {
			return queueRun{}, err
		}
		return run, b.expectStatus(ctx, phaseDNS, "pending_certificate", n)
	}()
	if err = errors.Join(err, w.stop()); err != nil {
		return nil, err
	}
	row := throughputRow("1", "verify_dns jobs/s", "jobs/s", stage.rate, plain.rate, "plain River stage",
		fmt.Sprintf("%s domains against the loopback DNS (CNAME chain + CAA climb); dns queue with %d workers in both; "+
			"from the commit that makes the jobs available to the last completion; "+
			"the baseline is the River stage a user would write: one job per check with the same resolver, then the row update, "+
			"the history row, the next job and JobCompleteTx in one transaction per job; "+
			"River no-op jobs on the same queue, for scale: %.0f jobs/s; "+
			"CPU (bench = the loopback DNS server and the baselines' River clients): verify_dns %s; plain stage %s; River no-op %s",
			thousands(n), b.opts.DNSWorkers, noop.rate, stage.cpu.perJob(n), plain.cpu.perJob(n), noop.cpu.perJob(n)))
	row.Target, row.Pass = plainStageTarget, row.Ratio >= plainStageRatio
	return []Row{row}, nil
}

// expectStatus checks that every domain of a phase reached status, so a
// rate is never reported for work that went wrong (a mismatched CNAME
// would also "complete" its job).
func (b *bench) expectStatus(ctx context.Context, phase, status string, want int) error {
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM portal_domains WHERE domain LIKE $1 AND status::text = $2`,
		phase+"-%", status).Scan(&n); err != nil {
		return fmt.Errorf("count %s domains: %w", status, err)
	}
	if n != want {
		return fmt.Errorf("%d of %d %s domains reached %s", n, want, phase, status)
	}
	return nil
}

// rowApply is row 2: objects per second through the apply stage, compared
// with server-side applying the same rendered objects directly with as many
// goroutines as the kubernetes queue has workers. Both run Options.Rounds
// times, alternating, each on a fresh API server; the row reports medians.
func (b *bench) rowApply(ctx context.Context) ([]Row, error) {
	n := b.opts.N
	var rates, bases []float64
	stageCPU, baseCPU := cpuUse{}, cpuUse{}
	for round := 1; round <= b.opts.Rounds; round++ {
		b.roundProgress(round)
		if err := b.freshAPIServer(ctx); err != nil {
			return nil, err
		}
		b.quiet(ctx, "bare server-side apply")
		cpuBefore := sampleCPU(-1)
		base, err := b.bareApplyRate(ctx, b.domains[phaseBaseline])
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		baseCPU.add(cpuUsed(cpuBefore, sampleCPU(-1)))
		rate, cpu, err := b.applyStageRate(ctx)
		if err != nil {
			return nil, err
		}
		stageCPU.add(cpu)
		rates, bases = append(rates, rate), append(bases, base)
	}
	return []Row{roundsRow(throughputRow("2", "apply stage objects/s", "objects/s", median(rates), median(bases), "bare server-side apply",
		fmt.Sprintf("%s domains × 3 objects; %d kubernetes workers vs %d goroutines calling k8s.Client.Apply; "+
			"the stage also reads the row, writes the transition and enqueues await_certificate; "+
			"CPU used by the stage, per round: %s; by the baseline: %s",
			thousands(n), b.opts.KubeWorkers, b.opts.KubeWorkers, stageCPU.per(b.opts.Rounds), baseCPU.per(b.opts.Rounds))), rates, bases)}, nil
}

// applyStageRate is one round of row 2's stage: a fresh API server and
// worker, N domains moved to pending_certificate, timed to the last one in
// certificate_issuing.
func (b *bench) applyStageRate(ctx context.Context) (float64, cpuUse, error) {
	if err := b.freshAPIServer(ctx); err != nil {
		return 0, nil, err
	}
	if err := b.reset(ctx); err != nil {
		return 0, nil, err
	}
	w, err := b.startWorker(ctx, "apply", workerEnv{kube: true, certNS: nsApply, gatewayNS: nsApply, issuer: unissuedIssuer})
	if err != nil {
		return 0, nil, err
	}
	var cpu cpuUse
	rate, err := func() (float64, error) {
		b.quiet(ctx, "apply stage")
		cpuBefore := sampleCPU(w.pid())
		// Through the trigger, as a worker would move them: each update is
		// a legal transition, and the last enqueues the apply job. The
		// verify_dns jobs the insert enqueued are dropped in the same
		// transaction, so only apply jobs become visible.
		err := db.InTx(ctx, b.pool, func(tx pgx.Tx) error {
			if err := insertDomains(ctx, tx, b.domains[phaseApply]); err != nil {
				return err
			}
			for _, stmt := range []string{
				`UPDATE portal_domains SET status = 'verifying_dns' WHERE domain LIKE 'apply-%'`,
				`UPDATE portal_domains SET status = 'pending_certificate' WHERE domain LIKE 'apply-%'`,
				`DELETE FROM river_job WHERE kind = 'verify_dns'`,
			} {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", stmt, err)
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		last, err := b.waitDone(ctx, "domains in certificate_issuing", b.opts.N,
			`SELECT count(*), max(status_changed_at) FROM portal_domains WHERE status = 'certificate_issuing'`)
		if err != nil {
			return 0, err
		}
		cpu = cpuUsed(cpuBefore, sampleCPU(w.pid()))
		return perSecond(b.opts.N*objectsPerDomain, last.Sub(t0)), nil
	}()
	return rate, cpu, errors.Join(err, w.stop())
}

// bareApplyRate applies pre-rendered objects with k8s.Client.Apply, as
// many at a time as the kubernetes queue has workers.
func (b *bench) bareApplyRate(ctx context.Context, ds []benchDomain) (float64, error) {
	cfg := k8s.Config{CertNamespace: nsBaseline, GatewayNamespace: nsBaseline, IssuerName: unissuedIssuer}
	objs := make([]k8s.Objects, len(ds))
	for i, d := range ds {
		o, err := k8s.Render(d.k8s(), cfg)
		if err != nil {
			return 0, err
		}
		objs[i] = o
	}
	next := make(chan k8s.Objects)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range b.opts.KubeWorkers {
		g.Go(func() error {
			for o := range next {
				if _, err := b.kube.Apply(gctx, o); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(next)
		for _, o := range objs {
			select {
			case next <- o:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return perSecond(len(objs)*objectsPerDomain, time.Since(start)), nil
}

// rowsEndToEnd measures rows 3, 4 and 6. The latency baselines run first,
// while nothing else does; then, Options.Rounds times, the bare outside
// work and a worker moving N domains from SQL insert to active, each on a
// fresh API server. The first round also takes the latency samples, with a
// worker and API server of their own before its throughput, and its
// throughput worker's idle and peak memory.
func (b *bench) rowsEndToEnd(ctx context.Context) ([]Row, error) {
	n, samples := b.opts.N, b.opts.LatencySamples
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	baseInsert, err := b.riverInsertLatency(ctx, samples)
	if err != nil {
		return nil, fmt.Errorf("insert latency baseline: %w", err)
	}
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	// River alone, for the note: the queue's own ceiling for 4-job chains.
	riverChains, err := b.riverChainRate(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("chain baseline: %w", err)
	}
	if err := b.freshAPIServer(ctx); err != nil {
		return nil, err
	}
	floor, err := b.watchFloor(ctx, b.domains[phaseWatch])
	if err != nil {
		return nil, fmt.Errorf("watch floor: %w", err)
	}
	if err := b.reset(ctx); err != nil {
		return nil, err
	}

	// Throughput: baseline and pipeline alternate, Options.Rounds times;
	// the latency samples and memory come from the first round.
	var m workerMeasurements
	var rates, bases []float64
	stageCPU, baseCPU := cpuUse{}, cpuUse{}
	for round := 1; round <= b.opts.Rounds; round++ {
		b.roundProgress(round)
		b.progress("  baseline: the outside work of %s domains, done bare", thousands(n))
		base, cpu, err := b.bareOutsideWorkRound(ctx)
		if err != nil {
			return nil, fmt.Errorf("bare outside-work baseline: %w", err)
		}
		bases = append(bases, base)
		baseCPU.add(cpu)
		if err := b.endToEndRound(ctx, &m, round == 1); err != nil {
			return nil, err
		}
		rates = append(rates, m.rate)
		stageCPU.add(m.cpu)
	}

	insertP, baseInsertP := percentiles(m.insertToQuery), percentiles(baseInsert)
	readyP, floorP := percentiles(m.readyToActive), percentiles(floor)
	rows := []Row{
		roundsRow(throughputRow("3", "end to end domains/s", "domains/s", median(rates), median(bases), "bare outside work",
			fmt.Sprintf("%s domains from one SQL INSERT (%s of it) to active; DEV-ONLY issuer signs at once; probe over HTTPS "+
				"to the dev gateway; last round %s; CPU used end to end, per round: %s; by the baseline: %s. Baseline: the same DNS checks, server-side applies, "+
				"issuer, Certificate watch and HTTPS probes with the same worker counts and no database or queue. "+
				"River alone runs %.1f no-op 4-job chains/s here (River's ceiling, with no outside work)",
				thousands(n), m.insertTook.Round(time.Millisecond), m.stages, stageCPU.per(b.opts.Rounds), baseCPU.per(b.opts.Rounds), riverChains)), rates, bases),
		latencyRow("4a", "insert → first DNS query", insertP, baseInsertP,
			"River insert → job start", insertToJobP95, len(m.insertToQuery),
			fmt.Sprintf("%d rows inserted one at a time about %s apart into an idle pipeline, from each commit; the stage loads the row "+
				"and asks DNS before it writes anything; the baseline notifies as the trigger does", len(m.insertToQuery), b.opts.LatencySpacing)),
		latencyRow("4b", "Certificate Ready → active", readyP, floorP,
			"k8s watch: write → event", readyToActiveP95, len(m.readyToActive),
			"the same domains, from the DEV-ONLY issuer's Ready write returning to the active event "+
				"(watch → wake → await_certificate → deploying → probe → active); baseline: a status write to the worker's informer callback"),
	}
	rss := Row{ID: "6", Measure: fmt.Sprintf("worker peak RSS, %s domains", thousands(n)), Unit: "MB",
		Value: m.peakMB, Baseline: m.idleMB, BaselineName: "idle worker", Ratio: m.peakMB / m.idleMB,
		Target: fmt.Sprintf("< %.0f MB @ %s", rssTargetMB, thousands(RSSTargetDomains)), Pass: m.peakMB < rssTargetMB}
	if n < RSSTargetDomains {
		rss.Note = fmt.Sprintf("at %s domains, not %s (run -n %d for the target's load); ", thousands(n), thousands(RSSTargetDomains), RSSTargetDomains)
	}
	rss.Note += fmt.Sprintf("VmHWM of the worker process after %s domains end to end; baseline: the same worker's VmRSS once started and idle",
		thousands(n))
	if m.heapMB > 0 {
		rss.Note += fmt.Sprintf("; Go heap in use right after the run: %.0f MB", m.heapMB)
	}
	return append(rows, rss), nil
}

// roundsRow says in the note how the rounds went, when there were several:
// each round's ratio, so a noisy machine shows as a spread.
func roundsRow(r Row, rates, bases []float64) Row {
	if len(rates) < 2 {
		return r
	}
	ratios := make([]string, len(rates))
	for i := range rates {
		r.RoundRatios = append(r.RoundRatios, rates[i]/bases[i])
		ratios[i] = fmt.Sprintf("%.2f", rates[i]/bases[i])
	}
	r.Note = fmt.Sprintf("medians of %d rounds, each side on a fresh API server (ratio per round: %s); %s",
		len(rates), strings.Join(ratios, ", "), r.Note)
	return r
}

// median of v (the mean of the middle two for an even count; 0 for none).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (b *bench) roundProgress(round int) {
	if b.opts.Rounds > 1 {
		b.progress("  round %d of %d", round, b.opts.Rounds)
	}
}

func latencyRow(id, measure string, p, base Percentiles, baseName string, target time.Duration, samples int, note string) Row {
	r := Row{ID: id, Measure: measure, Unit: "ms", Value: p.P95, Baseline: base.P95, BaselineName: baseName,
		Percentiles: &p, BaselinePercentiles: &base, Samples: samples,
		Target: fmt.Sprintf("p95 < %s", formatTarget(target)), Pass: p.P95 < ms(target), Note: note}
	if base.P95 > 0 {
		r.Ratio = p.P95 / base.P95
	}
	return r
}

func formatTarget(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// workerMeasurements is what rowsEndToEnd takes from the worker process.
type workerMeasurements struct {
	idleMB, peakMB float64
	// heapMB is the Go heap in use right after the run, when known.
	heapMB        float64
	insertToQuery []time.Duration
	readyToActive []time.Duration
	// The throughput part, from the last round.
	rate       float64
	insertTook time.Duration
	// stages is where the end-to-end time went (stageTimes).
	stages string
	// cpu is which programs used the CPU end to end.
	cpu cpuUse
}

// bareOutsideWorkRound is one round of row 3's baseline, on a fresh API
// server with the DEV-ONLY issuer.
func (b *bench) bareOutsideWorkRound(ctx context.Context) (float64, cpuUse, error) {
	if err := b.freshAPIServer(ctx); err != nil {
		return 0, nil, err
	}
	stopIssuer := b.startIssuer(ctx, nil)
	b.quiet(ctx, "bare outside work")
	cpuBefore := sampleCPU(-1)
	rate, err := b.bareOutsideWorkRate(ctx, b.domains[phaseBare])
	cpu := cpuUsed(cpuBefore, sampleCPU(-1))
	return rate, cpu, errors.Join(err, stopIssuer())
}

// endToEndRound measures one round of row 3 into m: the throughput, and
// with all set also the latency samples (before it) and the worker's
// memory. The latency samples get an API server and worker of their own,
// so the throughput starts on a fresh API server like every other measured
// phase: an API server that has served one phase is slower for the next.
func (b *bench) endToEndRound(ctx context.Context, m *workerMeasurements, all bool) error {
	if all {
		if err := b.withPipeline(ctx, "latency", func(_ *child, issued *issuedAt) error {
			return b.measureLatency(ctx, issued, m)
		}); err != nil {
			return err
		}
	}
	return b.withPipeline(ctx, "end-to-end", func(w *child, issued *issuedAt) error {
		if all {
			var err error
			if m.idleMB, _, err = w.memory(); err != nil {
				return err
			}
		}
		if err := b.measureThroughput(ctx, w, issued, m); err != nil {
			return err
		}
		if all {
			var err error
			if _, m.peakMB, err = w.memory(); err != nil {
				return err
			}
			// Only a hint for the note; the row stands without it.
			m.heapMB, _ = w.heapInUseMB()
		}
		return nil
	})
}

// withPipeline runs fn against a worker (its log: worker-<name>.log) on a
// fresh API server and empty tables, with the DEV-ONLY issuer signing each
// Certificate at once (and saying when), and stops them all afterwards.
func (b *bench) withPipeline(ctx context.Context, name string, fn func(w *child, issued *issuedAt) error) error {
	if err := b.freshAPIServer(ctx); err != nil {
		return err
	}
	if err := b.reset(ctx); err != nil {
		return err
	}
	issued := &issuedAt{at: map[string]time.Time{}}
	stopIssuer := b.startIssuer(ctx, issued.record)
	w, err := b.startWorker(ctx, name, workerEnv{kube: true, certNS: nsCert, gatewayNS: nsGateway, issuer: issuerName})
	if err != nil {
		return errors.Join(err, stopIssuer())
	}
	err = fn(w, issued)
	return errors.Join(err, w.stop(), stopIssuer())
}

// measureLatency inserts the latency samples one at a time into the idle
// pipeline and records insert → first DNS query and Ready → active.
func (b *bench) measureLatency(ctx context.Context, issued *issuedAt, m *workerMeasurements) error {
	lat := b.domains[phaseLatency]
	committed := make(map[string]time.Time, len(lat))
	for _, d := range lat {
		if err := b.space(ctx); err != nil {
			return err
		}
		if err := insertDomains(ctx, b.pool, []benchDomain{d}); err != nil {
			return err
		}
		committed[d.Name] = time.Now()
	}
	if _, err := b.waitDone(ctx, "latency samples active", len(lat),
		`SELECT count(*), max(status_changed_at) FROM portal_domains WHERE status = 'active' AND domain LIKE 'lat-%'`); err != nil {
		return err
	}
	for _, d := range lat {
		q, ok := b.queries.get(d.Name)
		if !ok {
			return fmt.Errorf("no DNS query was seen for %s", d.Name)
		}
		m.insertToQuery = append(m.insertToQuery, q.Sub(committed[d.Name]))
	}
	rows, err := b.pool.Query(ctx, `SELECT d.domain, e.created_at FROM portal_domain_events e
		JOIN portal_domains d ON d.id = e.domain_id WHERE e.to_status = 'active' AND d.domain LIKE 'lat-%'`)
	if err != nil {
		return fmt.Errorf("read activation times: %w", err)
	}
	type activation struct {
		Domain string
		At     time.Time
	}
	activations, err := pgx.CollectRows(rows, pgx.RowToStructByPos[activation])
	if err != nil {
		return fmt.Errorf("read activation times: %w", err)
	}
	for _, a := range activations {
		ready, ok := issued.get(a.Domain)
		if !ok {
			return fmt.Errorf("%s became active but the dev issuer never reported signing it", a.Domain)
		}
		m.readyToActive = append(m.readyToActive, a.At.Sub(ready))
	}

	return nil
}

// measureThroughput inserts N domains in one INSERT and times them from the
// statement to the last one active.
func (b *bench) measureThroughput(ctx context.Context, w *child, issued *issuedAt, m *workerMeasurements) error {
	e2e := b.domains[phaseE2E]
	b.quiet(ctx, "end to end")
	cpuBefore := sampleCPU(w.pid())
	t0 := time.Now()
	if err := insertDomains(ctx, b.pool, e2e); err != nil {
		return err
	}
	m.insertTook = time.Since(t0)
	last, err := b.waitDone(ctx, "domains active", len(e2e),
		`SELECT count(*), max(status_changed_at) FROM portal_domains WHERE status = 'active' AND domain LIKE 'e2e-%'`)
	if err != nil {
		return err
	}
	m.rate = perSecond(len(e2e), last.Sub(t0))
	m.cpu = cpuUsed(cpuBefore, sampleCPU(w.pid()))
	m.stages, err = b.stageTimes(ctx, phaseE2E, issued)
	return err
}

// stageTimes says where the end-to-end time went: per domain, how long
// each stage took from the status events (and the issuer's signing time),
// as "p50/p95" seconds, so a slow row points at its stage.
func (b *bench) stageTimes(ctx context.Context, phase string, issued *issuedAt) (string, error) {
	rows, err := b.pool.Query(ctx, `SELECT d.domain, d.created_at,
			max(e.created_at) FILTER (WHERE e.to_status = 'pending_certificate'),
			max(e.created_at) FILTER (WHERE e.to_status = 'certificate_issuing'),
			max(e.created_at) FILTER (WHERE e.to_status = 'deploying'),
			max(e.created_at) FILTER (WHERE e.to_status = 'active')
		FROM portal_domains d JOIN portal_domain_events e ON e.domain_id = d.id
		WHERE d.domain LIKE $1 GROUP BY d.domain, d.created_at`, phase+"-%")
	if err != nil {
		return "", fmt.Errorf("read stage times: %w", err)
	}
	type times struct {
		Domain                                         string
		Inserted, Verified, Applied, Deploying, Active time.Time
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[times])
	if err != nil {
		return "", fmt.Errorf("read stage times: %w", err)
	}
	var dnsT, applyT, issueT, wakeT, probeT []time.Duration
	for _, t := range all {
		signed, ok := issued.get(t.Domain)
		if !ok {
			continue
		}
		dnsT = append(dnsT, t.Verified.Sub(t.Inserted))
		applyT = append(applyT, t.Applied.Sub(t.Verified))
		issueT = append(issueT, signed.Sub(t.Applied))
		wakeT = append(wakeT, t.Deploying.Sub(signed))
		probeT = append(probeT, t.Active.Sub(t.Deploying))
	}
	parts := make([]string, 0, 5)
	for _, st := range []struct {
		name string
		ds   []time.Duration
	}{
		{"insert→DNS verified", dnsT}, {"→applied", applyT}, {"→signed by the issuer", issueT},
		{"→deploying", wakeT}, {"→active", probeT},
	} {
		p := percentiles(st.ds)
		parts = append(parts, fmt.Sprintf("%s %.2f/%.2f", st.name, p.P50/1000, p.P95/1000))
	}
	return "per domain, p50/p95 s: " + strings.Join(parts, ", "), nil
}

// issuedAt records when the dev issuer marked each name's Certificate Ready.
type issuedAt struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (i *issuedAt) record(_, _ string, dnsNames []string) {
	now := time.Now()
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, n := range dnsNames {
		if _, seen := i.at[n]; !seen {
			i.at[n] = now
		}
	}
}

func (i *issuedAt) get(name string) (time.Time, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	t, ok := i.at[name]
	return t, ok
}

// watchFloor is row 4b's baseline: how long after a Certificate status
// write an informer (the worker's own WatchCertificates) reports it, on the
// same API server, for Certificates no worker or issuer touches.
func (b *bench) watchFloor(ctx context.Context, ds []benchDomain) ([]time.Duration, error) {
	cfg := k8s.Config{CertNamespace: nsWatchFloor, GatewayNamespace: nsWatchFloor, IssuerName: unissuedIssuer}
	certs := make([]*unstructured.Unstructured, len(ds))
	for i, d := range ds {
		objs, err := k8s.Render(d.k8s(), cfg)
		if err != nil {
			return nil, err
		}
		if _, err := b.kube.Apply(ctx, objs); err != nil {
			return nil, err
		}
		certs[i] = objs.Certificate
	}
	type event struct {
		id string
		at time.Time
	}
	events := make(chan event, 4*len(ds))
	listed := make(chan string, 4*len(ds))
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- b.kube.WatchCertificates(watchCtx, func(id string, st k8s.CertStatus) {
			now := time.Now()
			if st.Ready == k8s.ReadyTrue {
				select {
				case events <- event{id, now}:
				default:
				}
				return
			}
			select {
			case listed <- id:
			default:
			}
		})
	}()
	defer func() {
		stopWatch()
		<-watchDone
	}()
	// Wait until the informer has listed every Certificate.
	for seen := 0; seen < len(ds); seen++ {
		select {
		case <-listed:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("the watch listed %d of %d Certificates in 30s", seen, len(ds))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res := b.dyn.Resource(k8s.CertificateGVR).Namespace(nsWatchFloor)
	var lat []time.Duration
	for i, cert := range certs {
		if err := b.space(ctx); err != nil {
			return nil, err
		}
		status := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": cert.GetAPIVersion(), "kind": cert.GetKind(),
			"metadata": map[string]any{"name": cert.GetName(), "namespace": cert.GetNamespace()},
			"status": map[string]any{"conditions": []any{map[string]any{
				"type": "Ready", "status": "True", "reason": "Ready", "message": "bench",
				"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "observedGeneration": int64(1),
			}}},
		}}
		t0 := time.Now()
		if _, err := res.ApplyStatus(ctx, cert.GetName(), status, metav1.ApplyOptions{FieldManager: fieldManagerBench, Force: true}); err != nil {
			return nil, fmt.Errorf("write Certificate status: %w", err)
		}
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case e := <-events:
				if e.id == ds[i].ID {
					lat = append(lat, e.at.Sub(t0))
					break wait
				}
			case <-deadline:
				return nil, fmt.Errorf("the watch never reported Certificate %s Ready", cert.GetName())
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return lat, nil
}

// startIssuer runs the DEV-ONLY issuer against the current API server: it
// signs each Certificate naming issuerName at once and calls onIssued (may
// be nil). The returned func stops it.
func (b *bench) startIssuer(ctx context.Context, onIssued func(namespace, name string, dnsNames []string)) (stop func() error) {
	issuerCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	// No periodic re-check (Resync): it would read every Certificate's
	// Secret every 30 s, charging the API server by phase length.
	iss := &issuer.Controller{Dynamic: b.dyn, CA: b.ca, IssuerKind: "ClusterIssuer", IssuerName: issuerName, OnIssued: onIssued, Resync: -1, Workers: 8}
	go func() { done <- iss.Run(issuerCtx) }()
	return func() error {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("DEV-ONLY issuer: %w", err)
		}
		return nil
	}
}

// rowStuckScan is row 5: the stuck-domain query at ScanRows rows (the load
// db's plan test uses, fixtures/stuckscan), against a sequential count(*)
// of the same table.
func (b *bench) rowStuckScan(ctx context.Context) ([]Row, error) {
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	rows := b.opts.ScanRows
	err := db.InTx(ctx, b.pool, func(tx pgx.Tx) error { return stuckscan.Load(ctx, tx, rows) })
	if err != nil {
		return nil, fmt.Errorf("load %d rows: %w", rows, err)
	}
	if _, err := b.pool.Exec(ctx, `ANALYZE portal_domains`); err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	alerts := jobs.DefaultAlertConfig()
	var found int
	scan, err := medianOf(ctx, 7, func(ctx context.Context) error {
		got, err := db.StuckDomains(ctx, b.pool, jobs.StuckCutoffs(time.Now(), alerts), alerts.Limit)
		found = len(got)
		return err
	})
	if err != nil {
		return nil, err
	}
	count, err := medianOf(ctx, 7, func(ctx context.Context) error {
		return db.InTx(ctx, b.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off; SET LOCAL enable_bitmapscan = off`); err != nil {
				return err
			}
			var n int
			return tx.QueryRow(ctx, `SELECT count(*) FROM portal_domains`).Scan(&n)
		})
	})
	if err != nil {
		return nil, err
	}
	r := Row{ID: "5", Measure: fmt.Sprintf("stuck scan, %s rows", thousands(rows)), Unit: "ms",
		Value: ms(scan), Baseline: ms(count), BaselineName: "seq count(*)",
		Target: "< " + formatTarget(scanTarget), Pass: scan < scanTarget,
		Note: fmt.Sprintf("db.StuckDomains with the default cutoffs, %d rows returned (its limit %d); baseline: count(*) with index scans off; "+
			"medians of 7 after a warm-up", found, alerts.Limit)}
	if count > 0 {
		r.Ratio = float64(scan) / float64(count)
	}
	return []Row{r}, nil
}

// medianOf runs fn once to warm up, then times it runs times.
func medianOf(ctx context.Context, runs int, fn func(context.Context) error) (time.Duration, error) {
	if err := fn(ctx); err != nil {
		return 0, err
	}
	took := make([]time.Duration, runs)
	for i := range took {
		start := time.Now()
		if err := fn(ctx); err != nil {
			return 0, err
		}
		took[i] = time.Since(start)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	return took[runs/2], nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// thousands writes n with comma separators (20,000).
func thousands(n int) string {
	s := fmt.Sprint(n)
	var sb strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			sb.WriteByte(',')
		}
		sb.WriteRune(c)
	}
	return sb.String()
}
