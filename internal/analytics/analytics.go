// Package analytics sends product events about portal domains to PostHog, so
// the SaaS team can see how tenants move through registration (how many
// register, how many activate, where they fail) next to the rest of the
// product's funnel.
//
// Analytics must never break provisioning: every method is fire-and-forget,
// a Client without an API key does nothing, and a nil *Client is usable.
package analytics

import (
	"cmp"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/posthog/posthog-go"
)

// Environment variables read by NewFromEnv.
const (
	EnvAPIKey   = "POSTHOG_API_KEY"
	EnvEndpoint = "POSTHOG_ENDPOINT"
)

// Event names. The first three are the runbook's; the rest complete the
// funnel with the same prefix.
const (
	EventRegistrationEnqueued = "portal_domain.registration_enqueued"
	EventRefresh              = "portal_domain.refresh"
	EventRetry                = "portal_domain.retry"
	EventDisable              = "portal_domain.disable"
	EventActivated            = "portal_domain.activated"
	EventFailed               = "portal_domain.failed"
)

// Client captures portal-domain events. The distinct id of every event is
// the tenant id: a domain belongs to one tenant, and that is the entity the
// product's funnels are keyed on.
type Client struct {
	ph     posthog.Client // nil when disabled
	logger *slog.Logger
}

// New returns a Client sending to endpoint (PostHog's default when empty).
// With an empty apiKey it returns a Client that does nothing, so
// development and CI need no PostHog.
func New(apiKey, endpoint string, logger *slog.Logger) (*Client, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "analytics")
	if strings.TrimSpace(apiKey) == "" {
		return &Client{logger: logger}, nil
	}
	ph, err := posthog.NewWithConfig(apiKey, posthog.Config{
		Endpoint: strings.TrimSuffix(cmp.Or(strings.TrimSpace(endpoint), posthog.DefaultEndpoint), "/"),
		Logger:   slogAdapter{logger},
		Callback: failureLogger{logger},
	})
	if err != nil {
		return nil, fmt.Errorf("analytics: create PostHog client: %w", err)
	}
	return &Client{ph: ph, logger: logger}, nil
}

// NewFromEnv is New with POSTHOG_API_KEY and POSTHOG_ENDPOINT read through
// getenv.
func NewFromEnv(getenv func(string) string, logger *slog.Logger) (*Client, error) {
	return New(getenv(EnvAPIKey), getenv(EnvEndpoint), logger)
}

// Enabled reports whether events are sent anywhere.
func (c *Client) Enabled() bool { return c != nil && c.ph != nil }

// RegistrationEnqueued records a registration (or a change of domain, when
// wasUpdate) whose first pipeline job was enqueued. trigger says who asked:
// e.g. "api", "sql", "cli".
func (c *Client) RegistrationEnqueued(tenantID, domain, trigger string, wasUpdate bool) {
	c.capture(tenantID, EventRegistrationEnqueued, posthog.NewProperties().
		Set("domain", domain).
		Set("trigger", trigger).
		Set("was_update", wasUpdate))
}

// Refresh records an operator or tenant forcing the pipeline to run again.
func (c *Client) Refresh(tenantID, domainID, trigger string) {
	c.capture(tenantID, EventRefresh, posthog.NewProperties().
		Set("portal_domain_id", domainID).
		Set("trigger", trigger))
}

// Retry records a retry of a failed domain; fromStatus is the failed status
// it left (dns_failed or certificate_failed).
func (c *Client) Retry(tenantID, domainID, fromStatus string) {
	c.capture(tenantID, EventRetry, posthog.NewProperties().
		Set("portal_domain_id", domainID).
		Set("from_status", fromStatus))
}

// Disable records a domain being disabled.
func (c *Client) Disable(tenantID, domainID, trigger string) {
	c.capture(tenantID, EventDisable, posthog.NewProperties().
		Set("portal_domain_id", domainID).
		Set("trigger", trigger))
}

// Activated records a domain going live, sinceRegistration after it was
// registered (the number the funnel cares about most).
func (c *Client) Activated(tenantID, domainID string, sinceRegistration time.Duration) {
	c.capture(tenantID, EventActivated, posthog.NewProperties().
		Set("portal_domain_id", domainID).
		Set("seconds_to_active", int64(sinceRegistration.Seconds())))
}

// Failed records a domain reaching a failed terminal status, with the
// tenant-facing reason.
func (c *Client) Failed(tenantID, domainID, status, reason string) {
	c.capture(tenantID, EventFailed, posthog.NewProperties().
		Set("portal_domain_id", domainID).
		Set("status", status).
		Set("reason", reason))
}

func (c *Client) capture(tenantID, event string, props posthog.Properties) {
	if !c.Enabled() {
		return
	}
	props.Set("tenant_id", tenantID)
	err := c.ph.Enqueue(posthog.Capture{
		DistinctId: tenantID,
		Event:      event,
		Properties: props,
	})
	if err != nil {
		// Not worth failing a job over: log and move on.
		c.logger.Warn("analytics: enqueue event", "event", event, "tenant_id", tenantID, "error", err)
	}
}

// Close sends buffered events and stops the client. Call it on shutdown, or
// the last few seconds of events are lost.
func (c *Client) Close() error {
	if !c.Enabled() {
		return nil
	}
	if err := c.ph.Close(); err != nil {
		return fmt.Errorf("analytics: close PostHog client: %w", err)
	}
	return nil
}

// slogAdapter routes posthog-go's own logging into the process logger.
type slogAdapter struct{ logger *slog.Logger }

func (a slogAdapter) Logf(format string, args ...any) {
	a.logger.Debug(fmt.Sprintf(format, args...))
}

func (a slogAdapter) Errorf(format string, args ...any) {
	a.logger.Warn(fmt.Sprintf(format, args...))
}

// failureLogger logs events PostHog finally dropped, so a wrong key or
// endpoint shows up in the logs rather than as a quiet gap in the funnel.
type failureLogger struct{ logger *slog.Logger }

func (f failureLogger) Success(posthog.APIMessage) {}

func (f failureLogger) Failure(msg posthog.APIMessage, err error) {
	event := ""
	if m, ok := msg.(posthog.CaptureInApi); ok {
		event = m.Event
	}
	f.logger.Warn("analytics: event dropped", "event", event, "error", err)
}
