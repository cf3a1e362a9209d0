package worker_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/dns/dnstest"
	"github.com/portal-domains/portal-domains/fixtures/stuckscan"
	"github.com/portal-domains/portal-domains/internal/probe"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

// queryCounter counts the statements a pool sends.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// cpuOf sums the user and system CPU of processes by pid, from /proc.
func cpuOf(b *testing.B, pids []int) time.Duration {
	b.Helper()
	var ticks int64
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		require.NoError(b, err)
		fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkActiveRecheck measures what one live re-check of a healthy
// domain costs, against real Postgres, DNS and HTTPS servers on loopback,
// with 100,000 domains in the table: "check" runs the active_recheck job's
// Work one domain after another; "schedule" is the scheduler's share (one
// claim of 5,000 due checks, their River jobs and moved next checks). It
// reports wall time, this process's CPU (the job, and the test's own DNS
// and HTTPS servers), Postgres's CPU (the pool's backends), statements and
// DNS queries per check. Run it alone:
//
//	go test -run '^$' -bench BenchmarkActiveRecheck -benchtime 2000x ./internal/worker/
func BenchmarkActiveRecheck(b *testing.B) {
	ctx := context.Background()
	s := dbtest.Migrated(b)
	dnsServer := dnstest.Start(b)
	const domains = 100_000
	require.NoError(b, pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error { return stuckscan.Load(ctx, tx, domains) }))
	// Every active domain points to one canonical host whose zone allows
	// letsencrypt.org, as a tenant's CNAME would.
	_, err := s.Pool.Exec(ctx, `ALTER TABLE portal_domains DISABLE TRIGGER USER;
		UPDATE portal_domains SET domain = replace(domain, '.example.com', '.acme.test'),
			verification_details = '{"expected_cname": "abc1234.portal.test"}';
		ALTER TABLE portal_domains ENABLE TRIGGER USER;
		INSERT INTO portal_domain_rechecks (domain_id, generation, next_check_at)
		SELECT id, pipeline_generation, now() + interval '6 hours' FROM portal_domains WHERE status = 'active';
		ANALYZE portal_domains; ANALYZE portal_domain_rechecks`)
	require.NoError(b, err)
	rows, err := s.Pool.Query(ctx, `SELECT id::text, pipeline_generation, domain FROM portal_domains WHERE status = 'active' ORDER BY id LIMIT 20000`)
	require.NoError(b, err)
	type target struct {
		id   string
		gen  int64
		host string
	}
	targets, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (target, error) {
		var t target
		return t, r.Scan(&t.id, &t.gen, &t.host)
	})
	require.NoError(b, err)
	for _, t := range targets {
		dnsServer.Set(t.host + ". 300 IN CNAME abc1234.portal.test.")
	}

	certPEM, keyPEM, err := kubetest.SelfSignedPEM(time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour), "*.acme.test")
	require.NoError(b, err)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(b, err)
	https := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("portal")) }))
	https.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	https.StartTLS()
	b.Cleanup(https.Close)
	caFile := filepath.Join(b.TempDir(), "ca.pem")
	require.NoError(b, os.WriteFile(caFile, certPEM, 0o600))

	u, err := url.Parse(s.URL)
	require.NoError(b, err)
	q := u.Query()
	q.Set("application_name", "recheck-bench-"+s.Name)
	u.RawQuery = q.Encode()
	poolCfg, err := pgxpool.ParseConfig(u.String())
	require.NoError(b, err)
	counter := &queryCounter{}
	poolCfg.ConnConfig.Tracer = counter
	poolCfg.MinConns, poolCfg.MaxConns = 2, 2
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	backends := func() []int {
		require.NoError(b, pool.Ping(ctx))
		var pids []int
		rows, err := s.Pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, "recheck-bench-"+s.Name)
		require.NoError(b, err)
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int])
		require.NoError(b, err)
		return pids
	}

	resolver, err := dns.NewResolver(dns.Config{Servers: []string{dnsServer.Addr()}, Timeout: time.Second})
	require.NoError(b, err)
	insertOnly, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	require.NoError(b, err)
	alerts := &worker.AlertStore{Pool: pool, River: insertOnly}
	rechecks := worker.Rechecks{Pool: pool, River: insertOnly}
	tracer := noop.NewTracerProvider().Tracer("")
	deps := &jobs.Deps{Store: worker.Store{Pool: pool}, DNS: worker.DNS{Resolver: resolver, CAAIdentity: "letsencrypt.org", Tracer: tracer},
		Prober: worker.Prober{Config: probe.Config{DialAddress: https.Listener.Addr().String(), CAFile: caFile, Timeout: 2 * time.Second},
			Tracer: tracer},
		Rechecks: rechecks, Alerts: alerts}
	w := jobs.NewRecheckWorker(deps)

	report := func(b *testing.B, per int, wall time.Duration, self, pg time.Duration, queries int64) {
		n := float64(b.N * per)
		b.ReportMetric(float64(wall.Microseconds())/1000/n, "wall-ms/check")
		b.ReportMetric(float64(self.Microseconds())/1000/n, "process-cpu-ms/check")
		b.ReportMetric(float64(pg.Microseconds())/1000/n, "postgres-cpu-ms/check")
		b.ReportMetric(float64(queries)/n, "statements/check")
	}

	b.Run("check", func(b *testing.B) {
		pids := backends()
		dnsBefore := len(dnsServer.Queries())
		q0, self0, pg0, start := counter.n.Load(), selfCPU(), cpuOf(b, pids), time.Now()
		b.ResetTimer()
		for i := range b.N {
			t := targets[i%len(targets)]
			job := &river.Job[jobs.RecheckArgs]{JobRow: &rivertype.JobRow{},
				Args: jobs.RecheckArgs{DomainArgs: jobs.DomainArgs{DomainID: t.id, Generation: t.gen}, Due: time.Now()}}
			if err := w.Work(ctx, job); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		report(b, 1, time.Since(start), selfCPU()-self0, cpuOf(b, pids)-pg0, counter.n.Load()-q0)
		b.ReportMetric(float64(len(dnsServer.Queries())-dnsBefore)/float64(b.N), "dns-queries/check")
		var healthy int
		require.NoError(b, s.Pool.QueryRow(ctx, `SELECT count(*) FROM portal_domain_rechecks WHERE last_outcome = 'ok'`).Scan(&healthy))
		require.Equal(b, min(b.N, len(targets)), healthy, "every check found the domain healthy")
	})

	b.Run("schedule", func(b *testing.B) {
		const batch = 5000
		pids := backends()
		var wall, self, pg time.Duration
		var queries int64
		for range b.N {
			b.StopTimer()
			_, err := s.Pool.Exec(ctx, `UPDATE portal_domain_rechecks SET next_check_at = now() - interval '1 minute'
				WHERE domain_id IN (SELECT domain_id FROM portal_domain_rechecks ORDER BY next_check_at DESC LIMIT 5000)`)
			require.NoError(b, err)
			q0, self0, pg0, start := counter.n.Load(), selfCPU(), cpuOf(b, pids), time.Now()
			b.StartTimer()
			enqueued, _, err := rechecks.EnqueueDue(ctx, batch, func() time.Time { return time.Now().Add(6 * time.Hour) })
			b.StopTimer()
			require.NoError(b, err)
			require.Equal(b, batch, enqueued)
			wall += time.Since(start)
			self += selfCPU() - self0
			pg += cpuOf(b, pids) - pg0
			queries += counter.n.Load() - q0
		}
		report(b, batch, wall, self, pg, queries)
	})
}
