package telemetry_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/telemetry"
)

func TestNewLogger(t *testing.T) {
	t.Parallel()

	t.Run("JSONWithDomainAttrsAndSnakeCaseKeys", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		logger := telemetry.NewLogger(&buf, false, slog.LevelInfo)

		logger.With(telemetry.DomainAttrs("tenant-1", "domain-1")...).
			Info("dns verified", "jobID", 42, "HTTPStatus", 200, "already_snake", true, "kebab-key", "x")

		var line map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &line), "output: %s", buf.String())
		require.Equal(t, "dns verified", line["msg"])
		require.Equal(t, "INFO", line["level"])
		require.Equal(t, "tenant-1", line["tenant_id"])
		require.Equal(t, "domain-1", line["portal_domain_id"])
		require.EqualValues(t, 42, line["job_id"])
		require.EqualValues(t, 200, line["http_status"])
		require.Equal(t, true, line["already_snake"])
		require.Equal(t, "x", line["kebab_key"])
		require.NotContains(t, line, "jobID")
	})

	t.Run("LevelFiltersLowerLines", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		logger := telemetry.NewLogger(&buf, false, slog.LevelWarn)

		logger.Info("hidden")
		logger.Warn("shown")

		require.NotContains(t, buf.String(), "hidden")
		require.Contains(t, buf.String(), "shown")
	})

	t.Run("TerminalIsTextNotJSON", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		logger := telemetry.NewLogger(&buf, true, slog.LevelDebug)

		logger.Debug("probe ok", telemetry.DomainAttrs("tenant-1", "domain-1")...)

		out := buf.String()
		require.False(t, json.Valid([]byte(strings.TrimSpace(out))), "terminal output should not be JSON: %s", out)
		require.Contains(t, out, "probe ok")
		require.Contains(t, out, "tenant_id")
		require.Contains(t, out, "tenant-1")
		require.Contains(t, out, "portal_domain_id")
	})
}
