package db_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/fixtures/stuckscan"
)

func TestOpenAlert(t *testing.T) {
	t.Parallel()

	newAlert := func(id string) db.NewAlert {
		since := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
		return db.NewAlert{DomainID: id, Kind: db.AlertCertificateNotReady, Reason: "Failed",
			Message: "ACME challenge failed", FailedIssuanceAttempts: 3, LastFailureTime: &since, NotReadySince: &since,
			Details: map[string]any{"certificate": "msp/portal-domain-abc1234"}}
	}

	t.Run("opens once per incident however often it is asked", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tenant := newTenant()
		id := sqlInsert(t, b, tenant, "portal.acme.com")

		first, opened, err := db.OpenAlert(b.ctx, b.pool, newAlert(id))
		require.NoError(t, err)
		require.True(t, opened)
		require.Equal(t, string(tenant), first.Tenant, "tenant comes from the row")
		require.Equal(t, "portal.acme.com", first.Domain)
		require.Equal(t, 3, first.FailedIssuanceAttempts)
		require.JSONEq(t, `{"certificate":"msp/portal-domain-abc1234"}`, string(first.Details))

		_, opened, err = db.OpenAlert(b.ctx, b.pool, newAlert(id))
		require.NoError(t, err)
		require.False(t, opened, "an open alert of the same kind blocks a second one")

		all, err := db.ListAlerts(b.ctx, b.pool, false)
		require.NoError(t, err)
		require.Len(t, all, 1)
		require.Equal(t, first.ID, all[0].ID)

		resolved, ok, err := db.ResolveAlert(b.ctx, b.pool, first.ID, "certificate became Ready")
		require.NoError(t, err)
		require.True(t, ok)
		require.NotNil(t, resolved.ResolvedAt)
		require.Equal(t, "certificate became Ready", resolved.Resolution)
		_, ok, err = db.ResolveAlert(b.ctx, b.pool, first.ID, "again")
		require.NoError(t, err)
		require.False(t, ok, "resolving twice reports that someone else did it")

		second, opened, err := db.OpenAlert(b.ctx, b.pool, newAlert(id))
		require.NoError(t, err)
		require.True(t, opened, "a new incident after resolution opens a new alert")
		require.NotEqual(t, first.ID, second.ID)
		open, err := db.OpenAlerts(b.ctx, b.pool)
		require.NoError(t, err)
		require.Len(t, open, 1)
		require.Equal(t, second.ID, open[0].ID)
	})

	t.Run("racing scans open exactly one", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := sqlInsert(t, b, newTenant(), "portal.acme.com")
		var wg sync.WaitGroup
		var mu sync.Mutex
		openedCount := 0
		for range 8 {
			wg.Go(func() {
				_, opened, err := db.OpenAlert(b.ctx, b.pool, newAlert(id))
				if err != nil {
					t.Errorf("open alert: %v", err)
					return
				}
				if opened {
					mu.Lock()
					openedCount++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Equal(t, 1, openedCount)
		require.Equal(t, 1, countAlerts(t, b))
	})

	t.Run("kinds are independent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := sqlInsert(t, b, newTenant(), "portal.acme.com")
		_, opened, err := db.OpenAlert(b.ctx, b.pool, newAlert(id))
		require.NoError(t, err)
		require.True(t, opened)
		_, opened, err = db.OpenAlert(b.ctx, b.pool, db.NewAlert{DomainID: id, Kind: db.AlertDomainStuck, Reason: "pending_dns"})
		require.NoError(t, err)
		require.True(t, opened)
	})

	t.Run("no alert for a disabled, missing or moved-on domain", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		disabled := sqlInsert(t, b, newTenant(), "portal.acme.com")
		_, err := b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE id = $1`, disabled)
		require.NoError(t, err)
		_, opened, err := db.OpenAlert(b.ctx, b.pool, newAlert(disabled))
		require.NoError(t, err)
		require.False(t, opened)

		_, opened, err = db.OpenAlert(b.ctx, b.pool, newAlert("4b4b7d0c-3c7f-4a53-9b43-8f1c1f1f1f1f"))
		require.NoError(t, err)
		require.False(t, opened)

		moved := sqlInsert(t, b, newTenant(), "portal.globex.com")
		rec, err := db.GetDomain(b.ctx, b.pool, moved)
		require.NoError(t, err)
		stale := rec.StatusChangedAt.Add(-time.Minute)
		_, opened, err = db.OpenAlert(b.ctx, b.pool, db.NewAlert{DomainID: moved, Kind: db.AlertDomainStuck,
			WhileStatus: string(domain.StatusPendingDNS), WhileSince: &stale})
		require.NoError(t, err)
		require.False(t, opened, "the row entered its status at another time: another incident")
		_, opened, err = db.OpenAlert(b.ctx, b.pool, db.NewAlert{DomainID: moved, Kind: db.AlertDomainStuck,
			WhileStatus: string(domain.StatusVerifyingDNS), WhileSince: &rec.StatusChangedAt})
		require.NoError(t, err)
		require.False(t, opened, "the row is in another status")
		_, opened, err = db.OpenAlert(b.ctx, b.pool, db.NewAlert{DomainID: moved, Kind: db.AlertDomainStuck,
			WhileStatus: string(domain.StatusPendingDNS), WhileSince: &rec.StatusChangedAt})
		require.NoError(t, err)
		require.True(t, opened)
	})
}

func countAlerts(t *testing.T, b *testBundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM portal_domain_alerts`).Scan(&n))
	return n
}

// defaultCutoffs mirrors the scan's default thresholds (jobs.StuckCutoffs):
// 2h for statuses without their own deadline, the stage's deadline plus 2h
// for verifying_dns (48h), certificate_issuing and deploying (6h).
func defaultCutoffs(now time.Time) map[domain.Status]time.Time {
	return map[domain.Status]time.Time{
		domain.StatusPendingDNS:         now.Add(-2 * time.Hour),
		domain.StatusVerifyingDNS:       now.Add(-50 * time.Hour),
		domain.StatusPendingCertificate: now.Add(-2 * time.Hour),
		domain.StatusCertificateIssuing: now.Add(-8 * time.Hour),
		domain.StatusDeploying:          now.Add(-8 * time.Hour),
	}
}

func TestStuckDomains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	// Rows written with the trigger off, so any status and any age can be
	// set directly.
	rows := []struct {
		name   string
		status domain.Status
		age    time.Duration
		stuck  bool
	}{
		{"fresh.example.com", domain.StatusPendingDNS, time.Hour, false},
		{"never-started.example.com", domain.StatusPendingDNS, 3 * time.Hour, true},
		{"fixing-dns.example.com", domain.StatusVerifyingDNS, 40 * time.Hour, false},
		{"dns-forever.example.com", domain.StatusVerifyingDNS, 51 * time.Hour, true},
		{"apply-failing.example.com", domain.StatusPendingCertificate, 3 * time.Hour, true},
		{"issuing.example.com", domain.StatusCertificateIssuing, 5 * time.Hour, false},
		{"issuing-forever.example.com", domain.StatusCertificateIssuing, 9 * time.Hour, true},
		{"probing.example.com", domain.StatusDeploying, 7 * time.Hour, false},
		{"old-active.example.com", domain.StatusActive, 900 * time.Hour, false},
		{"old-failed.example.com", domain.StatusDNSFailed, 900 * time.Hour, false},
	}
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `ALTER TABLE portal_domains DISABLE TRIGGER USER`)
	require.NoError(t, err)
	want := map[string]bool{}
	for i, r := range rows {
		tenant := newTenant()
		_, err := tx.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host, status, status_changed_at)
			VALUES ($1, $2, $3, $4::portal_domain_status, $5)`,
			string(tenant), r.name, domain.CanonicalHost(tenant, domain.DefaultCanonicalSuffix, 7), string(r.status), now.Add(-r.age))
		require.NoError(t, err, "row %d", i)
		if r.stuck {
			want[r.name] = true
		}
	}
	_, err = tx.Exec(b.ctx, `ALTER TABLE portal_domains ENABLE TRIGGER USER`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(b.ctx))

	got, err := db.StuckDomains(b.ctx, b.pool, defaultCutoffs(now), 100)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, r := range got {
		names[r.Domain] = true
	}
	require.Equal(t, want, names)
	for i := 1; i < len(got); i++ {
		require.False(t, got[i].StatusChangedAt.Before(got[i-1].StatusChangedAt), "oldest first")
	}

	limited, err := db.StuckDomains(b.ctx, b.pool, defaultCutoffs(now), 2)
	require.NoError(t, err)
	require.Len(t, limited, 2)
	require.Equal(t, "dns-forever.example.com", limited[0].Domain)

	byID, err := db.DomainsByID(b.ctx, b.pool, []string{got[0].ID, "4b4b7d0c-3c7f-4a53-9b43-8f1c1f1f1f1f", "not-a-uuid"})
	require.NoError(t, err)
	require.Len(t, byID, 1)
	require.Equal(t, got[0].Domain, byID[got[0].ID].Domain)
}

// TestStuckScanPlanAt100k loads 100,000 domains and 100,000 resolved alerts
// and checks that the scan's two queries read indexes only: the stuck-domain
// query portal_domains_working_idx, the open-alert query the partial unique
// index. Plans are logged (go test -v) with their estimated cost.
func TestStuckScanPlanAt100k(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()

	// 100,000 domains (stuckscan.Load: 2% of them, 2,000 rows, in the
	// working statuses) and as many resolved alerts.
	require.NoError(t, db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error {
		if err := stuckscan.Load(b.ctx, tx, 100_000); err != nil {
			return err
		}
		_, err := tx.Exec(b.ctx, `INSERT INTO portal_domain_alerts (domain_id, tenant, kind, domain, opened_at, resolved_at, resolution)
			SELECT gen_random_uuid(), gen_random_uuid(), 'domain_stuck', 'd' || i || '.example.com',
				now() - interval '2 days', now() - interval '1 day', 'moved on'
			FROM generate_series(1, 100000) AS i`)
		return err
	}))
	_, err := b.pool.Exec(b.ctx, `ANALYZE portal_domains; ANALYZE portal_domain_alerts`)
	require.NoError(t, err)

	var total int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM portal_domains`).Scan(&total))
	require.Equal(t, 100_000, total)

	cutoffs := defaultCutoffs(now)
	got, err := db.StuckDomains(b.ctx, b.pool, cutoffs, 100_000)
	require.NoError(t, err)
	var want int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM portal_domains WHERE
		(status IN ('pending_dns', 'pending_certificate') AND status_changed_at < now() - interval '2 hours')
		OR (status = 'verifying_dns' AND status_changed_at < now() - interval '50 hours')
		OR (status IN ('certificate_issuing', 'deploying') AND status_changed_at < now() - interval '8 hours')`).Scan(&want))
	require.InDelta(t, want, len(got), 5, "the indexed query finds what a full scan finds (a few rows may cross a cutoff between the two)")

	plan := explain(t, b.pool, db.StuckDomainsSQL, db.StuckDomainsArgs(cutoffs, 1000)...)
	requireIndexOnly(t, plan, "portal_domains", "portal_domains_working_idx")

	plan = explain(t, b.pool, db.OpenAlertsSQL)
	requireIndexOnly(t, plan, "portal_domain_alerts", "portal_domain_alerts_one_open")

	// The reconciler reads the working rows through the same index and
	// probes River's unique-key index once per row. Its EXPLAIN ANALYZE runs
	// it (2,000 working rows, none with a job: the trigger was off), so it
	// runs in a transaction that is rolled back.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()
	plan = explain(t, tx, db.MissingStageJobsSQL, db.MissingStageJobsArgs(domain.ReconcileCursor{}, 10_000)...)
	requireIndexOnly(t, plan, "portal_domains", "portal_domains_working_idx")
	requireIndexOnly(t, plan, "river_job", "river_job_unique_idx")
	var enqueued int
	require.NoError(t, tx.QueryRow(b.ctx, `SELECT count(*) FROM river_job`).Scan(&enqueued))
	require.Equal(t, 2_000, enqueued, "every working row got its job")
	// A run in the steady state: every working row has its job.
	_, err = tx.Exec(b.ctx, `ANALYZE river_job`)
	require.NoError(t, err)
	plan = explain(t, tx, db.MissingStageJobsSQL, db.MissingStageJobsArgs(domain.ReconcileCursor{}, 10_000)...)
	requireIndexOnly(t, plan, "portal_domains", "portal_domains_working_idx")
	require.NoError(t, tx.QueryRow(b.ctx, `SELECT count(*) FROM river_job`).Scan(&enqueued))
	require.Equal(t, 2_000, enqueued, "nothing enqueued twice")
}

type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	TotalCost    float64    `json:"Total Cost"`
	PlanRows     float64    `json:"Plan Rows"`
	ActualRows   float64    `json:"Actual Rows"`
	Plans        []planNode `json:"Plans"`
}

// explain runs EXPLAIN (ANALYZE, FORMAT JSON) and logs the plan.
func explain(t *testing.T, q db.Querier, query string, args ...any) planNode {
	t.Helper()
	var raw []byte
	require.NoError(t, q.QueryRow(context.Background(), `EXPLAIN (ANALYZE, FORMAT JSON) `+query, args...).Scan(&raw))
	var out []struct {
		Plan          planNode `json:"Plan"`
		ExecutionTime float64  `json:"Execution Time"`
	}
	require.NoError(t, json.Unmarshal(raw, &out))
	require.Len(t, out, 1)
	t.Logf("execution time %.1f ms", out[0].ExecutionTime)
	logPlan(t, out[0].Plan, "")
	return out[0].Plan
}

func logPlan(t *testing.T, n planNode, indent string) {
	t.Logf("%s%s %s %s (cost %.2f, estimated rows %.0f, actual rows %.0f)", indent, n.NodeType, n.RelationName, n.IndexName,
		n.TotalCost, n.PlanRows, n.ActualRows)
	for _, c := range n.Plans {
		logPlan(t, c, indent+"  ")
	}
}

// requireIndexOnly fails when the plan reads table with a sequential scan,
// or never through index.
func requireIndexOnly(t *testing.T, plan planNode, table, index string) {
	t.Helper()
	usedIndex := false
	var walk func(n planNode)
	walk = func(n planNode) {
		if n.RelationName == table {
			require.NotEqual(t, "Seq Scan", n.NodeType, "sequential scan of %s", table)
		}
		if n.IndexName == index {
			usedIndex = true
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(plan)
	require.True(t, usedIndex, "the plan does not use %s", index)
}
