package k8s

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		id := u.GetLabels()[LabelDomainID]
		if id == "" {
			return
		}
		if deleted {
			onChange(id, CertStatus{})
			return
		}
		onChange(id, certStatusFrom(u))
	}
	// The informer caches every managed Certificate; keep only what the
	// handlers read, or at 10,000 domains the cache (managed fields and
	// all) dominates the worker's memory.
	if err := inf.Informer().SetTransform(slimCertificate); err != nil {
		return fmt.Errorf("watch certificates: set transform: %w", err)
	}
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { report(obj, false) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			if !ok1 || !ok2 {
				report(newObj, false)
				return
			}
			before, after := certStatusFrom(o), certStatusFrom(n)
			if readyKey(before) == readyKey(after) {
				return
			}
			after.Renewed = !before.NotAfter.IsZero() && !after.NotAfter.Equal(before.NotAfter)
			if id := n.GetLabels()[LabelDomainID]; id != "" {
				onChange(id, after)
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

// slimCertificate keeps the fields certStatusFrom and the watch handlers
// read: identity, the domain-id label, spec.secretName, spec.dnsNames and
// the status.
func slimCertificate(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	slim := &unstructured.Unstructured{Object: map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind()}}
	slim.SetNamespace(u.GetNamespace())
	slim.SetName(u.GetName())
	slim.SetUID(u.GetUID())
	slim.SetResourceVersion(u.GetResourceVersion())
	slim.SetGeneration(u.GetGeneration())
	if id := u.GetLabels()[LabelDomainID]; id != "" {
		slim.SetLabels(map[string]string{LabelDomainID: id})
	}
	spec := map[string]any{}
	for _, field := range []string{"secretName", "dnsNames"} {
		if v, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", field); found {
			spec[field] = v
		}
	}
	slim.Object["spec"] = spec
	if status, found := u.Object["status"]; found {
		slim.Object["status"] = status
	}
	return slim, nil
}
