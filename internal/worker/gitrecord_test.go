package worker_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/gitrecord"
	"github.com/portal-domains/portal-domains/gitrecord/gittest"
	"github.com/portal-domains/portal-domains/k8s"
)

const gitToken = "ghp_pipelineTOKEN0123456789SECRET"

func gitConfig(t *testing.T, remote *gittest.Remote) gitrecord.Config {
	return gitrecord.Config{URL: remote.URL, Branch: "main", Workdir: filepath.Join(t.TempDir(), "sync"),
		Root: gitrecord.DefaultRoot, AuthorName: "Portal Domains Bot", AuthorEmail: "bot@example.com",
		Username: remote.User, Token: remote.Token}
}

// gitJobs returns the states of the git_record jobs, oldest first.
func (b *bundle) gitJobs(t *testing.T) []string {
	t.Helper()
	rows, err := b.schema.Pool.Query(b.ctx, `SELECT state::text FROM river_job WHERE kind = 'git_record' ORDER BY id`)
	require.NoError(t, err)
	states, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return states
}

// waitForGitJobs waits until n git_record jobs exist and all completed.
func (b *bundle) waitForGitJobs(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		states := b.gitJobs(t)
		done := len(states) == n
		for _, s := range states {
			done = done && s == "completed"
		}
		if done {
			return
		}
		require.True(t, time.Now().Before(deadline), "git_record jobs %v, waiting for %d completed", states, n)
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bundle) disable(t *testing.T, id string) {
	t.Helper()
	require.NoError(t, db.InTx(b.ctx, b.schema.Pool, func(tx pgx.Tx) error {
		_, err := db.Disable(b.ctx, tx, tenant, id)
		return err
	}))
}

func TestGitRecord(t *testing.T) {
	t.Parallel()
	const file = "alga-psa/portal-domains/abc1234.yaml"

	t.Run("register, domain change and disable each make exactly one commit; a rerun after a crash makes none", func(t *testing.T) {
		t.Parallel()
		remote := gittest.Serve(t, gitToken)
		b := setup(t, setupOpts{git: gitConfig(t, remote)})

		rec := b.register(t, tenant, "portal.acme.test")
		b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
		b.waitForGitJobs(t, 1)
		log := remote.Log(t)
		require.Len(t, log, 2)
		require.Contains(t, log[0], "portal-domains: apply portal.acme.test (tenant "+string(tenant)+")")
		require.Contains(t, log[0], "status: certificate_issuing\ngeneration: 1")
		manifest, ok := remote.Show(t, file)
		require.True(t, ok)
		require.Contains(t, manifest, "kind: Certificate")
		require.Contains(t, manifest, "kind: Gateway")
		require.Contains(t, manifest, "kind: VirtualService")
		require.Contains(t, manifest, "- portal.acme.test")

		// The worker died after its push and before River marked the job
		// done: the rescuer makes it available again, and it runs again.
		tag, err := b.schema.Pool.Exec(b.ctx, `UPDATE river_job SET state = 'available', finalized_at = NULL, scheduled_at = now()
			WHERE kind = 'git_record'`)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected())
		_, err = b.schema.Pool.Exec(b.ctx, `SELECT pg_notify(current_schema() || '.river_insert', '{"queue":"git"}')`)
		require.NoError(t, err)
		b.waitForGitJobs(t, 1)
		var attempt int
		require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `SELECT attempt FROM river_job WHERE kind = 'git_record'`).Scan(&attempt))
		require.Equal(t, 2, attempt, "the job ran again")
		require.Len(t, remote.Log(t), 2, "the rerun found its commit on the branch")

		// The tenant changes its domain: a new generation, applied again.
		changed := b.register(t, tenant, "chain.acme.test")
		require.Equal(t, rec.ID, changed.ID)
		b.waitFor(t, rec.ID, "applied the new domain", func(r domain.Record) bool {
			return r.Generation == changed.Generation && r.Status != domain.StatusPendingDNS && r.Status != domain.StatusVerifyingDNS &&
				r.Status != domain.StatusPendingCertificate
		})
		b.waitForGitJobs(t, 2)
		log = remote.Log(t)
		require.Len(t, log, 3)
		require.Contains(t, log[0], "portal-domains: apply chain.acme.test")
		manifest, _ = remote.Show(t, file)
		require.Contains(t, manifest, "- chain.acme.test")
		require.NotContains(t, manifest, "portal.acme.test")

		b.disable(t, rec.ID)
		b.waitForDeleted(t, rec.ID)
		b.waitForGitJobs(t, 3)
		log = remote.Log(t)
		require.Len(t, log, 4)
		require.Contains(t, log[0], "portal-domains: remove chain.acme.test")
		require.Contains(t, log[0], "status: disabled")
		_, ok = remote.Show(t, file)
		require.False(t, ok, "the domain's file is removed")
		require.NotContains(t, remote.Everything(t), gitToken)
	})

	t.Run("an unreachable remote is waited out while the domain goes active", func(t *testing.T) {
		t.Parallel()
		remote := gittest.Serve(t, gitToken)
		b := setup(t, setupOpts{git: gitConfig(t, remote)})
		remote.Down()

		rec := b.register(t, tenant, "portal.acme.test")
		b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
		b.playCertManager(t, rec, true, "Ready", "issued")
		b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })
		// The git job failed meanwhile and waits to retry.
		deadline := time.Now().Add(waitTimeout)
		var state, lastError string
		for lastError == "" {
			require.True(t, time.Now().Before(deadline), "the git_record job never failed against the unreachable remote")
			require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `SELECT state::text, coalesce(errors[array_length(errors, 1)]->>'error', '')
				FROM river_job WHERE kind = 'git_record'`).Scan(&state, &lastError))
			time.Sleep(50 * time.Millisecond)
		}
		require.Contains(t, lastError, "connection refused")
		require.NotContains(t, lastError, gitToken)
		require.Len(t, remote.Log(t), 1, "nothing reached the remote while it was down")

		remote.Up(t)
		b.waitForGitJobs(t, 1)
		log := remote.Log(t)
		require.Len(t, log, 2)
		require.Contains(t, log[0], "portal-domains: apply portal.acme.test")
	})

	t.Run("under review the apply waits until its branch is merged", func(t *testing.T) {
		t.Parallel()
		remote := gittest.Serve(t, gitToken)
		cfg := gitConfig(t, remote)
		cfg.Review = true
		b := setup(t, setupOpts{git: cfg})

		rec := b.register(t, tenant, "portal.acme.test")
		const branch = "portal-domains/abc1234-1-apply"
		waiting := b.waitFor(t, rec.ID, "waited for review", func(r domain.Record) bool {
			return r.Status == domain.StatusPendingCertificate && strings.Contains(r.StatusMessage, "Waiting for review")
		})
		require.Equal(t, "Waiting for review: merge branch "+branch+" of the manifest repository; the certificate for portal.acme.test is requested once it is merged.", waiting.StatusMessage)
		require.NotEmpty(t, remote.Branch(t, branch))
		proposed, ok := remote.ShowAt(t, branch, file)
		require.True(t, ok)
		require.Contains(t, proposed, "- portal.acme.test")
		_, ok = remote.Show(t, file)
		require.False(t, ok, "main is untouched before the merge")
		_, err := b.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.Kube.CertNamespace).Get(b.ctx, "portal-domain-abc1234", metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "nothing is applied while the review waits: %v", err)

		remote.Merge(t, branch)
		b.waitFor(t, rec.ID, "applied after the merge", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
		b.waitForGitJobs(t, 1)
		log := remote.Log(t)
		require.Len(t, log, 3, "the proposal and its merge, no commit of the record's own")
		require.Equal(t, "Merge "+branch, log[0])

		b.disable(t, rec.ID)
		b.waitForDeleted(t, rec.ID)
		b.waitForGitJobs(t, 2)
		removal := remote.Branch(t, "portal-domains/abc1234-2-remove")
		require.NotEmpty(t, removal, "the removal is proposed for review")
		_, ok = remote.ShowAt(t, removal, file)
		require.False(t, ok)
		_, ok = remote.Show(t, file)
		require.True(t, ok, "main keeps the file until the removal is merged")
	})
}
