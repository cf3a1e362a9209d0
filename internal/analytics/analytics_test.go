package analytics_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/analytics"
)

type capturedEvent struct {
	Type       string         `json:"type"`
	Event      string         `json:"event"`
	DistinctID string         `json:"distinct_id"`
	Properties map[string]any `json:"properties"`
}

type fakePostHog struct {
	server *httptest.Server
	status int

	mu       sync.Mutex
	paths    []string
	apiKeys  []string
	captured []capturedEvent
}

// newFakePostHog records the batch requests the real posthog-go client sends.
func newFakePostHog(t *testing.T, status int) *fakePostHog {
	t.Helper()
	f := &fakePostHog{status: status}
	f.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var batch struct {
			APIKey string          `json:"api_key"`
			Batch  []capturedEvent `json:"batch"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.paths = append(f.paths, r.Method+" "+r.URL.Path)
		f.apiKeys = append(f.apiKeys, batch.APIKey)
		f.captured = append(f.captured, batch.Batch...)
		f.mu.Unlock()
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(`{"status":1}`))
	}))
	t.Cleanup(f.server.Close)
	return f
}

func TestClient(t *testing.T) {
	t.Parallel()

	t.Run("SendsEveryEventWithTenantAsDistinctID", func(t *testing.T) {
		t.Parallel()
		ph := newFakePostHog(t, http.StatusOK)
		client, err := analytics.New("phc_test_key", ph.server.URL+"/", nil)
		require.NoError(t, err)
		require.True(t, client.Enabled())

		client.RegistrationEnqueued("tenant-1", "portal.acme.com", "api", false)
		client.RegistrationEnqueued("tenant-1", "portal2.acme.com", "sql", true)
		client.Refresh("tenant-1", "domain-1", "cli")
		client.Retry("tenant-1", "domain-1", "dns_failed")
		client.Disable("tenant-2", "domain-2", "api")
		client.Activated("tenant-1", "domain-1", 5*time.Minute)
		client.Failed("tenant-3", "domain-3", "certificate_failed", "CAA forbids letsencrypt.org")
		require.NoError(t, client.Close(), "close flushes")

		ph.mu.Lock()
		defer ph.mu.Unlock()
		require.NotEmpty(t, ph.paths)
		for i := range ph.paths {
			require.Equal(t, "POST /batch/", ph.paths[i])
			require.Equal(t, "phc_test_key", ph.apiKeys[i])
		}

		type want struct {
			event, distinctID string
			props             map[string]any
		}
		wants := []want{
			{analytics.EventRegistrationEnqueued, "tenant-1", map[string]any{"tenant_id": "tenant-1", "domain": "portal.acme.com", "trigger": "api", "was_update": false}},
			{analytics.EventRegistrationEnqueued, "tenant-1", map[string]any{"tenant_id": "tenant-1", "domain": "portal2.acme.com", "trigger": "sql", "was_update": true}},
			{analytics.EventRefresh, "tenant-1", map[string]any{"tenant_id": "tenant-1", "portal_domain_id": "domain-1", "trigger": "cli"}},
			{analytics.EventRetry, "tenant-1", map[string]any{"tenant_id": "tenant-1", "portal_domain_id": "domain-1", "from_status": "dns_failed"}},
			{analytics.EventDisable, "tenant-2", map[string]any{"tenant_id": "tenant-2", "portal_domain_id": "domain-2", "trigger": "api"}},
			{analytics.EventActivated, "tenant-1", map[string]any{"tenant_id": "tenant-1", "portal_domain_id": "domain-1", "seconds_to_active": float64(300)}},
			{analytics.EventFailed, "tenant-3", map[string]any{"tenant_id": "tenant-3", "portal_domain_id": "domain-3", "status": "certificate_failed", "reason": "CAA forbids letsencrypt.org"}},
		}
		require.Len(t, ph.captured, len(wants))
		for i, w := range wants {
			got := ph.captured[i]
			require.Equal(t, "capture", got.Type, w.event)
			require.Equal(t, w.event, got.Event)
			require.Equal(t, w.distinctID, got.DistinctID, w.event)
			for k, v := range w.props {
				require.Equal(t, v, got.Properties[k], "%s property %s", w.event, k)
			}
		}
		require.Equal(t, []string{
			"portal_domain.registration_enqueued",
			"portal_domain.registration_enqueued",
			"portal_domain.refresh",
			"portal_domain.retry",
			"portal_domain.disable",
			"portal_domain.activated",
			"portal_domain.failed",
		}, func() []string {
			var names []string
			for _, c := range ph.captured {
				names = append(names, c.Event)
			}
			return names
		}(), "the runbook's event names")
	})

	t.Run("NoKeyIsANoOp", func(t *testing.T) {
		t.Parallel()
		ph := newFakePostHog(t, http.StatusOK)
		client, err := analytics.New("", ph.server.URL, nil)
		require.NoError(t, err)
		require.False(t, client.Enabled())
		client.RegistrationEnqueued("tenant-1", "portal.acme.com", "api", false)
		client.Failed("tenant-1", "domain-1", "dns_failed", "no CNAME")
		require.NoError(t, client.Close())

		ph.mu.Lock()
		defer ph.mu.Unlock()
		require.Empty(t, ph.paths)
	})

	t.Run("NilClientIsANoOp", func(t *testing.T) {
		t.Parallel()
		var client *analytics.Client
		require.False(t, client.Enabled())
		client.Activated("tenant-1", "domain-1", time.Minute)
		require.NoError(t, client.Close())
	})

	t.Run("FromEnv", func(t *testing.T) {
		t.Parallel()
		ph := newFakePostHog(t, http.StatusOK)
		env := map[string]string{"POSTHOG_API_KEY": "phc_env", "POSTHOG_ENDPOINT": ph.server.URL}
		client, err := analytics.NewFromEnv(func(k string) string { return env[k] }, nil)
		require.NoError(t, err)
		client.Disable("tenant-9", "domain-9", "cli")
		require.NoError(t, client.Close())

		ph.mu.Lock()
		defer ph.mu.Unlock()
		require.Equal(t, []string{"phc_env"}, ph.apiKeys)
		require.Len(t, ph.captured, 1)
		require.Equal(t, "tenant-9", ph.captured[0].DistinctID)
	})

	t.Run("DroppedEventsAreLogged", func(t *testing.T) {
		t.Parallel()
		ph := newFakePostHog(t, http.StatusInternalServerError)
		var mu sync.Mutex
		var logs bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
		client, err := analytics.New("phc_test_key", ph.server.URL, logger)
		require.NoError(t, err)

		client.Refresh("tenant-1", "domain-1", "cli")
		require.NoError(t, client.Close())

		mu.Lock()
		defer mu.Unlock()
		require.Contains(t, logs.String(), `"msg":"analytics: event dropped"`)
		require.Contains(t, logs.String(), `"event":"portal_domain.refresh"`)
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
