package telemetry

import (
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/lmittmann/tint"
)

// Log attribute keys shared by every line about a domain, so that one query
// (tenant_id = X) finds a tenant's whole story across workers and commands.
const (
	LogKeyTenantID = "tenant_id"
	LogKeyDomainID = "portal_domain_id"
)

// NewLogger returns the one logger the process injects everywhere. A human at
// a terminal gets tint's coloured text; anything else (a container, CI, a
// file) gets JSON, which log pipelines parse without guessing.
//
// Keys are rewritten to snake_case (jobID becomes job_id) so lines from
// libraries that use camelCase still query the same way as ours.
func NewLogger(w io.Writer, isTerminal bool, level slog.Level) *slog.Logger {
	if isTerminal {
		return slog.New(tint.NewHandler(w, &tint.Options{
			Level:       level,
			ReplaceAttr: snakeCaseKeys,
			TimeFormat:  time.TimeOnly,
		}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: snakeCaseKeys,
	}))
}

// DomainAttrs gives the attributes every log line about a domain carries.
// Use it as logger.With(telemetry.DomainAttrs(t, d)...) or append it to a
// single call's arguments.
func DomainAttrs(tenantID, domainID string) []any {
	return []any{
		slog.String(LogKeyTenantID, tenantID),
		slog.String(LogKeyDomainID, domainID),
	}
}

func snakeCaseKeys(_ []string, attr slog.Attr) slog.Attr {
	attr.Key = snakeCase(attr.Key)
	return attr
}

// snakeCase turns camelCase, PascalCase and kebab-case keys into snake_case,
// keeping runs of capitals together (jobID -> job_id, HTTPStatus ->
// http_status). Keys that are already snake_case come back unchanged without
// allocating, which is the common case on the logging hot path.
func snakeCase(key string) string {
	if !needsSnakeCase(key) {
		return key
	}
	runes := []rune(key)
	var b strings.Builder
	b.Grow(len(key) + 4)
	for i, r := range runes {
		switch {
		case r == '-' || r == ' ':
			b.WriteByte('_')
		case unicode.IsUpper(r):
			if i > 0 && runes[i-1] != '_' && runes[i-1] != '-' && runes[i-1] != ' ' {
				prevLower := unicode.IsLower(runes[i-1]) || unicode.IsDigit(runes[i-1])
				nextLower := i+1 < len(runes) && unicode.IsLower(runes[i+1])
				if prevLower || (unicode.IsUpper(runes[i-1]) && nextLower) {
					b.WriteByte('_')
				}
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func needsSnakeCase(key string) bool {
	for _, r := range key {
		if unicode.IsUpper(r) || r == '-' || r == ' ' {
			return true
		}
	}
	return false
}
