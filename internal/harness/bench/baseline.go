package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/worker"
)

// noopArgs is the baselines' job: it does nothing, so what is measured is
// River (fetch, run, complete) on this machine and this Postgres.
type noopArgs struct {
	Sample int `json:"sample"`
}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	// started, when set, hears when each job began.
	started func(sample int, at time.Time)
}

func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	if w.started != nil {
		w.started(job.Args.Sample, time.Now())
	}
	return nil
}

// chainLength is the pipeline's job count per domain: verify_dns, apply,
// await_certificate, probe.
const chainLength = 4

// chainArgs is one step of a baseline chain.
type chainArgs struct {
	Chain int `json:"chain"`
	Step  int `json:"step"`
}

func (chainArgs) Kind() string { return "bench_chain" }

// chainQueue puts each step on the queue of the stage it stands for.
func chainQueue(step int) string {
	switch step {
	case 1:
		return domain.QueueDNS
	case 2, 3:
		return domain.QueueKubernetes
	default:
		return domain.QueueProbe
	}
}

// chainWorker enqueues the next step in a transaction of its own, as each
// pipeline stage commits its transition (and, through the trigger, the next
// job) in one.
type chainWorker struct {
	river.WorkerDefaults[chainArgs]
	begin db.Beginner
}

func (w *chainWorker) Work(ctx context.Context, job *river.Job[chainArgs]) error {
	if job.Args.Step >= chainLength {
		return nil
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	next := chainArgs{Chain: job.Args.Chain, Step: job.Args.Step + 1}
	return db.InTx(ctx, w.begin, func(tx pgx.Tx) error {
		_, err := client.InsertTx(ctx, tx, next, &river.InsertOpts{Queue: chainQueue(next.Step)})
		return err
	})
}

// riverClient starts a bare River client with the given queue sizes, on a
// pool opened exactly as the worker opens its own (db.Open, DATABASE_URL's
// settings), so both get the same number of connections.
func (b *bench) riverClient(ctx context.Context, queues map[string]int, workers *river.Workers) (*river.Client[pgx.Tx], func() error, error) {
	pool, err := db.Open(ctx, b.url)
	if err != nil {
		return nil, nil, err
	}
	// River configured as the worker configures it.
	cfg := &river.Config{Queues: map[string]river.QueueConfig{}, Workers: workers, Logger: slog.New(slog.DiscardHandler),
		FetchCooldown: worker.DefaultFetchCooldown}
	for q, n := range queues {
		cfg.Queues[q] = river.QueueConfig{MaxWorkers: n}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("river client: %w", err)
	}
	if err := client.Start(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("start river client: %w", err)
	}
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err := client.Stop(ctx)
		pool.Close()
		if err != nil {
			return fmt.Errorf("stop river client: %w", err)
		}
		return nil
	}
	// Let leader election and the first fetch happen before timing.
	select {
	case <-ctx.Done():
		return nil, nil, errors.Join(ctx.Err(), stop())
	case <-time.After(time.Second):
	}
	return client, stop, nil
}

// dnsQueueRate runs n jobs of one kind on the dns queue, with as many
// workers as verify_dns gets: it inserts them in one commit (args(i) is the
// i-th job's args), then times from that commit to the last completion,
// and measures the CPU the machine spent meanwhile.
func (b *bench) dnsQueueRate(ctx context.Context, workers *river.Workers, n int, kind string, args func(i int) river.JobArgs) (run queueRun, err error) {
	client, stop, err := b.riverClient(ctx, map[string]int{domain.QueueDNS: b.opts.DNSWorkers}, workers)
	if err != nil {
		return queueRun{}, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: args(i), InsertOpts: &river.InsertOpts{Queue: domain.QueueDNS}}
	}
	b.quiet(ctx, kind+" jobs")
	if err := db.InTx(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := client.InsertManyTx(ctx, tx, params)
		return err
	}); err != nil {
		return queueRun{}, fmt.Errorf("insert %s jobs: %w", kind, err)
	}
	return b.timeQueueRun(ctx, -1, kind, n)
}

// queueRun is one timed run of row 1: jobs per second and the CPU it took.
type queueRun struct {
	rate float64
	cpu  phaseCPU
}

// timeQueueRun times n jobs of kind that were just made available, from
// now to the last one's completion, and measures the CPU used meanwhile
// (workerPID names the worker child's process, -1 when there is none).
func (b *bench) timeQueueRun(ctx context.Context, workerPID int, kind string, n int) (queueRun, error) {
	t0, cpu := time.Now(), startCPU(workerPID)
	last, err := b.waitDone(ctx, kind+" jobs completed", n,
		`SELECT count(*), max(finalized_at) FROM river_job WHERE kind = $1 AND state = 'completed'`, kind)
	if err != nil {
		return queueRun{}, err
	}
	return queueRun{rate: perSecond(n, last.Sub(t0)), cpu: cpu.stop()}, nil
}

// riverNoopRate is row 1's baseline: n no-op jobs on the dns queue, made
// available in one commit, run by as many workers as verify_dns gets.
func (b *bench) riverNoopRate(ctx context.Context, n int) (queueRun, error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	return b.dnsQueueRate(ctx, workers, n, noopArgs{}.Kind(), func(i int) river.JobArgs { return noopArgs{Sample: i} })
}

// plainArgs is one domain's DNS check as the plain River stage.
type plainArgs struct {
	Row int `json:"row"`
}

func (plainArgs) Kind() string { return "bench_plain_verify_dns" }

// plainVerifyDNSWorker is what a River user would write instead of
// verify_dns: one job per check, the same resolver against the same
// loopback server, then one transaction per job that updates the row
// (guarded by its status), inserts its history row, enqueues the next
// stage's job and completes this one (JobCompleteTx). No grouped reads or
// commits, no trigger.
type plainVerifyDNSWorker struct {
	river.WorkerDefaults[plainArgs]
	pool     *pgxpool.Pool
	resolver *dns.Resolver
	domains  []benchDomain
}

func (w *plainVerifyDNSWorker) Work(ctx context.Context, job *river.Job[plainArgs]) error {
	d := w.domains[job.Args.Row]
	report := w.resolver.Check(ctx, d.Name, d.Canonical, caaIdentity)
	if report.Outcome != dns.OutcomeVerified {
		return river.JobCancel(fmt.Errorf("DNS of %s: %s", d.Name, report.Message))
	}
	observation, err := json.Marshal(report)
	if err != nil {
		return err
	}
	message := fmt.Sprintf("DNS verified: %s points to %s. Requesting a certificate.", d.Name, d.Canonical)
	return db.InTx(ctx, w.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE bench_plain_domains SET status = 'pending_certificate', status_message = $2,
			verification_details = jsonb_build_object('observation', $3::jsonb), last_checked_at = now(), updated_at = now()
			WHERE id = $1 AND status = 'pending_dns'`, job.Args.Row, message, observation)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // moved on already: nothing to record
		}
		if _, err := tx.Exec(ctx, `INSERT INTO bench_plain_events (domain_id, from_status, to_status, message)
			VALUES ($1, 'pending_dns', 'pending_certificate', $2)`, job.Args.Row, message); err != nil {
			return err
		}
		if _, err := river.ClientFromContext[pgx.Tx](ctx).InsertTx(ctx, tx, noopArgs{Sample: job.Args.Row},
			&river.InsertOpts{Queue: domain.QueueKubernetes}); err != nil {
			return err
		}
		_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
}

// riverPlainStageRate is row 1's baseline: the plain River stage
// (plainVerifyDNSWorker) over the same domains, on the dns queue with as
// many workers as verify_dns gets, its jobs made available in one commit.
func (b *bench) riverPlainStageRate(ctx context.Context, ds []benchDomain) (run queueRun, err error) {
	if _, err := b.pool.Exec(ctx, `DROP TABLE IF EXISTS bench_plain_domains, bench_plain_events;
		CREATE TABLE bench_plain_domains (id int PRIMARY KEY, domain text NOT NULL, canonical_host text NOT NULL,
			status text NOT NULL, status_message text, verification_details jsonb NOT NULL DEFAULT '{}',
			last_checked_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE bench_plain_events (id bigserial PRIMARY KEY, domain_id int NOT NULL, from_status text,
			to_status text NOT NULL, message text, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return queueRun{}, fmt.Errorf("plain stage tables: %w", err)
	}
	defer func() {
		_, dropErr := b.pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS bench_plain_domains, bench_plain_events`)
		err = errors.Join(err, dropErr)
	}()
	names, canonicals := make([]string, len(ds)), make([]string, len(ds))
	for i, d := range ds {
		names[i], canonicals[i] = d.Name, d.Canonical
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO bench_plain_domains (id, domain, canonical_host, status)
		SELECT i - 1, n, c, 'pending_dns' FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(n, c, i)`, names, canonicals); err != nil {
		return queueRun{}, fmt.Errorf("plain stage rows: %w", err)
	}
	resolver, err := dns.NewResolver(dns.Config{Servers: []string{b.dns.Addr()}})
	if err != nil {
		return queueRun{}, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &plainVerifyDNSWorker{pool: b.pool, resolver: resolver, domains: ds})
	// The next stage's job kind must be known to the client that inserts it;
	// its queue is not worked here.
	river.AddWorker(workers, &noopWorker{})
	if run, err = b.dnsQueueRate(ctx, workers, len(ds), plainArgs{}.Kind(), func(i int) river.JobArgs { return plainArgs{Row: i} }); err != nil {
		return queueRun{}, err
	}
	var moved int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM bench_plain_domains WHERE status = 'pending_certificate'`).Scan(&moved); err != nil {
		return queueRun{}, err
	}
	if moved != len(ds) {
		return queueRun{}, fmt.Errorf("plain stage: %d of %d rows reached pending_certificate", moved, len(ds))
	}
	return run, nil
}

// riverChainRate is row 3's baseline: n chains of four no-op jobs on the
// pipeline's queues, each step enqueuing the next in its own transaction,
// timed from the insert of the first steps to the completion of the last.
func (b *bench) riverChainRate(ctx context.Context, n int) (rate float64, err error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &chainWorker{begin: b.pool})
	client, stop, err := b.riverClient(ctx, map[string]int{
		domain.QueueDNS: b.opts.DNSWorkers, domain.QueueKubernetes: b.opts.KubeWorkers, domain.QueueProbe: b.opts.ProbeWorkers,
	}, workers)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: chainArgs{Chain: i, Step: 1}, InsertOpts: &river.InsertOpts{Queue: chainQueue(1)}}
	}
	t0 := time.Now()
	if err := db.InTx(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := client.InsertManyTx(ctx, tx, params)
		return err
	}); err != nil {
		return 0, fmt.Errorf("insert chains: %w", err)
	}
	last, err := b.waitDone(ctx, "chains completed", n, `SELECT count(*), max(finalized_at) FROM river_job
		WHERE kind = 'bench_chain' AND (args->>'step')::int = $1 AND state = 'completed'`, chainLength)
	if err != nil {
		return 0, err
	}
	return perSecond(n, last.Sub(t0)), nil
}

// riverInsertLatency is row 4a's baseline: no-op jobs inserted one at a
// time into an idle dns queue, each commit followed by River's notification
// as the trigger sends it, timed from the commit to the job's start.
func (b *bench) riverInsertLatency(ctx context.Context, samples int) (lat []time.Duration, err error) {
	type start struct {
		sample int
		at     time.Time
	}
	starts := make(chan start, samples)
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{started: func(s int, at time.Time) {
		select {
		case starts <- start{s, at}:
		default:
		}
	}})
	client, stop, err := b.riverClient(ctx, map[string]int{domain.QueueDNS: b.opts.DNSWorkers}, workers)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	committed := make([]time.Time, samples)
	for i := range samples {
		if err := b.space(ctx); err != nil {
			return nil, err
		}
		if err := db.InTx(ctx, b.pool, func(tx pgx.Tx) error {
			if _, err := client.InsertTx(ctx, tx, noopArgs{Sample: i}, &river.InsertOpts{Queue: domain.QueueDNS}); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `SELECT pg_notify(current_schema() || '.river_insert', json_build_object('queue', $1::text)::text)`, domain.QueueDNS)
			return err
		}); err != nil {
			return nil, fmt.Errorf("insert no-op job: %w", err)
		}
		committed[i] = time.Now()
	}
	timeout := time.After(time.Minute)
	for range samples {
		select {
		case s := <-starts:
			lat = append(lat, s.at.Sub(committed[s.sample]))
		case <-timeout:
			return nil, fmt.Errorf("only %d of %d no-op jobs started within a minute", len(lat), samples)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return lat, nil
}

// space waits between latency samples: a random gap around
// LatencySpacing, so samples do not fall into step with River's 1 s poll.
func (b *bench) space(ctx context.Context) error {
	gap := time.Duration(float64(b.opts.LatencySpacing) * (0.5 + rand.Float64()))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(gap):
		return nil
	}
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
