package db_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/fixtures/stuckscan"
	"github.com/portal-domains/portal-domains/jobs"
)

// loadDomains inserts n rows as stuckscan.Load does (94 % active) and
// returns how many are active.
func loadDomains(t *testing.T, b *testBundle, n int) int {
	t.Helper()
	require.NoError(t, db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error { return stuckscan.Load(b.ctx, tx, n) }))
	var active int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM portal_domains WHERE status = 'active'`).Scan(&active))
	return active
}

// scheduleAll gives every active domain its first check, spread over
// interval as the scheduler does.
func scheduleAll(t *testing.T, b *testBundle, interval time.Duration) int {
	t.Helper()
	now := time.Now()
	rng := rand.New(rand.NewPCG(7, 7))
	total := 0
	for {
		found, err := db.UnscheduledActive(b.ctx, b.pool, 50_000)
		require.NoError(t, err)
		if len(found) == 0 {
			return total
		}
		at := make([]time.Time, len(found))
		for i := range at {
			at[i] = jobs.FirstRecheck(now, interval, rng.Float64())
		}
		require.NoError(t, db.AddRechecks(b.ctx, b.pool, found, at))
		total += len(found)
	}
}

func TestRechecks(t *testing.T) {
	t.Parallel()

	t.Run("every active domain is scheduled once, and a re-activated one starts over", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		active := loadDomains(t, b, 200)
		require.Equal(t, active, scheduleAll(t, b, time.Hour))
		again, err := db.UnscheduledActive(b.ctx, b.pool, 1000)
		require.NoError(t, err)
		require.Empty(t, again)

		var id string
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT id::text FROM portal_domains WHERE status = 'active' LIMIT 1`).Scan(&id))
		_, err = b.pool.Exec(b.ctx, `UPDATE portal_domain_rechecks SET problem_kind = 'dns_drift', problem_since = now(), checks = 5 WHERE domain_id = $1`, id)
		require.NoError(t, err)
		// A refresh ran the pipeline again, and the domain is active in a
		// new generation: its old problem was about the old one.
		_, err = b.pool.Exec(b.ctx, `ALTER TABLE portal_domains DISABLE TRIGGER USER;
			UPDATE portal_domains SET pipeline_generation = pipeline_generation + 1 WHERE id = '`+id+`';
			ALTER TABLE portal_domains ENABLE TRIGGER USER`)
		require.NoError(t, err)
		found, err := db.UnscheduledActive(b.ctx, b.pool, 1000)
		require.NoError(t, err)
		require.Len(t, found, 1)
		require.Equal(t, id, found[0].DomainID)
		require.NoError(t, db.AddRechecks(b.ctx, b.pool, found, []time.Time{time.Now().Add(time.Minute)}))
		r, err := db.GetRecheck(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, found[0].Generation, r.Generation)
		require.Empty(t, r.ProblemKind)
		require.Zero(t, r.Checks)
	})

	t.Run("due checks are claimed once, earliest first; rows of domains no longer active are told apart", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		loadDomains(t, b, 100)
		scheduleAll(t, b, 24*time.Hour)
		// Ten come due, and one of their domains is disabled since.
		_, err := b.pool.Exec(b.ctx, `UPDATE portal_domain_rechecks SET next_check_at = now() - (random() * interval '1 hour')
			WHERE domain_id IN (SELECT domain_id FROM portal_domain_rechecks ORDER BY domain_id LIMIT 10)`)
		require.NoError(t, err)
		var disabled string
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT domain_id::text FROM portal_domain_rechecks ORDER BY domain_id LIMIT 1`).Scan(&disabled))
		_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE id = $1`, disabled)
		require.NoError(t, err)

		tx1, err := b.pool.Begin(b.ctx)
		require.NoError(t, err)
		defer func() { _ = tx1.Rollback(b.ctx) }()
		first, err := db.ClaimDueRechecks(b.ctx, tx1, 6)
		require.NoError(t, err)
		require.Len(t, first, 6)
		for i := 1; i < len(first); i++ {
			require.False(t, first[i].Due.Before(first[i-1].Due), "earliest first")
		}
		// A second scheduler at the same time gets the other four.
		tx2, err := b.pool.Begin(b.ctx)
		require.NoError(t, err)
		defer func() { _ = tx2.Rollback(b.ctx) }()
		second, err := db.ClaimDueRechecks(b.ctx, tx2, 100)
		require.NoError(t, err)
		require.Len(t, second, 4)
		seen := map[string]bool{}
		live := 0
		for _, d := range append(first, second...) {
			require.False(t, seen[d.DomainID], "claimed twice: %s", d.DomainID)
			seen[d.DomainID] = true
			require.Equal(t, d.DomainID != disabled, d.Live, d.DomainID)
			if d.Live {
				live++
			}
		}
		require.Equal(t, 9, live)
	})

	t.Run("a result with a message is written only while the domain is active in its generation", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		loadDomains(t, b, 100)
		scheduleAll(t, b, time.Hour)
		var id string
		var gen int64
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT id::text, pipeline_generation FROM portal_domains WHERE status = 'active' LIMIT 1`).Scan(&id, &gen))
		since := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
		notAfter := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Microsecond)
		checkBy := time.Now().Add(time.Second).UTC().Truncate(time.Microsecond)
		res := db.RecheckResult{DomainID: id, Generation: gen, Outcome: "dns_mismatch", ProblemKind: db.AlertDNSDrift,
			ProblemSince: &since, ServedNotAfter: &notAfter, CheckBy: &checkBy,
			Message: "Your domain's DNS changed after it went live: No DNS record found.", Details: map[string]any{"outcome": "dns_mismatch"}}

		stale := res
		stale.Generation = gen + 1
		err := db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error { return db.RecordRecheck(b.ctx, tx, stale) })
		require.ErrorIs(t, err, db.ErrStale)

		require.NoError(t, db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error { return db.RecordRecheck(b.ctx, tx, res) }))
		rec, err := db.GetDomain(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, "active", string(rec.Status))
		require.Equal(t, gen, rec.Generation, "nothing restarted")
		require.Equal(t, res.Message, rec.StatusMessage)
		var details map[string]any
		require.NoError(t, json.Unmarshal(rec.VerificationDetails, &details))
		require.Equal(t, map[string]any{"outcome": "dns_mismatch"}, details["live_check"])
		events, err := db.ListEvents(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.NotEmpty(t, events)
		require.Equal(t, res.Message, events[len(events)-1].Message, "the history has it")
		r, err := db.GetRecheck(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, db.AlertDNSDrift, r.ProblemKind)
		require.True(t, since.Equal(*r.ProblemSince))
		require.True(t, notAfter.Equal(*r.ServedNotAfter))
		require.True(t, checkBy.Equal(r.NextCheckAt), "a problem brings the next check forward")
		require.EqualValues(t, 1, r.Checks)

		// Disabled meanwhile: the next result writes nothing at all.
		_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE id = $1`, id)
		require.NoError(t, err)
		res.Message = "Your domain is live and protected by HTTPS."
		err = db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error { return db.RecordRecheck(b.ctx, tx, res) })
		require.ErrorIs(t, err, db.ErrStale)
		r, err = db.GetRecheck(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.EqualValues(t, 1, r.Checks, "rolled back")
	})
}

// TestRecheckPlanAt100k shows that finding due checks stays an index range
// scan at 100,000 domains, and logs the plans and times of the scheduler's
// and the metrics' queries (docs/benchmarks.md).
func TestRecheckPlanAt100k(t *testing.T) {
	t.Parallel()
	b := setup(t)
	active := loadDomains(t, b, 100_000)
	require.Equal(t, 94_000, active)
	start := time.Now()
	require.Equal(t, active, scheduleAll(t, b, 6*time.Hour))
	t.Logf("first sight of 94,000 active domains scheduled in %s", time.Since(start).Round(time.Millisecond))
	// A minute's worth of checks are due (100,000 every 6h is 278 a
	// minute), a few hundred domains have a problem, and each has a served
	// expiry: renewed certificates 30 to 90 days out, and 50 that missed
	// their renewal.
	_, err := b.pool.Exec(b.ctx, `UPDATE portal_domain_rechecks SET next_check_at = next_check_at - interval '6 hours'
		WHERE next_check_at < now() + interval '1 minute'`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domain_rechecks SET served_not_after = now() + interval '30 days' + (random() * interval '60 days')`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domain_rechecks SET served_not_after = now() + interval '10 days'
		WHERE domain_id IN (SELECT domain_id FROM portal_domain_rechecks LIMIT 50)`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domain_rechecks SET problem_kind = 'dns_drift', problem_since = now() - interval '1 hour'
		WHERE random() < 0.003`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `ANALYZE portal_domains; ANALYZE portal_domain_rechecks`)
	require.NoError(t, err)

	t.Log("due checks (db.DueRechecksSQL), a batch of 5,000:")
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()
	plan := explain(t, tx, db.DueRechecksSQL, 5000)
	requireIndexOnly(t, plan, "portal_domain_rechecks", "portal_domain_rechecks_due_idx")
	requireIndexOnly(t, plan, "portal_domains", "portal_domains_pkey")
	due, err := db.ClaimDueRechecks(b.ctx, tx, 5000)
	require.NoError(t, err)
	require.NotEmpty(t, due)
	require.Less(t, len(due), 1000, "about a minute's worth")

	t.Log("active domains not yet scheduled (db.UnscheduledActiveSQL), all scheduled:")
	explain(t, b.pool, db.UnscheduledActiveSQL, 5000)

	t.Log("metrics (db.RecheckStatsSQL):")
	plan = explain(t, b.pool, db.RecheckStatsSQL, time.Now().Add(14*24*time.Hour))
	var walk func(n planNode)
	walk = func(n planNode) {
		if n.RelationName == "portal_domain_rechecks" {
			require.NotEqual(t, "Seq Scan", n.NodeType, "the metrics read the re-check table through its indexes")
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(plan)
	stats, err := db.ReadRecheckStats(b.ctx, b.pool, time.Now().Add(14*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 50, stats.ExpiringSoon)
	require.Positive(t, stats.Problems[db.AlertDNSDrift])
}
