package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/portal-domains/portal-domains/internal/telemetry"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func spanAttrs(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

func TestStartDomainSpan(t *testing.T) {
	t.Parallel()

	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	tracer := tp.Tracer(telemetry.TracerName)

	ctx, span := telemetry.StartDomainSpan(context.Background(), tracer, "verify_dns", "tenant-1", "domain-1",
		attribute.String("domain", "portal.acme.com"))
	require.True(t, trace.SpanFromContext(ctx).SpanContext().Equal(span.SpanContext()), "returned context carries the span")
	span.End()

	ended := recorder.Ended()
	require.Len(t, ended, 1)
	require.Equal(t, "verify_dns", ended[0].Name())
	require.Equal(t, map[string]string{
		"tenantId":       "tenant-1",
		"portalDomainId": "domain-1",
		"domain":         "portal.acme.com",
	}, spanAttrs(ended[0].Attributes()))
}

func TestRiverMiddleware(t *testing.T) {
	t.Parallel()

	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	mw := telemetry.RiverMiddleware(tp)

	// The plugin must be usable where River expects middleware and hooks.
	var _ rivertype.Plugin = mw
	var _ rivertype.WorkerMiddleware = mw
	var _ rivertype.JobInsertMiddleware = mw

	ctx := context.Background()

	t.Run("InsertCarriesTraceContextIntoMetadata", func(t *testing.T) {
		t.Parallel()
		parentCtx, parent := tp.Tracer("test").Start(ctx, "register")
		defer parent.End()

		params := []*rivertype.JobInsertParams{{Kind: "verify_dns", EncodedArgs: []byte(`{}`)}}
		_, err := mw.InsertMany(parentCtx, params, func(context.Context) ([]*rivertype.JobInsertResult, error) {
			return []*rivertype.JobInsertResult{{Job: &rivertype.JobRow{Kind: "verify_dns"}}}, nil
		})
		require.NoError(t, err)
		require.Contains(t, string(params[0].Metadata), "traceparent")
		require.Contains(t, string(params[0].Metadata), parent.SpanContext().TraceID().String())
	})

	t.Run("WorkSpanIsNamedByKindAndParentsDomainSpans", func(t *testing.T) {
		t.Parallel()
		job := &rivertype.JobRow{ID: 7, Kind: "verify_dns_work_test", Queue: "dns", Attempt: 1}
		var child trace.SpanContext
		err := mw.Work(ctx, job, func(ctx context.Context) error {
			_, span := telemetry.StartDomainSpan(ctx, tp.Tracer(telemetry.TracerName), "dns.lookup", "tenant-1", "domain-1")
			child = span.SpanContext()
			span.End()
			return errors.New("resolver timeout")
		})
		require.EqualError(t, err, "resolver timeout")

		var work, lookup sdktrace.ReadOnlySpan
		for _, s := range recorder.Ended() {
			switch {
			case s.Name() == "river.work/verify_dns_work_test":
				work = s
			case s.SpanContext().Equal(child):
				lookup = s
			}
		}
		require.NotNil(t, work, "work span recorded")
		require.NotNil(t, lookup, "domain span recorded")
		require.Equal(t, work.SpanContext().SpanID(), lookup.Parent().SpanID())
		require.Equal(t, "tenant-1", spanAttrs(lookup.Attributes())["tenantId"])
	})
}

func TestSetupTracing(t *testing.T) {
	t.Parallel()

	ctx := context.Background()

	t.Run("NoopWithoutEndpoint", func(t *testing.T) {
		t.Parallel()
		tp, shutdown, err := telemetry.SetupTracing(ctx, envMap(nil))
		require.NoError(t, err)
		_, span := tp.Tracer("x").Start(ctx, "s")
		require.False(t, span.IsRecording())
		span.End()
		require.NoError(t, shutdown(ctx))
	})

	t.Run("NoopWhenExporterNoneOrSDKDisabled", func(t *testing.T) {
		t.Parallel()
		for _, env := range []map[string]string{
			{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
			{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		} {
			tp, shutdown, err := telemetry.SetupTracing(ctx, envMap(env))
			require.NoError(t, err)
			_, span := tp.Tracer("x").Start(ctx, "s")
			require.False(t, span.IsRecording(), "env %v", env)
			require.NoError(t, shutdown(ctx))
		}
	})

	t.Run("RejectsUnsupportedSettings", func(t *testing.T) {
		t.Parallel()
		_, _, err := telemetry.SetupTracing(ctx, envMap(map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}))
		require.ErrorContains(t, err, `OTEL_TRACES_EXPORTER="zipkin" is not supported`)

		_, _, err = telemetry.SetupTracing(ctx, envMap(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
		}))
		require.ErrorContains(t, err, `OTLP protocol "http/json" is not supported`)

		_, _, err = telemetry.SetupTracing(ctx, envMap(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_HEADERS":  "no-equals-sign",
		}))
		require.ErrorContains(t, err, "parse OTLP headers")
	})

	t.Run("ExportsOverHTTPToGenericEndpoint", func(t *testing.T) {
		t.Parallel()
		collector := newHTTPCollector(t)

		tp, shutdown, err := telemetry.SetupTracing(ctx, envMap(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": collector.server.URL,
			"OTEL_EXPORTER_OTLP_HEADERS":  "x-api-key=s%20ecret",
			"OTEL_SERVICE_NAME":           "portal-domains-test",
			"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment=ci",
		}))
		require.NoError(t, err)

		_, span := telemetry.StartDomainSpan(ctx, tp.Tracer(telemetry.TracerName), "apply", "tenant-1", "domain-1")
		span.End()
		require.NoError(t, shutdown(ctx), "shutdown flushes the batch")

		req := collector.only(t)
		require.Equal(t, "/v1/traces", req.path)
		require.Equal(t, "s ecret", req.header.Get("x-api-key"))
		assertExported(t, req.body, "apply", map[string]string{
			"service.name":           "portal-domains-test",
			"deployment.environment": "ci",
		})
	})

	t.Run("ExportsOverHTTPToTracesEndpointAsIs", func(t *testing.T) {
		t.Parallel()
		collector := newHTTPCollector(t)

		tp, shutdown, err := telemetry.SetupTracing(ctx, envMap(map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.server.URL + "/custom/traces",
		}))
		require.NoError(t, err)
		_, span := telemetry.StartDomainSpan(ctx, tp.Tracer(telemetry.TracerName), "probe", "tenant-1", "domain-1")
		span.End()
		require.NoError(t, shutdown(ctx))

		req := collector.only(t)
		require.Equal(t, "/custom/traces", req.path)
		assertExported(t, req.body, "probe", map[string]string{"service.name": telemetry.DefaultServiceName})
	})

	t.Run("ExportsOverGRPC", func(t *testing.T) {
		t.Parallel()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := grpc.NewServer()
		rec := &grpcCollector{}
		collectortrace.RegisterTraceServiceServer(srv, rec)
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)

		tp, shutdown, err := telemetry.SetupTracing(ctx, envMap(map[string]string{
			"OTEL_TRACES_EXPORTER":        "otlp",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + lis.Addr().String(),
			"OTEL_EXPORTER_OTLP_HEADERS":  "x-api-key=grpc-secret",
		}))
		require.NoError(t, err)
		_, span := telemetry.StartDomainSpan(ctx, tp.Tracer(telemetry.TracerName), "await_certificate", "tenant-1", "domain-1")
		span.End()
		require.NoError(t, shutdown(ctx))

		rec.mu.Lock()
		defer rec.mu.Unlock()
		require.Len(t, rec.requests, 1)
		require.Equal(t, []string{"grpc-secret"}, rec.headers[0].Get("x-api-key"))
		body, err := proto.Marshal(rec.requests[0])
		require.NoError(t, err)
		assertExported(t, body, "await_certificate", map[string]string{"service.name": telemetry.DefaultServiceName})
	})
}

type recordedRequest struct {
	path   string
	header http.Header
	body   []byte
}

type httpCollector struct {
	server   *httptest.Server
	mu       sync.Mutex
	requests []recordedRequest
}

func newHTTPCollector(t *testing.T) *httpCollector {
	t.Helper()
	c := &httpCollector{}
	c.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.requests = append(c.requests, recordedRequest{path: r.URL.Path, header: r.Header.Clone(), body: body})
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.server.Close)
	return c
}

func (c *httpCollector) only(t *testing.T) recordedRequest {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.requests, 1)
	return c.requests[0]
}

type grpcCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
	headers  []metadata.MD
}

func (g *grpcCollector) Export(ctx context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, req)
	g.headers = append(g.headers, md)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// assertExported decodes an OTLP export request and checks that it holds
// exactly one span, with the domain attributes and the wanted resource
// attributes.
func assertExported(t *testing.T, body []byte, spanName string, wantResource map[string]string) {
	t.Helper()
	var req collectortrace.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(body, &req))
	require.Len(t, req.ResourceSpans, 1)
	rs := req.ResourceSpans[0]

	resAttrs := map[string]string{}
	for _, kv := range rs.Resource.Attributes {
		resAttrs[kv.Key] = kv.Value.GetStringValue()
	}
	for k, v := range wantResource {
		require.Equal(t, v, resAttrs[k], "resource attribute %s", k)
	}

	var spans []*tracepb.Span
	for _, ss := range rs.ScopeSpans {
		spans = append(spans, ss.Spans...)
	}
	require.Len(t, spans, 1)
	require.Equal(t, spanName, spans[0].Name)
	attrs := map[string]string{}
	for _, kv := range spans[0].Attributes {
		attrs[kv.Key] = kv.Value.GetStringValue()
	}
	require.Equal(t, map[string]string{"tenantId": "tenant-1", "portalDomainId": "domain-1"}, attrs)
}
