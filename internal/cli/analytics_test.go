package cli

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

type postHogEvent struct {
	Event      string         `json:"event"`
	DistinctID string         `json:"distinct_id"`
	Properties map[string]any `json:"properties"`
}

// fakePostHog records the batches posthog-go sends.
type fakePostHog struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []postHogEvent
}

func newFakePostHog(t *testing.T) *fakePostHog {
	f := &fakePostHog{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var batch struct {
			Batch []postHogEvent `json:"batch"`
		}
		if r.URL.Path != "/batch/" || json.Unmarshal(body, &batch) != nil {
			http.Error(w, "not a batch", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.events = append(f.events, batch.Batch...)
		f.mu.Unlock()
		_, _ = w.Write([]byte(`{"status":1}`))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// take returns the events received since the last call.
func (f *fakePostHog) take() []postHogEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.events
	f.events = nil
	return out
}

func TestCommandsSendPostHogEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ph := newFakePostHog(t)
	env := maps.Clone(b.env)
	env["POSTHOG_API_KEY"] = "phc_test"
	env["POSTHOG_ENDPOINT"] = ph.srv.URL
	const tenantB = "abc12345-0000-4000-8000-00000000000b"

	// Each command flushes its events before it returns.
	one := func(t *testing.T, args ...string) postHogEvent {
		t.Helper()
		res := cli(t, env, args...)
		require.Equal(t, 0, res.code, res.stderr)
		got := ph.take()
		require.Len(t, got, 1, "events after %v", args)
		return got[0]
	}
	none := func(t *testing.T, wantCode int, args ...string) {
		t.Helper()
		res := cli(t, env, args...)
		require.Equal(t, wantCode, res.code, res.stderr)
		require.Empty(t, ph.take(), "no event after %v", args)
	}

	ev := one(t, "register", "--tenant", tenantA, "--domain", "portal.acme.test", "--json")
	require.Equal(t, "portal_domain.registration_enqueued", ev.Event)
	require.Equal(t, tenantA, ev.DistinctID)
	require.Equal(t, tenantA, ev.Properties["tenant_id"])
	require.Equal(t, "portal.acme.test", ev.Properties["domain"])
	require.Equal(t, "cli", ev.Properties["trigger"])
	require.Equal(t, false, ev.Properties["was_update"])
	var id string
	require.NoError(t, b.schema.Pool.QueryRow(t.Context(), `SELECT id::text FROM portal_domains WHERE tenant = $1`, tenantA).Scan(&id))

	none(t, 0, "register", "--tenant", tenantA, "--domain", "portal.acme.test")
	none(t, 2, "register", "--tenant", tenantB, "--domain", "portal.acme.test")

	ev = one(t, "register", "--tenant", tenantA, "--domain", "portal2.acme.test")
	require.Equal(t, "portal_domain.registration_enqueued", ev.Event)
	require.Equal(t, "portal2.acme.test", ev.Properties["domain"])
	require.Equal(t, true, ev.Properties["was_update"])

	ev = one(t, "refresh", "--tenant", tenantA, "--domain-id", id)
	require.Equal(t, "portal_domain.refresh", ev.Event)
	require.Equal(t, id, ev.Properties["portal_domain_id"])
	require.Equal(t, "cli", ev.Properties["trigger"])
	require.Equal(t, tenantA, ev.Properties["tenant_id"])

	none(t, 2, "retry", "--tenant", tenantA, "--domain-id", id)

	ev = one(t, "disable", "--tenant", tenantA, "--domain-id", id)
	require.Equal(t, "portal_domain.disable", ev.Event)
	require.Equal(t, id, ev.Properties["portal_domain_id"])
	none(t, 0, "disable", "--tenant", tenantA, "--domain-id", id)

	// Walk the row to dns_failed the way the SaaS app's SQL would.
	for _, s := range []string{"pending_dns", "verifying_dns", "dns_failed"} {
		_, err := b.schema.Pool.Exec(t.Context(), `UPDATE portal_domains SET status = $2::portal_domain_status WHERE id = $1`, id, s)
		require.NoError(t, err)
	}
	ev = one(t, "retry", "--tenant", tenantA, "--domain-id", id)
	require.Equal(t, "portal_domain.retry", ev.Event)
	require.Equal(t, "dns_failed", ev.Properties["from_status"])
	require.Equal(t, id, ev.Properties["portal_domain_id"])

	t.Run("without an API key nothing is sent", func(t *testing.T) {
		res := cli(t, map[string]string{"DATABASE_URL": env["DATABASE_URL"], "PORTAL_DOMAIN_DNS_SERVERS": env["PORTAL_DOMAIN_DNS_SERVERS"],
			"PORTAL_DOMAIN_CANONICAL_SUFFIX": env["PORTAL_DOMAIN_CANONICAL_SUFFIX"], "POSTHOG_ENDPOINT": ph.srv.URL},
			"refresh", "--tenant", tenantA, "--domain-id", id)
		require.Equal(t, 0, res.code, res.stderr)
		require.Empty(t, ph.take())
	})
}
