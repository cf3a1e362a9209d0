package telemetry

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/riverqueue/rivercontrib/otelriver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Span attribute keys. The runbook names them in camelCase (tenantId,
// portalDomainId), and dashboards built from it filter on exactly these, so
// spans keep the runbook's spelling even though log keys are snake_case.
const (
	SpanKeyTenantID = "tenantId"
	SpanKeyDomainID = "portalDomainId"
)

// DefaultServiceName is the service.name resource attribute when
// OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "portal-domains"

// TracerName is the instrumentation scope for the project's own spans.
const TracerName = "github.com/portal-domains/portal-domains"

// SetupTracing builds the process's tracer provider from the standard
// OpenTelemetry environment variables, read through env so tests and the CLI
// can pass their own environment.
//
// Export happens only when it is asked for: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or OTEL_TRACES_EXPORTER=otlp.
// Otherwise (or with OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true) the
// provider is a no-op, so a developer laptop or CI never tries to reach a
// collector that is not there. OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL picks
// http/protobuf (the default) or grpc; OTEL_EXPORTER_OTLP[_TRACES]_HEADERS,
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are honoured too.
//
// The provider is returned rather than installed globally; shutdown flushes
// buffered spans and must be called before the process exits.
func SetupTracing(ctx context.Context, env func(string) string) (trace.TracerProvider, func(context.Context) error, error) {
	noopShutdown := func(context.Context) error { return nil }
	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") {
		return tracenoop.NewTracerProvider(), noopShutdown, nil
	}

	tracesEndpoint := strings.TrimSpace(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	endpoint := strings.TrimSpace(env("OTEL_EXPORTER_OTLP_ENDPOINT"))
	switch exporter := strings.ToLower(strings.TrimSpace(env("OTEL_TRACES_EXPORTER"))); exporter {
	case "none":
		return tracenoop.NewTracerProvider(), noopShutdown, nil
	case "":
		if tracesEndpoint == "" && endpoint == "" {
			return tracenoop.NewTracerProvider(), noopShutdown, nil
		}
	case "otlp":
	default:
		return nil, nil, fmt.Errorf("setup tracing: OTEL_TRACES_EXPORTER=%q is not supported (use otlp or none)", exporter)
	}

	protocol := strings.TrimSpace(cmp.Or(env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), env("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf"))
	headers, err := parseKeyValues(cmp.Or(env("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), env("OTEL_EXPORTER_OTLP_HEADERS")))
	if err != nil {
		return nil, nil, fmt.Errorf("setup tracing: parse OTLP headers: %w", err)
	}

	var exporter sdktrace.SpanExporter
	switch protocol {
	case "http/protobuf":
		var opts []otlptracehttp.Option
		switch {
		case tracesEndpoint != "":
			// The signal-specific endpoint is used as is, per the spec.
			opts = append(opts, otlptracehttp.WithEndpointURL(tracesEndpoint))
		case endpoint != "":
			// The generic endpoint is a base URL: the signal path is appended.
			opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(endpoint, "/")+"/v1/traces"))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(headers))
		}
		exporter, err = otlptracehttp.New(ctx, opts...)
	case "grpc":
		var opts []otlptracegrpc.Option
		if e := cmp.Or(tracesEndpoint, endpoint); e != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(e))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		exporter, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, nil, fmt.Errorf("setup tracing: OTLP protocol %q is not supported (use http/protobuf or grpc)", protocol)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("setup tracing: create %s exporter: %w", protocol, err)
	}

	res, err := tracingResource(ctx, env)
	if err != nil {
		return nil, nil, fmt.Errorf("setup tracing: %w", err)
	}

	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
	)
	shutdown := func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("shutdown tracer provider: %w", err)
		}
		return nil
	}
	return tp, shutdown, nil
}

func tracingResource(ctx context.Context, env func(string) string) (*resource.Resource, error) {
	attrs, err := parseKeyValues(env("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return nil, fmt.Errorf("parse OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	kvs := make([]attribute.KeyValue, 0, len(attrs)+1)
	for k, v := range attrs {
		kvs = append(kvs, attribute.String(k, v))
	}
	serviceName := cmp.Or(strings.TrimSpace(env("OTEL_SERVICE_NAME")), attrs["service.name"], DefaultServiceName)
	kvs = append(kvs, attribute.String("service.name", serviceName))
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(kvs...))
	if err != nil {
		return nil, fmt.Errorf("build resource: %w", err)
	}
	return res, nil
}

// parseKeyValues reads the OTEL "k1=v1,k2=v2" list format (values may be
// percent-encoded), as used by OTEL_RESOURCE_ATTRIBUTES and the OTLP headers.
func parseKeyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("entry %q is not key=value", pair)
		}
		decoded, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("decode value of %q: %w", k, err)
		}
		out[k] = decoded
	}
	return out, nil
}

// StartDomainSpan starts a span about one domain, tagged with the runbook's
// tenantId and portalDomainId so a trace search by either finds every stage
// of that domain. The caller ends the span.
func StartDomainSpan(ctx context.Context, tracer trace.Tracer, name, tenantID, domainID string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	all := make([]attribute.KeyValue, 0, len(attrs)+2)
	all = append(all, attribute.String(SpanKeyTenantID, tenantID), attribute.String(SpanKeyDomainID, domainID))
	all = append(all, attrs...)
	return tracer.Start(ctx, name, trace.WithAttributes(all...))
}

// RiverMiddleware returns River's OpenTelemetry plugin bound to tp; put it in
// river.Config.Plugins so it wraps both inserts and work. Work spans are named
// river.work/<kind> so a trace list shows the stage at a glance, and the
// enqueuing span's context is stored in job metadata and linked from the work
// span, which ties a registration to the jobs it caused.
//
// River's OpenTelemetry metrics are sent to a no-op meter: the project's
// metrics are Prometheus (see Metrics), and otelriver would otherwise fall
// back to the global meter provider.
func RiverMiddleware(tp trace.TracerProvider) *otelriver.Middleware {
	return otelriver.NewMiddleware(&otelriver.MiddlewareConfig{
		EnableTracePropagation:      true,
		EnableWorkSpanJobKindSuffix: true,
		MeterProvider:               metricnoop.NewMeterProvider(),
		TracerProvider:              tp,
	})
}
