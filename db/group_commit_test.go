package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
)

// holdSlot makes the group's only commit slot busy: a transition of a row
// another transaction has locked waits for that lock while holding the
// slot. It returns once the transition is waiting, and a function that
// releases the lock and returns the held transition's error.
func holdSlot(t *testing.T, b *testBundle, g *db.TransitionGroup) func() error {
	t.Helper()
	id := sqlInsert(t, b, newTenant(), fmt.Sprintf("held-%d.acme.com", time.Now().UnixNano()))
	locker, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = locker.Exec(b.ctx, `SELECT 1 FROM portal_domains WHERE id = $1 FOR UPDATE`, id)
	require.NoError(t, err)
	held := make(chan error, 1)
	go func() {
		_, err := g.Transition(b.ctx, domain.Change{DomainID: id, Generation: 1, From: domain.StatusPendingDNS, To: domain.StatusVerifyingDNS, Message: "held"})
		held <- err
	}()
	require.Eventually(t, func() bool {
		var waiting bool
		err := b.pool.QueryRow(b.ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1::int = ANY (pg_blocking_pids(pid)))`,
			locker.Conn().PgConn().PID()).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, 5*time.Millisecond, "the held transition never waited for the row lock")
	return func() error {
		require.NoError(t, locker.Rollback(b.ctx))
		return <-held
	}
}

// transitionsInBackground starts one goroutine per change and waits until
// all of them are queued in g.
func transitionsInBackground(t *testing.T, g *db.TransitionGroup, changes []domain.Change) func() []error {
	t.Helper()
	before := g.Waiting()
	errs := make([]error, len(changes))
	var wg sync.WaitGroup
	for i, c := range changes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.Transition(context.Background(), c)
		}()
	}
	require.Eventually(t, func() bool { return g.Waiting() == before+len(changes) }, 10*time.Second, time.Millisecond)
	return func() []error {
		wg.Wait()
		return errs
	}
}

func rowXmin(t *testing.T, b *testBundle, id string) string {
	t.Helper()
	var xmin string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT xmin::text FROM portal_domains WHERE id = $1`, id).Scan(&xmin))
	return xmin
}

func TestTransitionGroupCommitsWaitingChangesTogether(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := db.NewTransitionGroup(b.pool, 64, 1)
	release := holdSlot(t, b, g)

	var ids []string
	var changes []domain.Change
	for i := range 5 {
		id := sqlInsert(t, b, newTenant(), fmt.Sprintf("portal%d.acme.com", i))
		ids = append(ids, id)
		changeID := id
		if i == 2 {
			changeID = strings.ToUpper(id) // the same row, matched by its canonical id
		}
		changes = append(changes, domain.Change{DomainID: changeID, Generation: 1, From: domain.StatusPendingDNS,
			To: domain.StatusPendingCertificate, Message: "DNS verified", Details: map[string]any{"dns_outcome": "verified"}})
	}
	// A change whose guard no longer matches is stale, not a failure of
	// the group; a group holds one change per domain.
	changes = append(changes, domain.Change{DomainID: ids[0], Generation: 1, From: domain.StatusVerifyingDNS,
		To: domain.StatusDNSFailed, Message: "late"})
	wait := transitionsInBackground(t, g, changes)
	require.NoError(t, release())
	errs := wait()

	for i, id := range ids {
		require.NoError(t, errs[i])
		rec, err := db.GetDomain(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, domain.StatusPendingCertificate, rec.Status)
		var details struct {
			Outcome string `json:"dns_outcome"`
		}
		require.NoError(t, json.Unmarshal(rec.VerificationDetails, &details))
		require.Equal(t, "verified", details.Outcome)
		events, err := db.ListEvents(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Len(t, events, 2, "insert and one move")
		if i > 0 {
			// ids[0] has a second change waiting (below), which may take
			// its place in the group and push it to the next one.
			require.Equal(t, rowXmin(t, b, ids[1]), rowXmin(t, b, id), "the waiting changes were committed in one transaction")
		}
	}
	require.ErrorIs(t, errs[len(errs)-1], db.ErrStale)

	// Exactly one apply job per domain, for generation 1.
	applies := map[string]int{}
	for _, j := range listJobs(t, b) {
		if j.Kind == domain.KindApply {
			applies[j.Args.DomainID]++
			require.Equal(t, int64(1), j.Args.Generation)
		}
	}
	for _, id := range ids {
		require.Equal(t, 1, applies[id], id)
	}
}

func TestTransitionGroupIsolatesARefusedChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := db.NewTransitionGroup(b.pool, 64, 1)

	good1 := sqlInsert(t, b, newTenant(), "good1.acme.com")
	good2 := sqlInsert(t, b, newTenant(), "good2.acme.com")
	bad := sqlInsert(t, b, newTenant(), "bad.acme.com")
	// A rule the operator added: this change breaks it, the others do not.
	_, err := b.pool.Exec(b.ctx, `ALTER TABLE portal_domains ADD CONSTRAINT operator_rule
		CHECK (status_message IS DISTINCT FROM 'breaks the operator''s rule')`)
	require.NoError(t, err)

	release := holdSlot(t, b, g)
	change := func(id, message string) domain.Change {
		return domain.Change{DomainID: id, Generation: 1, From: domain.StatusPendingDNS, To: domain.StatusVerifyingDNS, Message: message}
	}
	wait := transitionsInBackground(t, g, []domain.Change{change(good1, "checking"), change(bad, "breaks the operator's rule"), change(good2, "checking")})
	require.NoError(t, release())
	errs := wait()

	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], db.ErrRejected)
	require.ErrorContains(t, errs[1], "operator_rule")
	require.NoError(t, errs[2])
	for _, id := range []string{good1, good2} {
		rec, err := db.GetDomain(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, domain.StatusVerifyingDNS, rec.Status)
		events, err := db.ListEvents(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Len(t, events, 2, "the rolled-back group left no history behind")
	}
	rec, err := db.GetDomain(b.ctx, b.pool, bad)
	require.NoError(t, err)
	require.Equal(t, domain.StatusPendingDNS, rec.Status, "the refused change wrote nothing")
}

func TestTransitionGroupUnderLoad(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := db.NewTransitionGroup(b.pool, 16, 2)
	const n = 300
	ids := make([]string, n)
	for i := range n {
		ids[i] = sqlInsert(t, b, newTenant(), fmt.Sprintf("load%d.acme.com", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.Transition(b.ctx, domain.Change{DomainID: id, Generation: 1, From: domain.StatusPendingDNS,
				To: domain.StatusPendingCertificate, Message: "DNS verified"})
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
	}
	var moved, applies, transactions int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FILTER (WHERE status = 'pending_certificate'), count(DISTINCT xmin::text)
		FROM portal_domains WHERE domain LIKE 'load%'`).Scan(&moved, &transactions))
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(DISTINCT args->>'domain_id') FROM river_job WHERE kind = $1`, domain.KindApply).Scan(&applies))
	require.Equal(t, n, moved)
	require.Equal(t, n, applies)
	require.Equal(t, 0, g.Waiting())
	t.Logf("%d transitions in %d transactions", n, transactions)
}

func TestReadGroupReadsWhatGetDomainReads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := db.NewReadGroup(b.pool, 16, 2)
	const n = 100
	ids := make([]string, n)
	for i := range n {
		ids[i] = sqlInsert(t, b, newTenant(), fmt.Sprintf("read%d.acme.com", i))
	}
	missing := "00000000-0000-4000-8000-000000000000"
	var wg sync.WaitGroup
	got := make([]domain.Record, n)
	errs := make([]error, n+2)
	for i := range n + 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i {
			case n:
				_, errs[i] = g.GetDomain(b.ctx, missing)
			case n + 1:
				_, errs[i] = g.GetDomain(b.ctx, "not-a-uuid")
			default:
				// Upper case reads the same row.
				got[i], errs[i] = g.GetDomain(b.ctx, strings.ToUpper(ids[i]))
			}
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		want, err := db.GetDomain(b.ctx, b.pool, ids[i])
		require.NoError(t, err)
		require.Equal(t, want, got[i])
	}
	require.ErrorIs(t, errs[n], db.ErrNotFound)
	require.ErrorIs(t, errs[n+1], domain.ErrInvalidInput)
}
