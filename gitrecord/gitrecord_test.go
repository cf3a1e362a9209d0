package gitrecord_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/gitrecord"
	"github.com/portal-domains/portal-domains/gitrecord/gittest"
)

const token = "ghp_testTOKEN0123456789abcdefSECRET"

type bundle struct {
	remote  *gittest.Remote
	cfg     gitrecord.Config
	rec     *gitrecord.Recorder
	logs    *bytes.Buffer
	ctx     context.Context
	workdir string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	remote := gittest.Serve(t, token)
	workdir := filepath.Join(t.TempDir(), "sync")
	cfg, err := gitrecord.ConfigFromEnv(env(map[string]string{
		"PORTAL_DOMAIN_GIT_REPO":    remote.URL,
		"PORTAL_DOMAIN_GIT_WORKDIR": workdir,
		"GITHUB_ACCESS_TOKEN":       token,
	}))
	require.NoError(t, err)
	logs := &bytes.Buffer{}
	return &bundle{remote: remote, cfg: cfg, logs: logs, ctx: t.Context(), workdir: workdir,
		rec: gitrecord.New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func change(gen int64, host string) gitrecord.Change {
	return gitrecord.Change{
		Key: fmt.Sprintf("d0c5e7e2-0000-4000-8000-000000000001/%d/apply", gen), Tenant: "3f2a9c1b-0000-4000-8000-000000000000",
		DomainID: "d0c5e7e2-0000-4000-8000-000000000001", Domain: host, Slug: "3f2a9c1", Status: "certificate_issuing", Generation: gen,
		Documents: [][]byte{
			[]byte(`{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"portal-domain-3f2a9c1","namespace":"msp"},"spec":{"dnsNames":["` + host + `"]}}`),
			[]byte(`{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"portal-domain-gw-3f2a9c1","namespace":"istio-system"}}`),
		},
	}
}

func TestRecord(t *testing.T) {
	t.Parallel()

	t.Run("apply commits the domain's file under the root with a message naming tenant, domain, status and generation", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		assert.Equal(t, "committed", res.Outcome)
		log := b.remote.Log(t)
		require.Len(t, log, 2)
		assert.Contains(t, log[0], "portal-domains: apply portal.acme.com (tenant 3f2a9c1b-0000-4000-8000-000000000000)")
		assert.Contains(t, log[0], "status: certificate_issuing")
		assert.Contains(t, log[0], "generation: 1")
		assert.Contains(t, log[0], "Portal-Domain-Change: d0c5e7e2-0000-4000-8000-000000000001/1/apply")
		got, ok := b.remote.Show(t, "alga-psa/portal-domains/3f2a9c1.yaml")
		require.True(t, ok)
		assert.Equal(t, "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: portal-domain-3f2a9c1\n  namespace: msp\nspec:\n  dnsNames:\n  - portal.acme.com\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: portal-domain-gw-3f2a9c1\n  namespace: istio-system\n", got)
		_, ok = b.remote.Show(t, "README.md")
		assert.True(t, ok, "the repository's other files are kept")
	})

	t.Run("the same change recorded again makes no second commit, even from a fresh workdir", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		again, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		assert.Equal(t, gitrecord.Result{Commit: first.Commit, Outcome: "recorded"}, again)
		// A worker that died after the push and before its job completed
		// runs again elsewhere, with no workdir of its own.
		cfg := b.cfg
		cfg.Workdir = filepath.Join(t.TempDir(), "other")
		other, err := gitrecord.New(cfg, slog.New(slog.DiscardHandler)).Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		assert.Equal(t, first.Commit, other.Commit)
		assert.Len(t, b.remote.Log(t), 2)
	})

	t.Run("a change of the domain is a second commit; the removal a third, and removing again is no commit", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		_, err = b.rec.Record(b.ctx, change(2, "portal.acme.org"))
		require.NoError(t, err)
		got, _ := b.remote.Show(t, "alga-psa/portal-domains/3f2a9c1.yaml")
		assert.Contains(t, got, "portal.acme.org")
		rm := change(3, "portal.acme.org")
		rm.Key, rm.Status, rm.Documents = strings.Replace(rm.Key, "apply", "remove", 1), "disabled", nil
		res, err := b.rec.Record(b.ctx, rm)
		require.NoError(t, err)
		assert.Equal(t, "committed", res.Outcome)
		_, ok := b.remote.Show(t, "alga-psa/portal-domains/3f2a9c1.yaml")
		assert.False(t, ok)
		log := b.remote.Log(t)
		require.Len(t, log, 4)
		assert.Contains(t, log[0], "portal-domains: remove portal.acme.org")
		assert.Contains(t, log[0], "status: disabled")
		rm.Key += "-again"
		res, err = b.rec.Record(b.ctx, rm)
		require.NoError(t, err)
		assert.Equal(t, "unchanged", res.Outcome)
		assert.Len(t, b.remote.Log(t), 4)
	})

	t.Run("files an interrupted attempt left in the workdir neither block a removal nor get committed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		// Written, never committed: a removal of a domain the branch does
		// not have, then a stray file beside it.
		stray := filepath.Join(b.workdir, "alga-psa", "portal-domains", "0000000.yaml")
		require.NoError(t, os.WriteFile(stray, []byte("kind: Leftover\n"), 0o644))
		rm := change(2, "portal.acme.com")
		rm.Key, rm.Slug, rm.Documents = "other/2/remove", "0000000", nil
		res, err := b.rec.Record(b.ctx, rm)
		require.NoError(t, err)
		assert.Equal(t, "unchanged", res.Outcome)
		_, err = b.rec.Record(b.ctx, change(3, "portal.acme.net"))
		require.NoError(t, err)
		_, ok := b.remote.Show(t, "alga-psa/portal-domains/0000000.yaml")
		assert.False(t, ok, "the stray file was never committed")
		assert.Len(t, b.remote.Log(t), 3)
	})

	t.Run("a push rejected because the branch moved is fetched, redone on top and pushed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.remote.BeforeNextPush(func() { b.remote.Commit(t, "apps/other.yaml", "other: true\n", "someone else's change") })
		res, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		assert.Equal(t, "committed", res.Outcome)
		log := b.remote.Log(t)
		require.Len(t, log, 3)
		assert.Contains(t, log[0], "portal-domains: apply portal.acme.com")
		assert.Equal(t, "someone else's change", log[1])
		_, ok := b.remote.Show(t, "apps/other.yaml")
		assert.True(t, ok, "the other writer's commit is kept")
		assert.Contains(t, b.logs.String(), "push rejected")
	})

	t.Run("the workdir follows the remote when someone else commits between changes", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		b.remote.Commit(t, "alga-psa/portal-domains/other.yaml", "x: 1\n", "hand edit")
		_, err = b.rec.Record(b.ctx, change(2, "portal.acme.net"))
		require.NoError(t, err)
		assert.Len(t, b.remote.Log(t), 4)
		_, ok := b.remote.Show(t, "alga-psa/portal-domains/other.yaml")
		assert.True(t, ok)
	})

	t.Run("the token is never in an error, a log line, a commit, the workdir's config or the remote", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.rec.Record(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		// A wrong token: the remote refuses.
		bad := b.cfg
		bad.Token = token + "-wrong"
		_, err = gitrecord.New(bad, slog.New(slog.NewJSONHandler(b.logs, nil))).Record(b.ctx, change(2, "portal.acme.com"))
		require.Error(t, err)
		assert.NotContains(t, err.Error(), token)
		assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), token)
		// An unreachable remote.
		b.remote.Down()
		_, err = b.rec.Record(b.ctx, change(3, "portal.acme.com"))
		require.Error(t, err)
		assert.NotContains(t, err.Error(), token)
		assert.NotContains(t, b.logs.String(), token)
		assert.NotContains(t, b.remote.Everything(t), token)
		gitConfig, err := os.ReadFile(filepath.Join(b.workdir, ".git", "config"))
		require.NoError(t, err)
		assert.NotContains(t, string(gitConfig), token)
		assert.NotContains(t, fmt.Sprintf("%+v", b.cfg.URL), token)
	})

	t.Run("an empty repository gets its first commit on the branch", func(t *testing.T) {
		t.Parallel()
		remote := gittest.ServeEmpty(t, token)
		cfg, err := gitrecord.ConfigFromEnv(env(map[string]string{"PORTAL_DOMAIN_GIT_REPO": remote.URL,
			"PORTAL_DOMAIN_GIT_WORKDIR": filepath.Join(t.TempDir(), "sync"), "GITHUB_ACCESS_TOKEN": token}))
		require.NoError(t, err)
		rec := gitrecord.New(cfg, slog.New(slog.DiscardHandler))
		res, err := rec.Record(t.Context(), change(1, "portal.acme.com"))
		require.NoError(t, err)
		assert.Equal(t, "committed", res.Outcome)
		require.Len(t, remote.Log(t), 1)
		_, ok := remote.Show(t, "alga-psa/portal-domains/3f2a9c1.yaml")
		assert.True(t, ok)
		res, err = rec.Record(t.Context(), change(2, "portal.acme.org"))
		require.NoError(t, err)
		assert.Equal(t, "committed", res.Outcome)
		require.Len(t, remote.Log(t), 2)
	})

	t.Run("an error that quotes the token is masked", func(t *testing.T) {
		t.Parallel()
		assert.Equal(t, "auth *** refused for ***", gitrecord.Mask("auth "+token+" refused for "+token, token))
	})
}

func TestReview(t *testing.T) {
	t.Parallel()
	const file = "alga-psa/portal-domains/3f2a9c1.yaml"
	review := func(t *testing.T) *bundle {
		b := setup(t)
		b.cfg.Review = true
		b.rec = gitrecord.New(b.cfg, slog.New(slog.NewJSONHandler(b.logs, nil)))
		return b
	}

	t.Run("a change goes to a branch of its own and is merged only by the reviewer", func(t *testing.T) {
		t.Parallel()
		b := review(t)
		c := change(1, "portal.acme.com")
		p, err := b.rec.Propose(b.ctx, c)
		require.NoError(t, err)
		assert.Equal(t, "portal-domains/3f2a9c1-1-apply", p.Branch)
		assert.False(t, p.Merged)
		assert.Equal(t, p.Commit, b.remote.Branch(t, p.Branch))
		got, ok := b.remote.ShowAt(t, p.Branch, file)
		require.True(t, ok)
		assert.Contains(t, got, "portal.acme.com")
		_, ok = b.remote.Show(t, file)
		assert.False(t, ok, "main is untouched before review")

		again, err := b.rec.Propose(b.ctx, c)
		require.NoError(t, err)
		assert.Equal(t, p, again, "proposing again leaves the branch as it is")

		b.remote.Merge(t, p.Branch)
		merged, err := b.rec.Propose(b.ctx, c)
		require.NoError(t, err)
		assert.True(t, merged.Merged)
		res, err := b.rec.Record(b.ctx, c)
		require.NoError(t, err)
		assert.Equal(t, "unchanged", res.Outcome, "after the merge the record has nothing to add")
		assert.Len(t, b.remote.Log(t), 3, "initial, the change, the merge")
	})

	t.Run("an equal file on main (a squash merge) counts as merged", func(t *testing.T) {
		t.Parallel()
		b := review(t)
		c := change(1, "portal.acme.com")
		p, err := b.rec.Propose(b.ctx, c)
		require.NoError(t, err)
		got, _ := b.remote.ShowAt(t, p.Branch, file)
		b.remote.Commit(t, file, got, "Add portal.acme.com (#12)")
		merged, err := b.rec.Propose(b.ctx, c)
		require.NoError(t, err)
		assert.True(t, merged.Merged)
	})

	t.Run("a removal under review is proposed, not pushed to main", func(t *testing.T) {
		t.Parallel()
		b := review(t)
		p, err := b.rec.Propose(b.ctx, change(1, "portal.acme.com"))
		require.NoError(t, err)
		b.remote.Merge(t, p.Branch)
		rm := change(2, "portal.acme.com")
		rm.Key, rm.Documents = "d0c5e7e2-0000-4000-8000-000000000001/2/remove", nil
		res, err := b.rec.Record(b.ctx, rm)
		require.NoError(t, err)
		assert.Equal(t, "proposed", res.Outcome)
		_, ok := b.remote.Show(t, file)
		assert.True(t, ok, "main keeps the file until the removal is merged")
		_, ok = b.remote.ShowAt(t, "portal-domains/3f2a9c1-2-remove", file)
		assert.False(t, ok)
	})
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	off, err := gitrecord.ConfigFromEnv(env(nil))
	require.NoError(t, err)
	assert.False(t, off.Enabled())

	on, err := gitrecord.ConfigFromEnv(env(map[string]string{"PORTAL_DOMAIN_GIT_REPO": "https://github.com/acme/kube-config.git", "GITHUB_ACCESS_TOKEN": token}))
	require.NoError(t, err)
	assert.Equal(t, gitrecord.Config{URL: "https://github.com/acme/kube-config.git", Branch: "main", Workdir: "/tmp/portal-domain-sync",
		Root: "alga-psa/portal-domains", AuthorName: "Portal Domains Bot", AuthorEmail: "platform@nineminds.ai",
		Username: "x-access-token", Token: token}, on)

	for name, vars := range map[string]map[string]string{
		"GITHUB_ACCESS_TOKEN: required": {"PORTAL_DOMAIN_GIT_REPO": "https://github.com/acme/kube-config.git"},
		"want an http(s) URL":           {"PORTAL_DOMAIN_GIT_REPO": "git@github.com:acme/kube-config.git", "GITHUB_ACCESS_TOKEN": token},
		"put no credentials in the URL": {"PORTAL_DOMAIN_GIT_REPO": "https://" + token + "@github.com/acme/kube-config.git", "GITHUB_ACCESS_TOKEN": token},
		"PORTAL_DOMAIN_GIT_BRANCH":      {"PORTAL_DOMAIN_GIT_REPO": "https://github.com/a/b.git", "GITHUB_ACCESS_TOKEN": token, "PORTAL_DOMAIN_GIT_BRANCH": "a..b"},
		"PORTAL_DOMAIN_GIT_ROOT":        {"PORTAL_DOMAIN_GIT_REPO": "https://github.com/a/b.git", "GITHUB_ACCESS_TOKEN": token, "PORTAL_DOMAIN_GIT_ROOT": "../up"},
		"PORTAL_DOMAIN_GIT_WORKDIR":     {"PORTAL_DOMAIN_GIT_REPO": "https://github.com/a/b.git", "GITHUB_ACCESS_TOKEN": token, "PORTAL_DOMAIN_GIT_WORKDIR": "rel"},
	} {
		_, err := gitrecord.ConfigFromEnv(env(vars))
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), name)
		assert.NotContains(t, err.Error(), token)
	}
}
