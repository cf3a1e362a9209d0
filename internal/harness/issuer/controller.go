package issuer

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/portal-domains/portal-domains/k8s"
)

// FieldManager owns what the Controller writes (the TLS Secret and the
// Certificate status), so `kubectl get -o yaml --show-managed-fields` says
// who wrote it.
const FieldManager = "portal-domains-dev-issuer"

// Controller is a DEV-ONLY stand-in for cert-manager, so the pipeline can
// reach active without a cluster, an ACME account or a public domain. It
// watches the Certificates the worker applies and, for each one naming its
// issuer, signs a certificate for spec.dnsNames with the dev CA, writes the
// kubernetes.io/tls Secret (Issue) and marks the Certificate Ready for its
// current generation (MarkReady), as cert-manager does. The dev stack runs
// it against a real cluster only when PORTAL_DOMAIN_DEV_ISSUER=1 says so.
type Controller struct {
	Dynamic dynamic.Interface
	CA      *CA
	// IssuerKind and IssuerName: only Certificates whose issuerRef names
	// this issuer are handled (the worker renders its configured issuer),
	// so other Certificates in a shared cluster are left alone.
	IssuerKind, IssuerName string
	// Delay is how long a Certificate shows as Issuing before it is
	// signed, so the demo's certificate_issuing stage is visible; zero
	// signs at once.
	Delay time.Duration
	// Resync is how often every Certificate is checked again, which
	// re-issues one whose Secret was deleted by hand: zero means
	// DefaultResync, a negative value never. Each check reads the
	// Certificate's Secret from the API server, so the bench turns it off:
	// it deletes no Secrets, and the checks would load the API server more
	// the longer a phase runs, against the slower side of a comparison.
	Resync time.Duration
	// Workers is how many Certificates are signed at once; zero means
	// DefaultWorkers.
	Workers int
	Logger  *slog.Logger
	// OnIssued, when set, hears about each signed certificate.
	OnIssued func(namespace, name string, dnsNames []string)
}

// The Controller's defaults: its re-check period unless Resync says
// otherwise, and how many Certificates it signs at once unless Workers
// does.
const (
	DefaultResync  = 30 * time.Second
	DefaultWorkers = 2
)

// resyncPeriod is Resync as the informer takes it (0: never).
func (c *Controller) resyncPeriod() time.Duration {
	switch {
	case c.Resync < 0:
		return 0
	case c.Resync == 0:
		return DefaultResync
	}
	return c.Resync
}

// Run watches Certificates until ctx is done, then returns nil.
func (c *Controller) Run(ctx context.Context) error {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "dev-issuer")
	logger.Warn("DEV-ONLY issuer is playing cert-manager: Certificates are signed by a throwaway local CA",
		"issuer_kind", c.IssuerKind, "issuer_name", c.IssuerName)

	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "dev-issuer"})
	// A resync re-checks every Certificate now and then, which re-issues
	// one whose Secret was deleted by hand.
	inf := dynamicinformer.NewFilteredDynamicInformer(c.Dynamic, k8s.CertificateGVR, metav1.NamespaceAll, c.resyncPeriod(),
		cache.Indexers{}, func(o *metav1.ListOptions) { o.LabelSelector = k8s.ManagedSelector })
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("dev issuer: watch certificates: %w", err)
	}
	informerDone := make(chan struct{})
	go func() {
		defer close(informerDone)
		inf.Informer().RunWithContext(ctx)
	}()
	defer func() {
		queue.ShutDown()
		<-informerDone
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return nil // ctx ended first
	}

	r := &issueRun{Controller: c, logger: logger, lister: inf.Lister(), issuing: map[string]time.Time{}}
	var wg sync.WaitGroup
	for range cmp.Or(c.Workers, DefaultWorkers) {
		wg.Go(func() {
			for {
				key, shutdown := queue.Get()
				if shutdown {
					return
				}
				again, err := r.sync(ctx, key)
				switch {
				case err != nil && ctx.Err() == nil:
					logger.Warn("DEV-ONLY issuer could not issue; retrying", "certificate", key, "error", err)
					queue.AddRateLimited(key)
				case again > 0:
					queue.Forget(key)
					queue.AddAfter(key, again)
				default:
					queue.Forget(key)
				}
				queue.Done(key)
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	return nil
}

// issueRun is one Run's state.
type issueRun struct {
	*Controller
	logger  *slog.Logger
	lister  cache.GenericLister
	mu      sync.Mutex
	issuing map[string]time.Time // key -> when it was marked Issuing
}

// sync brings one Certificate to Ready; again > 0 asks to be called again
// after that long (the Delay).
func (r *issueRun) sync(ctx context.Context, key string) (again time.Duration, err error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	obj, err := r.lister.ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	cert, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return 0, nil
	}
	spec := SpecOf(cert)
	if !spec.namesIssuer(r.IssuerKind, r.IssuerName) {
		return 0, nil
	}
	if spec.SecretName == "" || len(spec.DNSNames) == 0 {
		r.logger.Warn("DEV-ONLY issuer skips a Certificate without secretName or dnsNames", "certificate", key)
		return 0, nil
	}
	// The Secret matters only to tell an issued certificate that still
	// serves from one to (re-)issue, and for the Issuing message; a new
	// Certificate is signed without reading it. Reads come from the API
	// server's watch cache: a stale answer only means signing again.
	var secret *unstructured.Unstructured
	if ReadyForGeneration(cert) || r.Delay > 0 {
		secret, err = r.Dynamic.Resource(k8s.SecretGVR).Namespace(ns).Get(ctx, spec.SecretName, metav1.GetOptions{ResourceVersion: "0"})
		if apierrors.IsNotFound(err) {
			secret, err = nil, nil
		}
		if err != nil {
			return 0, fmt.Errorf("get Secret %s/%s: %w", ns, spec.SecretName, err)
		}
		if ReadyForGeneration(cert) && SecretServes(secret, r.CA, spec.DNSNames) {
			r.forget(key)
			return 0, nil
		}
	}

	if r.Delay > 0 {
		r.mu.Lock()
		since, marked := r.issuing[key]
		if !marked {
			r.issuing[key] = time.Now()
		}
		r.mu.Unlock()
		if !marked {
			if err := r.markIssuing(ctx, cert, secret == nil, spec.DNSNames); err != nil {
				r.forget(key)
				return 0, err
			}
			return r.Delay, nil
		}
		if wait := r.Delay - time.Since(since); wait > 0 {
			return wait, nil
		}
	}
	if err := r.issue(ctx, cert, spec); err != nil {
		return 0, err
	}
	r.forget(key)
	r.logger.Info("DEV-ONLY issuer signed a certificate with the local dev CA", "certificate", key,
		"secret", spec.SecretName, "dns_names", spec.DNSNames)
	if r.OnIssued != nil {
		r.OnIssued(ns, name, spec.DNSNames)
	}
	return 0, nil
}

func (r *issueRun) forget(key string) {
	r.mu.Lock()
	delete(r.issuing, key)
	r.mu.Unlock()
}

// markIssuing sets Issuing=True (and Ready=False DoesNotExist when there
// is no Secret yet) for the Delay before signing.
func (r *issueRun) markIssuing(ctx context.Context, cert *unstructured.Unstructured, noSecret bool, dnsNames []string) error {
	reason, msg := "Reissuing", "DEV-ONLY issuer: signing a certificate for "+strings.Join(dnsNames, ", ")+" with the local dev CA"
	if noSecret {
		reason, msg = "DoesNotExist", "Issuing certificate as Secret does not exist (DEV-ONLY issuer)"
	}
	return UpdateStatus(ctx, r.Dynamic, cert.GetNamespace(), cert.GetName(), cert, FieldManager,
		func(cert *unstructured.Unstructured, status map[string]any) {
			MarkIssuing(cert, status, time.Now(), reason, msg)
		})
}

// issue signs, writes the Secret, then marks the Certificate Ready.
func (r *issueRun) issue(ctx context.Context, cert *unstructured.Unstructured, spec Spec) error {
	now := time.Now()
	secret, _, err := Issue(r.CA, cert, now)
	if err != nil {
		return err
	}
	ns := cert.GetNamespace()
	if _, err := r.Dynamic.Resource(k8s.SecretGVR).Namespace(ns).Apply(ctx, spec.SecretName, secret,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("write Secret %s/%s: %w", ns, spec.SecretName, err)
	}
	return UpdateStatus(ctx, r.Dynamic, ns, cert.GetName(), cert, FieldManager, func(c *unstructured.Unstructured, status map[string]any) {
		MarkReady(c, status, now, "Certificate is up to date and has not expired (DEV-ONLY: signed by the local dev CA)")
	})
}
