package devstack

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"github.com/portal-domains/portal-domains/k8s"
)

// IssuerFieldManager owns what the dev issuer writes (the TLS Secret and the
// Certificate status), so `kubectl get -o yaml --show-managed-fields` says
// who wrote it.
const IssuerFieldManager = "portal-domains-dev-issuer"

// certificateLifetime is what the dev issuer signs for, like Let's Encrypt.
const certificateLifetime = 90 * 24 * time.Hour

// Issuer is a DEV-ONLY stand-in for cert-manager, so the pipeline can reach
// active without a cluster, an ACME account or a public domain. It watches
// the Certificates the worker applies and, for each one naming its issuer,
// signs a certificate for spec.dnsNames with the dev CA, writes the
// kubernetes.io/tls Secret (with cert-manager's labels and annotations, so
// the disable job recognises and deletes it) and sets the Ready condition
// for the current generation, as cert-manager does. It never runs against a
// real cluster unless PORTAL_DOMAIN_DEV_ISSUER=1 says so.
type Issuer struct {
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
	// DefaultIssuerResync, a negative value never. Each check reads the
	// Certificate's Secret from the API server, so the bench turns it off:
	// it deletes no Secrets, and the checks cost the API server more the
	// more Certificates there are and the longer a phase runs, which
	// charged the slower side of a comparison twice.
	Resync time.Duration
	// Workers is how many Certificates are signed at once; zero means
	// DefaultIssuerWorkers.
	Workers int
	Logger  *slog.Logger
	// OnIssued, when set, hears about each signed certificate.
	OnIssued func(namespace, name string, dnsNames []string)
}

// The Issuer's defaults: its re-check period unless Resync says otherwise,
// and how many Certificates it signs at once unless Workers does.
const (
	DefaultIssuerResync  = 30 * time.Second
	DefaultIssuerWorkers = 2
)

// resyncPeriod is Resync as the informer takes it (0: never).
func (i *Issuer) resyncPeriod() time.Duration {
	switch {
	case i.Resync < 0:
		return 0
	case i.Resync == 0:
		return DefaultIssuerResync
	}
	return i.Resync
}

// Run watches Certificates until ctx is done, then returns nil.
func (i *Issuer) Run(ctx context.Context) error {
	logger := i.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "dev-issuer")
	logger.Warn("DEV-ONLY issuer is playing cert-manager: Certificates are signed by a throwaway local CA",
		"issuer_kind", i.IssuerKind, "issuer_name", i.IssuerName)

	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "dev-issuer"})
	// A resync re-checks every Certificate now and then, which re-issues
	// one whose Secret was deleted by hand.
	inf := dynamicinformer.NewFilteredDynamicInformer(i.Dynamic, k8s.CertificateGVR, metav1.NamespaceAll, i.resyncPeriod(),
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

	r := &issueRun{Issuer: i, logger: logger, lister: inf.Lister(), issuing: map[string]time.Time{}}
	var wg sync.WaitGroup
	for range cmp.Or(i.Workers, DefaultIssuerWorkers) {
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
	*Issuer
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
	spec := certSpecOf(cert)
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
	if readyForGeneration(cert) || r.Delay > 0 {
		secret, err = r.Dynamic.Resource(k8s.SecretGVR).Namespace(ns).Get(ctx, spec.SecretName, metav1.GetOptions{ResourceVersion: "0"})
		if apierrors.IsNotFound(err) {
			secret, err = nil, nil
		}
		if err != nil {
			return 0, fmt.Errorf("get Secret %s/%s: %w", ns, spec.SecretName, err)
		}
		if readyForGeneration(cert) && SecretServes(secret, r.CA, spec.DNSNames) {
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

// markIssuing sets what cert-manager shows while it works on a
// Certificate: Issuing=True and, with no Secret yet, Ready=False
// DoesNotExist (a reason cert-manager does not count as a failure).
func (r *issueRun) markIssuing(ctx context.Context, cert *unstructured.Unstructured, noSecret bool, dnsNames []string) error {
	msg := "DEV-ONLY issuer: signing a certificate for " + strings.Join(dnsNames, ", ") + " with the local dev CA"
	return r.updateStatus(ctx, cert, func(cert *unstructured.Unstructured, status map[string]any) {
		setCondition(status, cert.GetGeneration(), "Issuing", "True", "DevIssuer", msg)
		if noSecret {
			setCondition(status, cert.GetGeneration(), "Ready", "False", "DoesNotExist",
				"Issuing certificate as Secret does not exist (DEV-ONLY issuer)")
		}
	})
}

// issue signs, writes the Secret, then marks the Certificate Ready.
func (r *issueRun) issue(ctx context.Context, cert *unstructured.Unstructured, spec certSpec) error {
	ns := cert.GetNamespace()
	now := time.Now().UTC().Truncate(time.Second)
	notAfter := now.Add(certificateLifetime)
	certPEM, keyPEM, err := r.CA.Issue(spec.DNSNames, now.Add(-time.Minute), notAfter)
	if err != nil {
		return err
	}
	labels := map[string]any{"controller.cert-manager.io/fao": "true"}
	for k, v := range spec.SecretLabels {
		labels[k] = v
	}
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata": map[string]any{
			"name":      spec.SecretName,
			"namespace": ns,
			"labels":    labels,
			"annotations": map[string]any{
				"cert-manager.io/certificate-name": cert.GetName(),
				"cert-manager.io/alt-names":        strings.Join(spec.DNSNames, ","),
				"cert-manager.io/common-name":      spec.DNSNames[0],
				"cert-manager.io/issuer-name":      spec.IssuerName,
				"cert-manager.io/issuer-kind":      spec.IssuerKind,
				"cert-manager.io/issuer-group":     "cert-manager.io",
				"portal-domains.dev/issued-by":     "DEV-ONLY issuer (local dev CA); not a real certificate",
			},
		},
		"type": "kubernetes.io/tls",
		"data": map[string]any{
			"tls.crt": base64.StdEncoding.EncodeToString(certPEM),
			"tls.key": base64.StdEncoding.EncodeToString(keyPEM),
			"ca.crt":  base64.StdEncoding.EncodeToString(r.CA.CertPEM()),
		},
	}}
	if _, err := r.Dynamic.Resource(k8s.SecretGVR).Namespace(ns).Apply(ctx, spec.SecretName, secret,
		metav1.ApplyOptions{FieldManager: IssuerFieldManager, Force: true}); err != nil {
		return fmt.Errorf("write Secret %s/%s: %w", ns, spec.SecretName, err)
	}
	return r.updateStatus(ctx, cert, func(c *unstructured.Unstructured, status map[string]any) {
		setCondition(status, c.GetGeneration(), "Ready", "True", "Ready",
			"Certificate is up to date and has not expired (DEV-ONLY: signed by the local dev CA)")
		removeCondition(status, "Issuing")
		status["notBefore"] = now.Format(time.RFC3339)
		status["notAfter"] = notAfter.Format(time.RFC3339)
		status["renewalTime"] = now.Add(certificateLifetime * 2 / 3).Format(time.RFC3339)
		rev, _ := status["revision"].(int64)
		status["revision"] = rev + 1
		delete(status, "failedIssuanceAttempts")
		delete(status, "lastFailureTime")
	})
}

// updateStatus edits a Certificate's status subresource, starting from
// the informer's copy and re-reading it only after a write conflict (the
// worker re-applies the spec meanwhile).
func (r *issueRun) updateStatus(ctx context.Context, seen *unstructured.Unstructured, mutate func(*unstructured.Unstructured, map[string]any)) error {
	ns, name := seen.GetNamespace(), seen.GetName()
	res := r.Dynamic.Resource(k8s.CertificateGVR).Namespace(ns)
	attempt := 0
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		attempt++
		cert := seen.DeepCopy()
		if attempt > 1 {
			var err error
			if cert, err = res.Get(ctx, name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		status, _, _ := unstructured.NestedMap(cert.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		mutate(cert, status)
		if err := unstructured.SetNestedMap(cert.Object, status, "status"); err != nil {
			return err
		}
		_, err := res.UpdateStatus(ctx, cert, metav1.UpdateOptions{FieldManager: IssuerFieldManager})
		return err
	})
	if err != nil {
		return fmt.Errorf("update status of Certificate %s/%s: %w", ns, name, err)
	}
	return nil
}

// certSpec is the part of a Certificate the issuer reads.
type certSpec struct {
	SecretName             string
	DNSNames               []string
	IssuerKind, IssuerName string
	SecretLabels           map[string]string
}

func certSpecOf(cert *unstructured.Unstructured) certSpec {
	var s certSpec
	s.SecretName, _, _ = unstructured.NestedString(cert.Object, "spec", "secretName")
	s.DNSNames, _, _ = unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	s.IssuerKind, _, _ = unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind")
	s.IssuerName, _, _ = unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	s.SecretLabels, _, _ = unstructured.NestedStringMap(cert.Object, "spec", "secretTemplate", "labels")
	return s
}

// namesIssuer: cert-manager defaults an empty issuerRef.kind to Issuer.
func (s certSpec) namesIssuer(kind, name string) bool {
	k := s.IssuerKind
	if k == "" {
		k = "Issuer"
	}
	return s.IssuerName == name && strings.EqualFold(k, kind)
}

// readyForGeneration: Ready=True was set for the Certificate's current spec.
func readyForGeneration(cert *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(cert.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		og, _ := m["observedGeneration"].(int64)
		return m["status"] == "True" && og >= cert.GetGeneration()
	}
	return false
}

// SecretServes reports whether a TLS Secret holds a current certificate
// from ca that covers every one of dnsNames, which is what "issued" means
// for the dev issuer (and what its tests check).
func SecretServes(secret *unstructured.Unstructured, ca *CA, dnsNames []string) bool {
	if secret == nil {
		return false
	}
	raw, _, _ := unstructured.NestedString(secret.Object, "data", "tls.crt")
	certPEM, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return false
	}
	return VerifyPEM(certPEM, ca, dnsNames, time.Now()) == nil
}

// VerifyPEM checks that the first certificate in certPEM chains to ca and
// is valid for each of dnsNames at now.
func VerifyPEM(certPEM []byte, ca *CA, dnsNames []string, now time.Time) error {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	if len(dnsNames) == 0 {
		return fmt.Errorf("no DNS names to verify")
	}
	for _, name := range dnsNames {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool(), CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("verify for %s: %w", name, err)
		}
	}
	if extra := slices.DeleteFunc(slices.Clone(leaf.DNSNames), func(n string) bool { return slices.Contains(dnsNames, n) }); len(extra) > 0 {
		return fmt.Errorf("certificate also covers %v, which were not requested", extra)
	}
	return nil
}

// setCondition sets one condition the way cert-manager does: for the given
// generation, moving lastTransitionTime only when the status changes.
func setCondition(status map[string]any, generation int64, typ, st, reason, message string) {
	ltt := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	conds, _ := status["conditions"].([]any)
	kept := make([]any, 0, len(conds)+1)
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			if prev, ok := m["lastTransitionTime"].(string); ok && m["status"] == st {
				ltt = prev
			}
			continue
		}
		kept = append(kept, c)
	}
	status["conditions"] = append(kept, map[string]any{
		"type": typ, "status": st, "reason": reason, "message": message,
		"lastTransitionTime": ltt, "observedGeneration": generation,
	})
}

func removeCondition(status map[string]any, typ string) {
	conds, _ := status["conditions"].([]any)
	kept := make([]any, 0, len(conds))
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] != typ {
			kept = append(kept, c)
		}
	}
	status["conditions"] = kept
}
