package reliability_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

// TestReliability builds the worker binary once and runs every scenario
// against it in parallel, each with its own database schema (or Postgres),
// namespaces (or API server) and DNS server.
func TestReliability(t *testing.T) {
	sz := sizeFromEnv(t)
	bin := buildWorker(t, t.TempDir())
	t.Logf("size: %+v", sz)

	t.Run("KillNine", func(t *testing.T) {
		t.Parallel()
		testKillNine(t, bin, sz)
	})
	t.Run("SIGTERM", func(t *testing.T) {
		t.Parallel()
		testSIGTERM(t, bin, sz)
	})
	t.Run("PostgresRestart", func(t *testing.T) {
		t.Parallel()
		testPostgresRestart(t, bin, sz)
	})
	t.Run("APIServerOutage", func(t *testing.T) {
		t.Parallel()
		testAPIServerOutage(t, bin, sz)
	})
	t.Run("DNSChaos", func(t *testing.T) {
		t.Parallel()
		testDNSChaos(t, bin, sz)
	})
	t.Run("GitKill", func(t *testing.T) {
		t.Parallel()
		testGitKill(t, bin, sz)
	})
	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		testBadInput(t, bin)
	})
}

// testKillNine: three workers share the load; one is killed with SIGKILL
// while it holds running jobs, then another. The survivors rescue the dead
// workers' jobs (after PORTAL_DOMAIN_RESCUE_AFTER) and every domain
// reaches active with its objects applied once and its history in order.
func testKillNine(t *testing.T, bin string, sz size) {
	w := newWorld(t, bin, worldOpts{})
	// Probes hang for a while, so every worker holds running jobs when it
	// is killed (the kill is then mid-pipeline by construction).
	w.probeDelay.Store(int64(2 * time.Second))
	w.playCertManager()
	// The stuck scan runs every second across the kills and leader
	// changes; an incident must still raise one alert, not one per leader.
	scan := map[string]string{"PORTAL_DOMAIN_STUCK_CRON": "@every 1s", "PORTAL_DOMAIN_STUCK_AFTER": "3s"}
	alive := []*proc{w.startWorker("w1", scan), w.startWorker("w2", scan), w.startWorker("w3", scan)}
	started := len(alive)

	// Three Certificates stay unissued across the kills: each must raise
	// exactly one stuck alert, whichever worker leads when the scan runs.
	held := []string{"p0.acme.test", "p1.acme.test", "p2.acme.test"}
	for _, h := range held {
		w.hold(h)
	}

	var fx []fixture
	per := sz.KillDomains / sz.KillRounds
	for round := range sz.KillRounds {
		n := per
		if round == sz.KillRounds-1 {
			n = sz.KillDomains - len(fx)
		}
		fx = append(fx, w.register(len(fx), n)...)

		// Kill the victim while it is in the middle of probes (each hangs
		// for 2 s), so its jobs are lost mid-run and must be rescued.
		victim := alive[0]
		w.waitHolding(victim, domain.KindProbe, 2, sz.Converge)
		victim.kill(t)
		alive = alive[1:]
		t.Logf("round %d: killed %s with SIGKILL; %d workers left", round+1, victim.name, len(alive))
		if len(alive) < 2 && round < sz.KillRounds-1 {
			started++
			alive = append(alive, w.startWorker(fmt.Sprintf("w%d", started), scan))
		}
	}

	heldIDs := ids(fx[:len(held)])
	w.waitUntil("an alert for each held Certificate", sz.Converge, func(ctx context.Context) (bool, string, error) {
		var n int
		err := w.pool.QueryRow(ctx, `SELECT count(DISTINCT domain_id) FROM portal_domain_alerts
			WHERE domain_id = ANY($1::uuid[]) AND kind = 'certificate_not_ready'`, heldIDs).Scan(&n)
		return n == len(held), fmt.Sprintf("%d alerts", n), err
	})
	for _, h := range held {
		w.release(h)
	}

	w.waitStatus(ids(fx), sz.Converge, domain.StatusActive)
	w.waitJobsSettled(sz.Converge)
	w.checkGuarantees(fx, checks{})
	w.waitUntil("the held Certificates' alerts resolved, one each", sz.Converge, func(ctx context.Context) (bool, string, error) {
		var alerts, resolved int
		err := w.pool.QueryRow(ctx, `SELECT count(*), count(resolved_at) FROM portal_domain_alerts
			WHERE domain_id = ANY($1::uuid[]) AND kind = 'certificate_not_ready'`, heldIDs).Scan(&alerts, &resolved)
		return alerts == len(held) && resolved == len(held), fmt.Sprintf("%d alerts, %d resolved", alerts, resolved), err
	})

	var rescued int
	require.NoError(t, w.pool.QueryRow(t.Context(), `SELECT count(*) FROM river_job WHERE errors::text LIKE '%Stuck job rescued%'`).Scan(&rescued))
	require.GreaterOrEqual(t, rescued, sz.KillRounds, "every killed worker held jobs that another worker rescued")
	for _, p := range alive {
		require.True(t, p.running(), "worker %s is still running", p.name)
	}
}

// testSIGTERM: a worker told to stop while its probe jobs hang stops within
// PORTAL_DOMAIN_SHUTDOWN_TIMEOUT (plus the 10 s it gives cancelled jobs to
// return), exits 0, and the jobs it held are worked by the other worker.
func testSIGTERM(t *testing.T, bin string, sz size) {
	w := newWorld(t, bin, worldOpts{})
	const shutdown = 2 * time.Second
	// Far longer than the shutdown timeout, so no probe a holds can finish
	// on its own while a stops, even one started just before the SIGTERM:
	// a must cancel what it holds. Once a has stopped, answers come at once
	// again.
	w.probeDelay.Store(int64(30 * time.Second))
	w.playCertManager()
	env := map[string]string{"PORTAL_DOMAIN_SHUTDOWN_TIMEOUT": shutdown.String(), "PORTAL_DOMAIN_PROBE_TIMEOUT": "60s"}
	a, b := w.startWorker("a", env), w.startWorker("b", env)
	fx := w.register(0, sz.Domains)

	w.waitHolding(a, domain.KindProbe, 2, sz.Converge)
	took := a.terminate(t, shutdown+10*time.Second+5*time.Second)
	t.Logf("worker a exited %s after SIGTERM", took.Round(time.Millisecond))
	w.probeDelay.Store(0)
	require.NoError(t, a.waitErr, "exit status of a worker stopped by SIGTERM:\n%s", a.tail(20))
	require.Contains(t, a.log(), "running jobs did not finish in time; cancelling them")
	require.Contains(t, a.log(), "worker stopped")

	// The jobs a gave back, from its own log, were finished by b.
	clientA := w.clientID(a)
	var interrupted []int64
	for _, e := range a.logEntries() {
		if msg, _ := e["msg"].(string); strings.Contains(msg, "Job stopped due to client shutdown") {
			id, _ := e["job_id"].(float64)
			interrupted = append(interrupted, int64(id))
		}
	}
	require.GreaterOrEqual(t, len(interrupted), 2, "worker a gave back the jobs it held")

	w.waitStatus(ids(fx), sz.Converge, domain.StatusActive)
	w.waitJobsSettled(sz.Converge)
	w.checkGuarantees(fx, checks{})
	for _, id := range interrupted {
		var state, lastWorker string
		require.NoError(t, w.pool.QueryRow(t.Context(), `SELECT state::text, attempted_by[array_upper(attempted_by, 1)]
			FROM river_job WHERE id = $1`, id).Scan(&state, &lastWorker))
		require.Equal(t, "completed", state, "job %d", id)
		require.NotEqual(t, clientA, lastWorker, "job %d finished by another worker", id)
	}
	require.True(t, b.running())
}

// testPostgresRestart: Postgres crashes (immediate stop) mid-run and comes
// back; the worker processes ride it out without restarting, and every
// domain, those registered before and after, converges.
func testPostgresRestart(t *testing.T, bin string, sz size) {
	pg := startDedicatedPostgres(t)
	w := newWorld(t, bin, worldOpts{DatabaseURL: pg.URL})
	w.probeDelay.Store(int64(time.Second))
	w.playCertManager()
	workers := []*proc{w.startWorker("a", nil), w.startWorker("b", nil)}
	before := w.register(0, sz.Domains/2)
	w.waitUntil("the pipeline under way", sz.Converge, func(ctx context.Context) (bool, string, error) {
		counts, err := w.statusCounts(ctx, ids(before))
		return counts[domain.StatusDeploying]+counts[domain.StatusActive] > 0, fmt.Sprint(counts), err
	})

	pg.Crash(t)
	crashed := time.Now()
	// Down until every worker has failed to reach it: only then does a
	// worker still running prove it rode the outage out.
	w.waitUntil("every worker saw Postgres go away", sz.Converge, func(context.Context) (bool, string, error) {
		var felt []string
		for _, p := range workers {
			if strings.Contains(p.log(), "connection refused") {
				felt = append(felt, p.name)
			}
		}
		return len(felt) == len(workers), fmt.Sprintf("workers that saw it: %v", felt), nil
	})
	// Then the rest of the outage the size asks for (longer when soaking).
	time.Sleep(time.Until(crashed.Add(sz.PGOutage)))
	for _, p := range workers {
		require.True(t, p.running(), "worker %s exited while Postgres was down:\n%s", p.name, p.tail(20))
	}
	pg.Start(t)
	t.Logf("Postgres back after %s", time.Since(crashed).Round(time.Second))

	after := w.register(sz.Domains/2, sz.Domains-sz.Domains/2)
	fx := append(before, after...)
	w.waitStatus(ids(fx), sz.Converge, domain.StatusActive)
	w.waitJobsSettled(sz.Converge)
	w.checkGuarantees(fx, checks{})
	for _, p := range workers {
		require.True(t, p.running(), "worker %s is still running", p.name)
	}
}

// testAPIServerOutage: kube-apiserver stops for about half a minute. Domains
// past apply wait; domains registered during the outage fail their applies
// and retry (2^attempt s, 12 attempts); nothing is failed before the budget
// is spent, and everything converges once the server is back.
func testAPIServerOutage(t *testing.T, bin string, sz size) {
	kube := kubetest.StartDedicated(t)
	w := newWorld(t, bin, worldOpts{Kube: kube})
	w.playCertManager()
	w.startWorker("a", nil)
	w.startWorker("b", nil)
	first := w.register(0, sz.Domains/2)
	w.waitStatus(ids(first), sz.Converge, domain.StatusCertificateIssuing, domain.StatusDeploying, domain.StatusActive)

	kube.StopAPIServer(t)
	stopped := time.Now()
	second := w.register(sz.Domains/2, sz.Domains-sz.Domains/2)
	w.waitUntil("every domain registered during the outage retrying its apply", sz.APIOutage+sz.Converge,
		func(ctx context.Context) (bool, string, error) {
			var n int
			err := w.pool.QueryRow(ctx, `SELECT count(DISTINCT domain_id) FROM portal_domain_events WHERE domain_id = ANY($1::uuid[])
				AND to_status = 'pending_certificate' AND message LIKE 'Creating the certificate and gateway failed (attempt %retrying%'`,
				ids(second)).Scan(&n)
			return n == len(second), fmt.Sprintf("%d of %d retrying", n, len(second)), err
		})
	// Down until every one of them has failed a third attempt, so the
	// check below covers retries, not one failure; then the rest of the
	// outage the size asks for.
	const attempts = 3
	w.waitUntil(fmt.Sprintf("every domain registered during the outage failing attempt %d", attempts), sz.APIOutage+sz.Converge,
		func(ctx context.Context) (bool, string, error) {
			var n int
			err := w.pool.QueryRow(ctx, `SELECT count(DISTINCT domain_id) FROM portal_domain_events WHERE domain_id = ANY($1::uuid[])
				AND message LIKE $2`, ids(second), fmt.Sprintf("Creating the certificate and gateway failed (attempt %d of %%", attempts)).Scan(&n)
			return n == len(second), fmt.Sprintf("%d of %d", n, len(second)), err
		})
	time.Sleep(time.Until(stopped.Add(sz.APIOutage)))
	kube.StartAPIServer(t)
	t.Logf("API server back after %s", time.Since(stopped).Round(time.Second))

	fx := append(first, second...)
	w.waitStatus(ids(fx), sz.Converge, domain.StatusActive)
	w.waitJobsSettled(sz.Converge)
	w.checkGuarantees(fx, checks{})
	var failed int
	require.NoError(t, w.pool.QueryRow(t.Context(), `SELECT count(*) FROM portal_domain_events WHERE to_status = 'certificate_failed'`).Scan(&failed))
	require.Zero(t, failed, "no domain failed while its apply retries had budget left")
}

// testDNSChaos: a resolver that drops every other packet, and names that
// answer SERVFAIL, with a DNS deadline of two seconds. Resolver trouble
// never fails a domain, however long it lasts; a wrong CNAME still fails at
// the deadline; once DNS heals every good domain converges.
func testDNSChaos(t *testing.T, bin string, sz size) {
	const deadline = 2 * time.Second
	w := newWorld(t, bin, worldOpts{Env: map[string]string{
		"PORTAL_DOMAIN_DNS_DEADLINE":    deadline.String(),
		"PORTAL_DOMAIN_DNS_TIMEOUT":     "200ms",
		"PORTAL_DOMAIN_DNS_RECHECK_MIN": "100ms",
		"PORTAL_DOMAIN_DNS_RECHECK_MAX": "300ms",
	}})
	w.playCertManager()
	w.dns.DropEvery(2)
	w.startWorker("a", nil)
	w.startWorker("b", nil)

	n := max(sz.Domains/2, 4)
	good := w.register(0, n)
	for i := n; i < 2*n; i++ {
		w.dns.ServFail(fmt.Sprintf("p%d.acme.test", i))
	}
	servfail := w.register(n, n)
	// A wrong CNAME: the tenant's record points elsewhere.
	wrongIdx := 2 * n
	w.serveDNS(wrongIdx, 1)
	w.dns.Set(fmt.Sprintf("p%d.acme.test. 300 IN CNAME www.acme.test.", wrongIdx))
	wrong := w.enroll(wrongIdx, 1)

	w.waitStatus(ids(wrong), sz.Converge, domain.StatusDNSFailed)
	// Keep the trouble on until every SERVFAIL domain has had a check
	// decided past its deadline.
	w.waitCheckedPastDeadline(ids(servfail), deadline, sz.Converge)
	all := append(append(slices.Clone(good), servfail...), wrong...)
	var falseFailures int
	require.NoError(t, w.pool.QueryRow(t.Context(), `SELECT count(*) FROM portal_domain_events WHERE domain_id = ANY($1::uuid[])
		AND to_status = 'dns_failed'`, append(ids(good), ids(servfail)...)).Scan(&falseFailures))
	require.Zero(t, falseFailures, "resolver errors failed a domain")
	counts, err := w.statusCounts(t.Context(), ids(servfail))
	require.NoError(t, err)
	require.Equal(t, map[domain.Status]int{domain.StatusVerifyingDNS: len(servfail)}, counts, "SERVFAIL keeps the domains verifying")
	var resolverTrouble int
	require.NoError(t, w.pool.QueryRow(t.Context(), `SELECT count(*) FROM portal_domain_events WHERE domain_id = ANY($1::uuid[])
		AND message LIKE '%not a problem with your records%'`, ids(good)).Scan(&resolverTrouble))
	require.Positive(t, resolverTrouble, "dropped packets reached the good domains' checks")
	dropped := 0
	for _, q := range w.dns.Queries() {
		if q.Dropped {
			dropped++
		}
	}
	require.Positive(t, dropped)

	w.dns.DropEvery(0)
	for i := n; i < 2*n; i++ {
		w.dns.Heal(fmt.Sprintf("p%d.acme.test", i))
	}
	w.waitStatus(ids(append(slices.Clone(good), servfail...)), sz.Converge, domain.StatusActive)
	w.waitJobsSettled(sz.Converge)
	w.checkGuarantees(all, checks{Status: map[string]domain.Status{wrong[0].ID: domain.StatusDNSFailed}})
	rec, err := db.GetDomain(t.Context(), w.pool, wrong[0].ID)
	require.NoError(t, err)
	require.Contains(t, rec.StatusMessage, "www.acme.test")
}

// waitCheckedPastDeadline waits until every domain of ids has had a DNS check
// decided past its deadline (dns_check_started_at plus deadline) and
// written. A check is decided before its write (last_checked_at), and a
// domain's next check starts only after that write: so once a write is
// past the deadline, the write after it is of a check decided past it.
// Both times are the database's clock.
func (w *world) waitCheckedPastDeadline(ids []string, deadline, timeout time.Duration) {
	w.t.Helper()
	pastDeadline := map[string]time.Time{} // a write past the deadline, by domain
	w.waitUntil(fmt.Sprintf("%d domains checked past their DNS deadline", len(ids)), timeout, func(ctx context.Context) (bool, string, error) {
		rows, err := w.pool.Query(ctx, `SELECT id::text, last_checked_at,
			last_checked_at > (verification_details->>'dns_check_started_at')::timestamptz + $2::bigint * interval '1 millisecond'
			FROM portal_domains WHERE id = ANY($1::uuid[]) AND last_checked_at IS NOT NULL`, ids, deadline.Milliseconds())
		if err != nil {
			return false, "", err
		}
		defer rows.Close()
		done := 0
		for rows.Next() {
			var id string
			var checked time.Time
			var past bool
			if err := rows.Scan(&id, &checked, &past); err != nil {
				return false, "", err
			}
			first, seen := pastDeadline[id]
			switch {
			case seen && checked.After(first):
				done++
			case !seen && past:
				pastDeadline[id] = checked
			}
		}
		return done == len(ids), fmt.Sprintf("%d of %d checked past the deadline twice", done, len(ids)), rows.Err()
	})
}
