// Package telemetry sets up what operators use to see the worker: structured
// logs (slog, tint on a terminal and JSON otherwise), OpenTelemetry traces
// (exported only when the standard OTEL_* variables ask for it) and Prometheus
// metrics registered on a caller-owned registry.
//
// Nothing here registers globals: the logger, tracer provider and registry are
// returned to the caller, which passes them to whatever needs them.
package telemetry
