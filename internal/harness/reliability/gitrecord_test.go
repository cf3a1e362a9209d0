package reliability_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/gitrecord/gittest"
)

// testGitKill: the worker whose manifest commit is being pushed is killed
// with SIGKILL while the push is in flight, and the push then lands with
// nobody to mark its job done. The job is rescued and run again by the
// other worker, and every domain's apply is on the branch exactly once,
// with two workers pushing to one repository meanwhile.
func testGitKill(t *testing.T, bin string, sz size) {
	const token = "ghp_reliabilityTOKEN0123456789SECRET"
	remote := gittest.Serve(t, token)
	w := newWorld(t, bin, worldOpts{Env: map[string]string{
		"PORTAL_DOMAIN_GIT_REPO": remote.URL, "GITHUB_ACCESS_TOKEN": token, "PORTAL_DOMAIN_GIT_USERNAME": remote.User}})
	w.playCertManager()
	inFlight, release := make(chan struct{}), make(chan struct{})
	remote.BeforeNextPush(func() {
		close(inFlight)
		<-release
	})
	workers := map[string]*proc{}
	for _, name := range []string{"a", "b"} {
		p := w.startWorker(name, map[string]string{"PORTAL_DOMAIN_GIT_WORKDIR": filepath.Join(t.TempDir(), name)})
		workers[w.clientID(p)] = p
	}
	n := max(sz.Domains/5, 4)
	fx := w.register(0, n)

	select {
	case <-inFlight:
	case <-time.After(sz.Converge):
		t.Fatal("no manifest commit was pushed")
	}
	var holder string
	var jobID int64
	require.NoError(t, w.pool.QueryRow(t.Context(), `SELECT id, attempted_by[array_upper(attempted_by, 1)] FROM river_job
		WHERE kind = 'git_record' AND state = 'running' ORDER BY attempted_at DESC LIMIT 1`).Scan(&jobID, &holder))
	victim := workers[holder]
	require.NotNil(t, victim, "the pushing job's worker %s", holder)
	victim.kill(t)
	t.Logf("killed %s with SIGKILL while it pushed job %d", victim.name, jobID)
	close(release)

	w.waitStatus(ids(fx), sz.Converge, domain.StatusActive)
	w.waitUntil("every git_record job completed", sz.Converge, func(ctx context.Context) (bool, string, error) {
		var total, completed int
		err := w.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'completed') FROM river_job
			WHERE kind = 'git_record'`).Scan(&total, &completed)
		return total == n && completed == n, fmt.Sprintf("%d of %d completed", completed, total), err
	})
	var rescued bool
	require.NoError(t, w.pool.QueryRow(t.Context(), `SELECT errors::text LIKE '%Stuck job rescued%' FROM river_job WHERE id = $1`,
		jobID).Scan(&rescued))
	require.True(t, rescued, "the killed worker's job was rescued and run again")

	log := remote.Log(t)
	require.Len(t, log, n+1, "one commit per domain after the initial one")
	for _, f := range fx {
		trailer := "Portal-Domain-Change: " + f.ID + "/1/apply"
		count := 0
		for _, m := range log {
			if strings.Contains(m, trailer) {
				count++
			}
		}
		require.Equal(t, 1, count, "commits recording %s", f.Host)
	}
	require.NotContains(t, remote.Everything(t), token)
	for _, p := range workers {
		require.NotContains(t, p.log(), token, "worker %s's log", p.name)
	}
	w.waitJobsSettled(sz.Converge)
	w.checkGuarantees(fx, checks{})
}
