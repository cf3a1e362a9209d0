package reliability_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/k8s"
)

// snapshot is what "nothing written" compares: the rows, the history and
// the stage jobs.
type snapshot struct {
	Rows   string
	Events int
	Jobs   int
}

func (w *world) snapshot(ctx context.Context) snapshot {
	w.t.Helper()
	var s snapshot
	require.NoError(w.t, w.pool.QueryRow(ctx, `SELECT
		(SELECT coalesce(md5(string_agg(d::text, ',' ORDER BY id)), '') FROM portal_domains d),
		(SELECT count(*) FROM portal_domain_events),
		(SELECT count(*) FROM river_job WHERE kind = ANY($1))`, stageKinds).Scan(&s.Rows, &s.Events, &s.Jobs))
	return s
}

// cli runs the portal-domains binary with the workers' environment.
func (w *world) cli(extra map[string]string, args ...string) (code int, stdout, stderr string) {
	t := w.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range w.env {
		if _, overridden := extra[k]; !overridden {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.String(), errOut.String()
	}
	require.NoError(t, err, "run portal-domains %v", args)
	return 0, out.String(), errOut.String()
}

// testBadInput feeds malformed input through every door: the CLI, the Go
// API, plain SQL, job args edited in river_job, and a Certificate edited in
// the cluster. Each is refused or cancelled with a clear message, nothing
// is half-written, no worker panics, and the hand-edited Certificate is
// put back.
func testBadInput(t *testing.T, bin string) {
	w := newWorld(t, bin, worldOpts{})
	w.playCertManager()
	worker := w.startWorker("a", nil)
	fx := w.register(0, 2)
	w.waitStatus(ids(fx), 2*time.Minute, domain.StatusActive)
	w.waitJobsSettled(time.Minute)
	owner, ownerDomain := fx[0], fx[0]
	stranger, _ := tenantFor(999)
	ctx := t.Context()

	t.Run("CLI: exit code 2, one line, nothing written", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  map[string]string
			args []string
			want string
		}{
			{"tenant not a UUID", nil, []string{"register", "--tenant", "not-a-uuid", "--domain", "p900.acme.test"}, "not a UUID"},
			{"apex domain", nil, []string{"register", "--tenant", stranger, "--domain", "acme.test"}, "apex"},
			{"domain with a space", nil, []string{"register", "--tenant", stranger, "--domain", "p 900.acme.test"}, `"p 900"`},
			{"another tenant's domain", nil, []string{"register", "--tenant", stranger, "--domain", ownerDomain.Host}, "already registered"},
			{"retry of an active domain", nil, []string{"retry", "--tenant", owner.Tenant, "--domain-id", owner.ID}, "active"},
			{"refresh of an active domain", nil, []string{"refresh", "--tenant", owner.Tenant, "--domain-id", owner.ID}, "active"},
			{"disable by another tenant", nil, []string{"disable", "--tenant", stranger, "--domain-id", owner.ID}, "does not belong"},
			{"domain id not a UUID", nil, []string{"retry", "--tenant", owner.Tenant, "--domain-id", "42"}, "not a UUID"},
			{"unknown status", nil, []string{"status", "--status", "bogus"}, "bogus"},
			{"rescue sooner than the job timeout", map[string]string{"PORTAL_DOMAIN_RESCUE_AFTER": "1s", "PORTAL_DOMAIN_JOB_TIMEOUT": "2m"},
				[]string{"worker"}, "PORTAL_DOMAIN_RESCUE_AFTER"},
			{"bad duration", map[string]string{"PORTAL_DOMAIN_DNS_DEADLINE": "soon"}, []string{"register", "--tenant", stranger, "--domain", "p900.acme.test"},
				"PORTAL_DOMAIN_DNS_DEADLINE"},
		} {
			before := w.snapshot(ctx)
			code, stdout, stderr := w.cli(tc.env, tc.args...)
			require.Equal(t, 2, code, "%s: exit code (stdout %q, stderr %q)", tc.name, stdout, stderr)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			require.Len(t, lines, 1, "%s: one line on stderr: %q", tc.name, stderr)
			require.True(t, strings.HasPrefix(lines[0], "portal-domains: "), "%s: %q", tc.name, lines[0])
			require.Contains(t, lines[0], tc.want, tc.name)
			require.Equal(t, before, w.snapshot(ctx), "%s: nothing written", tc.name)
		}
	})

	t.Run("Go API: sentinel errors, nothing written", func(t *testing.T) {
		before := w.snapshot(ctx)
		inTx := func(fn func(tx pgx.Tx) error) error { return db.InTx(ctx, w.pool, fn) }
		err := inTx(func(tx pgx.Tx) error {
			_, err := db.Register(ctx, tx, domain.TenantID(stranger), "acme.test", suffix)
			return err
		})
		require.ErrorIs(t, err, domain.ErrInvalidDomain)
		err = inTx(func(tx pgx.Tx) error {
			_, err := db.Register(ctx, tx, domain.TenantID(stranger), ownerDomain.Host, suffix)
			return err
		})
		require.ErrorIs(t, err, db.ErrConflict)
		err = inTx(func(tx pgx.Tx) error {
			_, err := db.Retry(ctx, tx, domain.TenantID(owner.Tenant), owner.ID)
			return err
		})
		require.ErrorIs(t, err, db.ErrWrongState)
		err = inTx(func(tx pgx.Tx) error {
			_, err := db.Refresh(ctx, tx, domain.TenantID(owner.Tenant), "not-a-uuid")
			return err
		})
		require.ErrorIs(t, err, domain.ErrInvalidInput)
		err = inTx(func(tx pgx.Tx) error {
			_, err := db.Disable(ctx, tx, domain.TenantID(stranger), owner.ID)
			return err
		})
		require.ErrorIs(t, err, db.ErrNotFound)
		rec, err := db.GetDomain(ctx, w.pool, owner.ID)
		require.NoError(t, err)
		_, err = db.Transition(ctx, w.pool, domain.Change{DomainID: owner.ID, Generation: rec.Generation,
			From: domain.StatusActive, To: domain.StatusDeploying})
		require.ErrorIs(t, err, domain.ErrIllegalTransition)
		_, err = db.Transition(ctx, w.pool, domain.Change{DomainID: owner.ID, Generation: rec.Generation,
			From: domain.StatusDeploying, To: domain.StatusActive})
		require.ErrorIs(t, err, db.ErrStale)
		require.Equal(t, before, w.snapshot(ctx))
	})

	t.Run("SQL: the trigger refuses with a message naming the problem, nothing written", func(t *testing.T) {
		fresh, _ := tenantFor(998)
		for _, tc := range []struct {
			sql  string
			args []any
			want string
		}{
			{`INSERT INTO portal_domains (tenant, domain) VALUES ($1, 'not a domain')`, []any{fresh}, "portal_domains.domain"},
			{`INSERT INTO portal_domains (tenant, domain) VALUES ($1, 'acme')`, []any{fresh}, "single label"},
			{`INSERT INTO portal_domains (tenant, domain) VALUES ($1, '*.acme.test')`, []any{fresh}, "wildcard"},
			{`INSERT INTO portal_domains (tenant, domain, status) VALUES ($1, 'p901.acme.test', 'active')`, []any{fresh}, "starts in pending_dns"},
			{`INSERT INTO portal_domains (tenant, domain) VALUES ($1, $2)`, []any{fresh, ownerDomain.Host}, "already registered by another tenant"},
			{`INSERT INTO portal_domains (tenant, domain) VALUES (NULL, 'p901.acme.test')`, nil, "tenant must not be null"},
			{`INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, 'p901.acme.test', 'fffffff.portal.test')`, []any{fresh}, "must start with"},
			{`UPDATE portal_domains SET status = 'deploying' WHERE id = $1`, []any{owner.ID}, "cannot move from active to deploying"},
			{`UPDATE portal_domains SET pipeline_generation = 0 WHERE id = $1`, []any{owner.ID}, "cannot go back"},
			{`UPDATE portal_domains SET id = gen_random_uuid() WHERE id = $1`, []any{owner.ID}, "id cannot change"},
		} {
			before := w.snapshot(ctx)
			_, err := w.pool.Exec(ctx, tc.sql, tc.args...)
			require.ErrorContains(t, err, tc.want, tc.sql)
			require.Equal(t, before, w.snapshot(ctx), "%s: nothing written", tc.sql)
		}
	})

	t.Run("job args edited in river_job: cancelled or a no-op, never a panic or a half-written row", func(t *testing.T) {
		before := w.snapshot(ctx)
		rec, err := db.GetDomain(ctx, w.pool, owner.ID)
		require.NoError(t, err)
		malformed := []string{
			`{"domain_id":"not-a-uuid","generation":1}`,
			`{}`,
			`{"domain_id":5,"generation":1}`,
			fmt.Sprintf(`{"domain_id":"%s","generation":0}`, owner.ID),
			fmt.Sprintf(`{"domain_id":"%s","generation":1}`, strings.ToUpper(owner.ID)),
			`[]`,
			`null`,
		}
		harmless := []string{
			// No such row: the job has nothing to do.
			fmt.Sprintf(`{"domain_id":"%s","generation":1}`, uuid.NewString()),
			// A generation the row never had: stale, so a no-op.
			fmt.Sprintf(`{"domain_id":"%s","generation":%d}`, owner.ID, rec.Generation+41),
		}
		queues := map[string]string{domain.KindVerifyDNS: domain.QueueDNS, domain.KindApply: domain.QueueKubernetes,
			domain.KindAwaitCertificate: domain.QueueKubernetes, domain.KindProbe: domain.QueueProbe, domain.KindDisable: domain.QueueKubernetes}
		var cancelIDs, completeIDs []int64
		for kind, queue := range queues {
			for i, args := range append(append([]string{}, malformed...), harmless...) {
				var id int64
				require.NoError(t, w.pool.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue) VALUES ($1::jsonb, $2, 25, $3)
					RETURNING id`, args, kind, queue).Scan(&id))
				if i < len(malformed) {
					cancelIDs = append(cancelIDs, id)
				} else {
					completeIDs = append(completeIDs, id)
				}
			}
		}
		waitFinal := func(jobIDs []int64, state string) {
			w.waitUntil(fmt.Sprintf("%d jobs %s", len(jobIDs), state), 2*time.Minute, func(ctx context.Context) (bool, string, error) {
				var n int
				var states string
				err := w.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = $2), string_agg(DISTINCT state::text, ',')
					FROM river_job WHERE id = ANY($1)`, jobIDs, state).Scan(&n, &states)
				return n == len(jobIDs), states, err
			})
		}
		waitFinal(cancelIDs, "cancelled")
		waitFinal(completeIDs, "completed")
		var attempts int
		require.NoError(t, w.pool.QueryRow(ctx, `SELECT max(attempt) FROM river_job WHERE id = ANY($1)`, cancelIDs).Scan(&attempts))
		require.Equal(t, 1, attempts, "malformed args are cancelled at the first attempt, not retried")
		after := w.snapshot(ctx)
		require.Equal(t, before.Rows, after.Rows, "no row written by a malformed or stale job")
		require.Equal(t, before.Events, after.Events)
		require.Equal(t, len(cancelIDs), strings.Count(worker.log(), "job args are malformed; cancelling the job"),
			"each cancellation is logged with its reason")

		// A live job whose args are edited while it waits is cancelled too;
		// the operator's refresh starts the domain over.
		held := w.register(10, 1)[0]
		w.hold(held.Host)
		w.waitStatus([]string{held.ID}, 2*time.Minute, domain.StatusCertificateIssuing)
		var jobID int64
		w.waitUntil("the await_certificate job snoozed", time.Minute, func(ctx context.Context) (bool, string, error) {
			err := w.pool.QueryRow(ctx, `SELECT id FROM river_job WHERE kind = 'await_certificate' AND args->>'domain_id' = $1
				AND state = 'scheduled'`, held.ID).Scan(&jobID)
			if errors.Is(err, pgx.ErrNoRows) {
				return false, "not scheduled", nil
			}
			return err == nil, "", err
		})
		_, err = w.pool.Exec(ctx, `UPDATE river_job SET args = '{"domain_id":"not-a-uuid"}', state = 'available', scheduled_at = now()
			WHERE id = $1`, jobID)
		require.NoError(t, err)
		waitFinal([]int64{jobID}, "cancelled")
		heldRec, err := db.GetDomain(ctx, w.pool, held.ID)
		require.NoError(t, err)
		require.Equal(t, domain.StatusCertificateIssuing, heldRec.Status)
		code, stdout, stderr := w.cli(nil, "refresh", "--tenant", held.Tenant, "--domain-id", held.ID)
		require.Zero(t, code, "refresh: %s %s", stdout, stderr)
		w.release(held.Host)
		w.waitStatus([]string{held.ID}, 2*time.Minute, domain.StatusActive)
		w.waitJobsSettled(time.Minute)
		w.checkGuarantees(append(fx, held), checks{CancelledJobs: len(cancelIDs) + 1})
	})

	t.Run("Certificate edited by hand while issuing: applied again", func(t *testing.T) {
		certs := w.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(w.certNS)
		f := w.register(20, 1)[0]
		w.hold(f.Host)
		w.waitStatus([]string{f.ID}, 2*time.Minute, domain.StatusCertificateIssuing)
		name := "portal-domain-" + strings.Split(f.Canonical, ".")[0]

		// Deleted: the watch wakes the stage job, which applies it again.
		require.NoError(t, certs.Delete(ctx, name, metav1.DeleteOptions{}))
		w.waitUntil("the deleted Certificate re-created", time.Minute, func(ctx context.Context) (bool, string, error) {
			_, err := certs.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, "missing", nil
			}
			return err == nil, "", err
		})

		// dnsNames changed by someone else's update (kubectl edit).
		cert, err := certs.Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.NoError(t, unstructured.SetNestedStringSlice(cert.Object, []string{"elsewhere.acme.test"}, "spec", "dnsNames"))
		_, err = certs.Update(ctx, cert, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
		require.NoError(t, err)
		w.waitUntil("the edited dnsNames put back", time.Minute, func(ctx context.Context) (bool, string, error) {
			cert, err := certs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
			return len(names) == 1 && names[0] == f.Host, fmt.Sprint(names), nil
		})

		w.release(f.Host)
		w.waitStatus([]string{f.ID}, 2*time.Minute, domain.StatusActive)
		events, err := db.ListEvents(ctx, w.pool, f.ID)
		require.NoError(t, err)
		require.NoError(t, checkHistory(events))
		var said []string
		for _, e := range events {
			said = append(said, e.Message)
		}
		require.Contains(t, strings.Join(said, "\n"), "was changed in the cluster (dnsNames [elsewhere.acme.test]",
			"the tenant's history says what was put back")
		// Taken back whole: portal-domains is again the only applier.
		w.checkObjects([]fixture{f}, checks{})
	})
}
