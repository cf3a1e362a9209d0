package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
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

// dnsCheckArgs is one domain's DNS check as a bare River job.
type dnsCheckArgs struct {
	Sample int `json:"sample"`
}

func (dnsCheckArgs) Kind() string { return "bench_dns_check" }

// dnsCheckWorker runs verify_dns's DNS check (the same resolver code and
// loopback server) and nothing else: no row read, no status write, no
// next job. It splits row 1's gap into the DNS work and the database work.
type dnsCheckWorker struct {
	river.WorkerDefaults[dnsCheckArgs]
	resolver *dns.Resolver
	domains  []benchDomain
}

func (w *dnsCheckWorker) Work(ctx context.Context, job *river.Job[dnsCheckArgs]) error {
	d := w.domains[job.Args.Sample]
	if r := w.resolver.Check(ctx, d.Name, d.Canonical, caaIdentity); r.Outcome != dns.OutcomeVerified {
		return river.JobCancel(fmt.Errorf("DNS of %s: %s", d.Name, r.Message))
	}
	return nil
}

// riverDNSCheckRate is row 1's split: River jobs that each run one
// domain's DNS check only, on the dns queue, made available in one commit.
func (b *bench) riverDNSCheckRate(ctx context.Context, ds []benchDomain) (queueRun, error) {
	resolver, err := dns.NewResolver(dns.Config{Servers: []string{b.dns.Addr()}})
	if err != nil {
		return queueRun{}, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &dnsCheckWorker{resolver: resolver, domains: ds})
	return b.dnsQueueRate(ctx, workers, len(ds), dnsCheckArgs{}.Kind(), func(i int) river.JobArgs { return dnsCheckArgs{Sample: i} })
}

// stepArgs is one crash-safe pipeline step reduced to its writes.
type stepArgs struct {
	Row int `json:"row"`
}

func (stepArgs) Kind() string { return "bench_step" }

// stepWorker does the least any crash-safe stage must: move its row on
// and enqueue the next step (a no-op job on the kubernetes queue, which
// this client does not work) atomically — here in one statement, one round
// trip, with a flushed commit as db.Transition's. No row read, history row,
// trigger or check.
type stepWorker struct {
	river.WorkerDefaults[stepArgs]
	db db.Querier
}

func (w *stepWorker) Work(ctx context.Context, job *river.Job[stepArgs]) error {
	_, err := w.db.Exec(ctx, `WITH moved AS (UPDATE bench_step_rows SET step = step + 1, updated_at = now() WHERE id = $1 RETURNING id)
		INSERT INTO river_job (args, kind, max_attempts, queue)
		SELECT jsonb_build_object('sample', id), $2, 25, $3 FROM moved`, job.Args.Row, noopArgs{}.Kind(), domain.QueueKubernetes)
	return err
}

// riverStepRate is the other half of row 1's split: n River jobs that each
// make the minimal transactional step (stepWorker), on the dns queue.
func (b *bench) riverStepRate(ctx context.Context, n int) (run queueRun, err error) {
	if _, err := b.pool.Exec(ctx, `DROP TABLE IF EXISTS bench_step_rows;
		CREATE TABLE bench_step_rows (id int PRIMARY KEY, step int NOT NULL, updated_at timestamptz NOT NULL)`); err != nil {
		return queueRun{}, fmt.Errorf("step rows: %w", err)
	}
	defer func() {
		_, dropErr := b.pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS bench_step_rows`)
		err = errors.Join(err, dropErr)
	}()
	if _, err := b.pool.Exec(ctx, `INSERT INTO bench_step_rows SELECT i, 0, now() FROM generate_series(0, $1 - 1) AS i`, n); err != nil {
		return queueRun{}, fmt.Errorf("step rows: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &stepWorker{db: b.pool})
	return b.dnsQueueRate(ctx, workers, n, stepArgs{}.Kind(), func(i int) river.JobArgs { return stepArgs{Row: i} })
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
