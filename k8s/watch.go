package k8s

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// WatchCertificates calls onChange with the domain-id label and status of
// every managed Certificate, in all namespaces, whenever its Ready condition
// changes (status, reason, message, observed generation), its failure
// count does, or a renewal changes its notAfter (reported with Renewed). It is how the pipeline notices Ready within well under a
// second instead of polling.
//
// On start (and after a re-list) onChange is called once for each existing
// Certificate, so Ready that happened while the worker was down is seen. A
// deleted Certificate is reported with Exists false. Certificates without a
// domain-id label are skipped.
//
// It runs a client-go informer and blocks until ctx is done, then returns
// nil. Disconnects (API server restarts, expired watches) are retried by
// the informer with back-off and logged through klog; the caller sees
// them only as a pause in callbacks. onChange runs on one goroutine, one
// call at a time: keep it short (wake a job, do not do the job).
//
// While it runs, GetCertificateStatus reads Certificates from its cache.
func (c *Client) WatchCertificates(ctx context.Context, onChange func(domainID string, status CertStatus)) error {
	if onChange == nil {
		return errors.New("watch certificates: nil onChange")
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(c.watch, CertificateGVR, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = ManagedSelector })
	report := func(obj any, deleted bool) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		w, ok := obj.(*watchedCert)
		if !ok || w.DomainID == "" {
			return
		}
		if deleted {
			onChange(w.DomainID, CertStatus{})
			return
		}
		onChange(w.DomainID, w.status())
	}
	// The informer caches every managed Certificate; keep only what the
	// handlers read, parsed, or at 100,000 domains the cache dominates the
	// worker's memory.
	if err := inf.Informer().SetTransform(slimCertificate); err != nil {
		return fmt.Errorf("watch certificates: set transform: %w", err)
	}
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { report(obj, false) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*watchedCert)
			n, ok2 := newObj.(*watchedCert)
			if !ok1 || !ok2 {
				report(newObj, false)
				return
			}
			before, after := o.Status, n.status()
			if readyKey(before) == readyKey(after) {
				return
			}
			after.Renewed = !before.NotAfter.IsZero() && !after.NotAfter.Equal(before.NotAfter)
			if n.DomainID != "" {
				onChange(n.DomainID, after)
			}
		},
		DeleteFunc: func(obj any) { report(obj, true) },
	})
	if err != nil {
		return fmt.Errorf("watch certificates: add handler: %w", err)
	}
	informer := inf.Informer()
	c.certs.Store(&informer)
	defer c.certs.CompareAndSwap(&informer, nil)
	informer.RunWithContext(ctx)
	return nil
}

// statusKey is the part of a status whose change is worth a callback.
type statusKey struct {
	ready              Ready
	reason, message    string
	observedGeneration int64
	failed             int
	notAfter           time.Time
}

func readyKey(s CertStatus) statusKey {
	return statusKey{s.Ready, s.Reason, s.Message, s.ObservedGeneration, s.FailedIssuanceAttempts, s.NotAfter}
}

// watchedCert is what the WatchCertificates cache holds for a Certificate:
// its identity and its status, parsed once. The same fields kept as an
// unstructured object, or even beside a metav1.ObjectMeta, cost several
// times as much, and the cache holds one per managed Certificate.
type watchedCert struct {
	Name, Namespace string
	UID             types.UID
	DomainID        string
	// Status holds the resourceVersion and generation too.
	Status CertStatus
}

// GetObjectMeta is how the informer's store reads the key and
// resourceVersion (meta.Accessor); the ObjectMeta is built on each call
// so that the cache does not keep one per Certificate.
func (w *watchedCert) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: w.Name, Namespace: w.Namespace, UID: w.UID,
		ResourceVersion: w.Status.ResourceVersion, Generation: w.Status.Generation}
}

// status is a copy of the cached status that the caller may change.
func (w *watchedCert) status() CertStatus {
	s := w.Status
	s.DNSNames = slices.Clone(s.DNSNames)
	return s
}

func (w *watchedCert) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (w *watchedCert) DeepCopyObject() runtime.Object {
	out := *w
	out.Status.DNSNames = slices.Clone(w.Status.DNSNames)
	return &out
}

// slimCertificate turns a Certificate from the API server into the
// watchedCert the cache keeps. client-go may hand it an object it slimmed
// already (the initial list goes through it twice), which it keeps as is.
func slimCertificate(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	s := certStatusFrom(u)
	// Every Certificate in a namespace, and most in the same state, repeat
	// these strings; one copy of each is shared instead.
	s.Ready = Ready(unique.Make(string(s.Ready)).Value())
	s.Reason = unique.Make(s.Reason).Value()
	s.Message = unique.Make(s.Message).Value()
	s.IssuingFailure = unique.Make(s.IssuingFailure).Value()
	name := u.GetName()
	if s.SecretName == name {
		s.SecretName = name // the rendered Secret is named after its Certificate: one copy
	}
	return &watchedCert{
		Name:      name,
		Namespace: unique.Make(u.GetNamespace()).Value(),
		UID:       u.GetUID(),
		DomainID:  u.GetLabels()[LabelDomainID],
		Status:    s,
	}, nil
}
