package k8s_test

import (
	"testing"

	"github.com/portal-domains/portal-domains/k8s"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

// BenchmarkApply measures server-side apply of one domain's three objects
// against the real API server: "create" applies new domains, "noop"
// re-applies unchanged ones (what a refresh costs). It reports domains/s;
// there is no threshold to meet.
//
//	go test ./k8s -run '^$' -bench Apply -benchtime 200x
func BenchmarkApply(b *testing.B) {
	env := kubetest.Start(b)
	client, err := k8s.NewClient(env.Config)
	if err != nil {
		b.Fatal(err)
	}
	cfg := k8s.Config{CertNamespace: env.Namespace(b, "bench"), GatewayNamespace: env.Namespace(b, "bench-gw")}

	next := func(b *testing.B) k8s.Objects {
		objs, err := k8s.Render(newDomain(b), cfg)
		if err != nil {
			b.Fatal(err)
		}
		return objs
	}

	b.Run("create", func(b *testing.B) {
		b.SetParallelism(8) // 16 applies in flight on 2 CPUs
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Apply(b.Context(), next(b)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "domains/s")
	})

	b.Run("noop", func(b *testing.B) {
		objs := next(b)
		if _, err := client.Apply(b.Context(), objs); err != nil {
			b.Fatal(err)
		}
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Apply(b.Context(), objs); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "domains/s")
	})
}
