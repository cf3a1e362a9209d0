package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// The scale rows (8a–8e) run on request only (`-rows 8`, up to MaxScaleN
// domains, or `-growth`): at 100,000 domains they take many minutes, most of
// it writing that many Certificates into the API server.
const (
	ScaleRowID = "8"
	MaxScaleN  = 100_000
	// ScaleSmallN is the size of the same run that the verify_dns rate at
	// full size is compared with: flat cost per domain keeps the ratio near 1.
	ScaleSmallN = 2_000

	scaleQueryTarget = 100 * time.Millisecond
	scaleFlatRatio   = 0.8
	scaleRSSTargetMB = 300.0
	// scaleWriters is how many goroutines write the Certificates.
	scaleWriters = 32

	phaseScale      = "scale"
	phaseScaleSmall = "small"
)

// GrowthPoint is everything the scale step measured at one size.
type GrowthPoint struct {
	N int `json:"n"`
	// Insert is one SQL INSERT of N rows through the triggers; PlainInsert
	// the same rows into a copy of the table with its indexes and no
	// triggers; JobsEnqueued the verify_dns jobs the insert made.
	Insert       time.Duration `json:"insert_ns"`
	PlainInsert  time.Duration `json:"plain_insert_ns"`
	JobsEnqueued int           `json:"jobs_enqueued"`
	// Reconcile and StuckScan are the two periodic queries at N rows (median
	// of 5; Reconcile is one run's window); ReconcilePass is every window
	// of a pass over the N rows, run back to back; CountScan is count(*)
	// over the table, a sequential scan.
	Reconcile     time.Duration `json:"reconcile_ns"`
	ReconcilePass time.Duration `json:"reconcile_pass_ns"`
	StuckScan     time.Duration `json:"stuck_scan_ns"`
	CountScan     time.Duration `json:"count_scan_ns"`
	// VerifyRate is verify_dns jobs/s for all N, VerifySmallRate for
	// ScaleSmallN in the same run.
	VerifyRate      float64 `json:"verify_rate"`
	VerifySmallRate float64 `json:"verify_small_rate"`
	SmallN          int     `json:"small_n"`
	// CreateTook is how long writing N Ready Certificates took; IdleMB is a
	// worker's RSS with none, WatchMB its peak with N in its watch, and
	// WatchSettled how long after start its memory stopped growing.
	CreateTook   time.Duration `json:"create_ns"`
	IdleMB       float64       `json:"idle_mb"`
	WatchMB      float64       `json:"watch_mb"`
	WatchSettled time.Duration `json:"watch_settled_ns"`
}

// rowsScale is the scale step at Options.N.
func (b *bench) rowsScale(ctx context.Context) ([]Row, error) {
	p, err := b.scaleRun(ctx, b.opts.N)
	if err != nil {
		return nil, err
	}
	return scaleRows(p), nil
}

// scaleRows turns one GrowthPoint into the rows 8a–8e.
func scaleRows(p GrowthPoint) []Row {
	n := thousands(p.N)
	perDomain := func(d time.Duration) string {
		return fmt.Sprintf("%.1f µs per domain", float64(d.Microseconds())/float64(max(p.N, 1)))
	}
	insert := Row{ID: "8a", Measure: fmt.Sprintf("one SQL INSERT of %s domains", n), Unit: "s",
		Value: p.Insert.Seconds(), Baseline: p.PlainInsert.Seconds(), BaselineName: "same INSERT, no triggers",
		Ratio:  p.Insert.Seconds() / max(p.PlainInsert.Seconds(), 1e-9),
		Target: "every verify_dns job enqueued", Pass: p.JobsEnqueued == p.N,
		Note: fmt.Sprintf("%s (%s without triggers); %s verify_dns jobs enqueued by the statement's trigger; the baseline "+
			"inserts into a copy of the table with its indexes and no triggers", perDomain(p.Insert), perDomain(p.PlainInsert), thousands(p.JobsEnqueued))}
	query := func(id, what string, took time.Duration, note string) Row {
		return Row{ID: id, Measure: fmt.Sprintf("%s @ %s rows", what, n), Unit: "ms",
			Value: ms(took), Baseline: ms(p.CountScan), BaselineName: "count(*)", Ratio: ms(took) / max(ms(p.CountScan), 1e-9),
			Target: fmt.Sprintf("< %s", formatTarget(scaleQueryTarget)), Pass: took < scaleQueryTarget,
			Note: note + "; median of 5 runs; baseline: count(*) over the table, a sequential scan"}
	}
	rows := []Row{insert,
		query("8b", "reconcile query", p.Reconcile, fmt.Sprintf("one run: the first window of %s of the rows in a working status "+
			"(db.EnqueueMissingStageJobs), each with a live job, so nothing to enqueue; the whole pass, every window back to back: %s",
			thousands(jobs.ReconcileWindow), p.ReconcilePass.Round(time.Millisecond))),
		query("8c", "stuck scan query", p.StuckScan, "rows in a working status past the default cutoffs (db.StuckDomains)"),
	}
	verify := throughputRow("8d", fmt.Sprintf("verify_dns @ %s domains", n), "jobs/s", p.VerifyRate, p.VerifySmallRate,
		fmt.Sprintf("verify_dns @ %s", thousands(p.SmallN)),
		fmt.Sprintf("every domain of the INSERT above through verify_dns to pending_certificate, from the first job's start to the "+
			"last one's completion; baseline: the same at %s domains in this run, so the ratio is how the cost per domain grows", thousands(p.SmallN)))
	verify.Target, verify.Pass = fmt.Sprintf("≥ %.1f (flat)", scaleFlatRatio), verify.Ratio >= scaleFlatRatio
	rss := Row{ID: "8e", Measure: fmt.Sprintf("worker RSS, %s Certificates in its watch", n), Unit: "MB",
		Value: p.WatchMB, Baseline: p.IdleMB, BaselineName: "idle worker, none", Ratio: p.WatchMB / max(p.IdleMB, 1),
		Target: fmt.Sprintf("< %.0f MB", scaleRSSTargetMB), Pass: p.WatchMB < scaleRSSTargetMB,
		Note: fmt.Sprintf("VmHWM of a worker started with %s Ready Certificates in the API server (written in %s, %d at a time), "+
			"once its memory stopped growing, %s after start; %.1f KB per Certificate above idle",
			n, p.CreateTook.Round(time.Second), scaleWriters, p.WatchSettled.Round(time.Second), (p.WatchMB-p.IdleMB)*1024/float64(max(p.N, 1)))}
	return append(rows, verify, rss)
}

// scaleRun measures one size: the INSERT and the periodic queries at n rows,
// verify_dns for all of them, and a worker's memory with n Certificates in
// its watch.
func (b *bench) scaleRun(ctx context.Context, n int) (GrowthPoint, error) {
	p := GrowthPoint{N: n}
	ds := b.ids.domains(phaseScale+fmt.Sprint(n), n)
	small := b.ids.domains(phaseScaleSmall+fmt.Sprint(n), min(ScaleSmallN, n))
	p.SmallN = len(small)
	if err := b.serveDomains(slices.Concat(ds, small)); err != nil {
		return p, err
	}
	var err error
	if p.VerifySmallRate, err = b.scaleVerifyRate(ctx, "scale-small", small, true); err != nil {
		return p, err
	}
	if err := b.scaleInsert(ctx, ds, &p); err != nil {
		return p, err
	}
	if p.VerifyRate, err = b.scaleVerifyRate(ctx, "scale", ds, false); err != nil {
		return p, err
	}
	if err := b.scaleWatchMemory(ctx, ds, &p); err != nil {
		return p, err
	}
	return p, nil
}

// serveDomains adds each domain's CNAME and its canonical host's address to
// the running DNS server, as generateZones writes them.
func (b *bench) serveDomains(ds []benchDomain) error {
	rrs := make([]string, 0, 2*len(ds))
	for _, d := range ds {
		rrs = append(rrs, d.Name+". 300 IN CNAME "+d.Canonical+".", d.Canonical+". 300 IN A 127.0.0.1")
	}
	if err := b.dns.Set(rrs...); err != nil {
		return fmt.Errorf("serve the scale domains: %w", err)
	}
	return nil
}

// scaleInsert times the INSERT (and the same without triggers) and the two
// periodic queries at len(ds) rows.
func (b *bench) scaleInsert(ctx context.Context, ds []benchDomain, p *GrowthPoint) error {
	if err := b.reset(ctx); err != nil {
		return err
	}
	if _, err := b.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_plain_domains
		(LIKE portal_domains INCLUDING DEFAULTS INCLUDING INDEXES)`); err != nil {
		return fmt.Errorf("plain copy of portal_domains: %w", err)
	}
	tenants, names, canonical := make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds))
	for i, d := range ds {
		tenants[i], names[i], canonical[i] = d.Tenant, d.Name, d.Canonical
	}
	b.quiet(ctx, "plain INSERT")
	t0 := time.Now()
	if _, err := b.pool.Exec(ctx, `INSERT INTO bench_plain_domains (tenant, domain, canonical_host)
		SELECT t::uuid, d, c FROM unnest($1::text[], $2::text[], $3::text[]) AS x(t, d, c)`, tenants, names, canonical); err != nil {
		return fmt.Errorf("plain INSERT of %d rows: %w", len(ds), err)
	}
	p.PlainInsert = time.Since(t0)
	if _, err := b.pool.Exec(ctx, `DROP TABLE bench_plain_domains`); err != nil {
		return fmt.Errorf("drop the plain copy: %w", err)
	}

	b.quiet(ctx, "INSERT")
	t0 = time.Now()
	if err := insertDomains(ctx, b.pool, ds); err != nil {
		return err
	}
	p.Insert = time.Since(t0)
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = $1`, domain.KindVerifyDNS).Scan(&p.JobsEnqueued); err != nil {
		return fmt.Errorf("count enqueued jobs: %w", err)
	}
	if _, err := b.pool.Exec(ctx, `ANALYZE portal_domains`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}

	var err error
	reconcile := func(ctx context.Context, after domain.ReconcileCursor) (domain.ReconcileCursor, error) {
		enqueued, next, err := db.EnqueueMissingStageJobs(ctx, b.pool, after, jobs.ReconcileWindow)
		if err == nil && enqueued != 0 {
			err = fmt.Errorf("the reconciler enqueued %d jobs for rows that had theirs", enqueued)
		}
		return next, err
	}
	if p.Reconcile, err = medianOf(ctx, 5, func(ctx context.Context) error {
		_, err := reconcile(ctx, domain.ReconcileCursor{})
		return err
	}); err != nil {
		return err
	}
	t0 = time.Now()
	for cursor, first := (domain.ReconcileCursor{}), true; first || !cursor.IsZero(); first = false {
		if cursor, err = reconcile(ctx, cursor); err != nil {
			return err
		}
	}
	p.ReconcilePass = time.Since(t0)
	cutoffs := jobs.StuckCutoffs(time.Now(), jobs.DefaultAlertConfig())
	if p.StuckScan, err = medianOf(ctx, 5, func(ctx context.Context) error {
		_, err := db.StuckDomains(ctx, b.pool, cutoffs, 1000)
		return err
	}); err != nil {
		return err
	}
	p.CountScan, err = medianOf(ctx, 5, func(ctx context.Context) error {
		var n int
		return b.pool.QueryRow(ctx, `SELECT count(*) FROM portal_domains`).Scan(&n)
	})
	return err
}

// scaleVerifyRate runs verify_dns for ds with a worker of its own and
// returns jobs/s from the first job's start to the last one's completion,
// read from River's own timestamps so the worker's start-up is not counted.
// With insert it empties the tables and inserts ds first; otherwise the
// rows are in already.
func (b *bench) scaleVerifyRate(ctx context.Context, name string, ds []benchDomain, insert bool) (float64, error) {
	if insert {
		if err := b.reset(ctx); err != nil {
			return 0, err
		}
		if err := insertDomains(ctx, b.pool, ds); err != nil {
			return 0, err
		}
	}
	b.quiet(ctx, name)
	w, err := b.startWorker(ctx, name, workerEnv{})
	if err != nil {
		return 0, err
	}
	_, err = b.waitDone(ctx, "verify_dns jobs completed", len(ds),
		`SELECT count(*), max(finalized_at) FROM river_job WHERE kind = $1 AND state = 'completed'`, domain.KindVerifyDNS)
	if err = errors.Join(err, w.stop()); err != nil {
		return 0, err
	}
	var first, last time.Time
	if err := b.pool.QueryRow(ctx, `SELECT min(attempted_at), max(finalized_at) FROM river_job WHERE kind = $1 AND state = 'completed'`,
		domain.KindVerifyDNS).Scan(&first, &last); err != nil {
		return 0, fmt.Errorf("verify_dns timings: %w", err)
	}
	var moved int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM portal_domains WHERE status = 'pending_certificate'`).Scan(&moved); err != nil {
		return 0, fmt.Errorf("count verified domains: %w", err)
	}
	if moved != len(ds) {
		return 0, fmt.Errorf("%d of %d domains reached pending_certificate", moved, len(ds))
	}
	return perSecond(len(ds), last.Sub(first)), nil
}

// scaleWatchMemory writes a Ready Certificate per domain into a fresh API
// server, then starts a worker and reads its peak memory once its watch has
// taken them all in (its memory stopped growing). The tables are emptied
// first, so the worker has no job to run; the Certificates carry no
// installation id, so it leaves them alone.
func (b *bench) scaleWatchMemory(ctx context.Context, ds []benchDomain, p *GrowthPoint) error {
	if err := b.reset(ctx); err != nil {
		return err
	}
	if err := b.freshAPIServer(ctx); err != nil {
		return err
	}
	kubeWorker := workerEnv{kube: true, certNS: nsCert, gatewayNS: nsGateway, issuer: issuerName}
	idle, err := b.startWorker(ctx, "scale-idle", kubeWorker)
	if err != nil {
		return err
	}
	p.IdleMB, _, err = idle.memory()
	if err = errors.Join(err, idle.stop()); err != nil {
		return err
	}

	b.progress("  writing %s Ready Certificates", thousands(len(ds)))
	t0 := time.Now()
	if err := b.writeReadyCertificates(ctx, ds); err != nil {
		return err
	}
	p.CreateTook = time.Since(t0)

	t0 = time.Now()
	w, err := b.startWorker(ctx, "scale-watch", kubeWorker)
	if err != nil {
		return err
	}
	err = settledMemory(ctx, w)
	p.WatchSettled = time.Since(t0)
	if err == nil {
		_, p.WatchMB, err = w.memory()
	}
	return errors.Join(err, w.stop())
}

// settledMemory waits until the worker's RSS has grown by less than 1 MB
// over the last five seconds (its watch has taken in the list), at most
// three minutes.
func settledMemory(ctx context.Context, w *child) error {
	t0 := time.Now()
	var last []float64
	for time.Since(t0) < 3*time.Minute {
		rss, _, err := w.memory()
		if err != nil {
			return err
		}
		last = append(last, rss)
		if len(last) > 5 {
			last = last[1:]
			if last[4]-last[0] < 1 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return nil
}

// writeReadyCertificates creates each domain's Certificate as the worker
// renders it, then sets it Ready as cert-manager would, scaleWriters at a
// time.
func (b *bench) writeReadyCertificates(ctx context.Context, ds []benchDomain) error {
	cfg := k8s.Config{CertNamespace: nsCert, GatewayNamespace: nsGateway, IssuerKind: "ClusterIssuer", IssuerName: issuerName}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, scaleWriters)
	now := time.Now()
	for g := range scaleWriters {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ds) || ctx.Err() != nil {
					return
				}
				objs, err := k8s.Render(ds[i].k8s(), cfg)
				if err == nil {
					_, err = b.dyn.Resource(k8s.CertificateGVR).Namespace(nsCert).Create(ctx, objs.Certificate, metav1.CreateOptions{})
				}
				if err == nil {
					err = issuer.UpdateStatus(ctx, b.dyn, nsCert, objs.Certificate.GetName(), nil, "cert-manager-certificates-readiness",
						func(cert *unstructured.Unstructured, status map[string]any) {
							issuer.MarkReady(cert, status, now, "Certificate is up to date and has not expired")
						})
				}
				if err != nil {
					errs[g] = fmt.Errorf("write Certificate %d of %d: %w", i+1, len(ds), err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}
