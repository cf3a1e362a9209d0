package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/internal/probe"
	"github.com/portal-domains/portal-domains/k8s"
)

// nsBare holds the objects of row 3's baseline.
const nsBare = "bench-bare"

// bareOutsideWorkRate is row 3's baseline: the outside work of N domains
// with nothing of the pipeline around it — no database, no queue, no
// status or history. Each domain's DNS is checked (the same resolver
// code, loopback server and worker count as verify_dns), its three objects
// are server-side applied (as many goroutines as the kubernetes queue has
// workers), the DEV-ONLY issuer signs it and a Certificate watch (the
// worker's own, k8s.Client.WatchCertificates) reports Ready, then it is
// probed over HTTPS (as many goroutines as the probe queue has workers).
// What the row then compares is the pipeline's own cost: on two cores its
// database, River and bookkeeping share the CPUs with the API server.
func (b *bench) bareOutsideWorkRate(ctx context.Context, ds []benchDomain) (float64, error) {
	resolver, err := dns.NewResolver(dns.Config{Servers: []string{b.dns.Addr()}})
	if err != nil {
		return 0, err
	}
	cfg := k8s.Config{CertNamespace: nsBare, GatewayNamespace: nsBare, IssuerKind: "ClusterIssuer", IssuerName: issuerName}
	probeCfg := probe.Config{DialAddress: b.gateway.Addr(), CAFile: b.caFile}

	// Ready signals, by domain id, from one watch.
	ready := newReadySignals(ds)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- b.kube.WatchCertificates(watchCtx, func(id string, st k8s.CertStatus) {
			if st.IsReady() {
				ready.fire(id)
			}
		})
	}()
	defer func() {
		stopWatch()
		<-watchDone
	}()

	toApply := make(chan benchDomain, len(ds))
	toProbe := make(chan benchDomain, len(ds))
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	var last time.Time
	var lastMu sync.Mutex

	feed := make(chan benchDomain)
	g.Go(func() error {
		defer close(feed)
		for _, d := range ds {
			select {
			case feed <- d:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	var dnsWG, applyWG, probeWG sync.WaitGroup
	for range b.opts.DNSWorkers {
		dnsWG.Go(func() {
			for d := range feed {
				if r := resolver.Check(gctx, d.Name, d.Canonical, caaIdentity); r.Outcome != dns.OutcomeVerified {
					g.Go(func() error { return fmt.Errorf("DNS of %s: %s", d.Name, r.Message) })
					return
				}
				toApply <- d
			}
		})
	}
	g.Go(func() error { dnsWG.Wait(); close(toApply); return nil })
	var waiting sync.WaitGroup
	for range b.opts.KubeWorkers {
		applyWG.Go(func() {
			for d := range toApply {
				objs, err := k8s.Render(d.k8s(), cfg)
				if err == nil {
					_, err = b.kube.Apply(gctx, objs)
				}
				if err != nil {
					g.Go(func() error { return fmt.Errorf("apply %s: %w", d.Name, err) })
					return
				}
				// Waiting for Ready holds no apply slot, as the pipeline's
				// await job does not.
				waiting.Go(func() {
					if ready.wait(gctx, d.ID) {
						toProbe <- d
					}
				})
			}
		})
	}
	g.Go(func() error { applyWG.Wait(); waiting.Wait(); close(toProbe); return nil })
	for range b.opts.ProbeWorkers {
		probeWG.Go(func() {
			for d := range toProbe {
				if res := probe.Probe(gctx, probeCfg, d.Name); !res.OK {
					g.Go(func() error { return fmt.Errorf("probe %s: %s", d.Name, res.Message) })
					return
				}
				lastMu.Lock()
				last = time.Now()
				lastMu.Unlock()
			}
		})
	}
	g.Go(func() error { probeWG.Wait(); return nil })
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if n := ready.fired(); n != len(ds) {
		return 0, fmt.Errorf("bare baseline: %d of %d certificates became Ready", n, len(ds))
	}
	if last.IsZero() {
		return 0, errors.New("bare baseline: nothing was probed")
	}
	return perSecond(len(ds), last.Sub(start)), nil
}

// readySignals turns Certificate watch callbacks into one closed channel
// per domain.
type readySignals struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
	count int
}

func newReadySignals(ds []benchDomain) *readySignals {
	r := &readySignals{chans: make(map[string]chan struct{}, len(ds))}
	for _, d := range ds {
		r.chans[d.ID] = make(chan struct{})
	}
	return r
}

func (r *readySignals) fire(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.chans[id]
	if !ok {
		return
	}
	select {
	case <-ch:
	default:
		close(ch)
		r.count++
	}
}

func (r *readySignals) wait(ctx context.Context, id string) bool {
	r.mu.Lock()
	ch := r.chans[id]
	r.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *readySignals) fired() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}
