package acme

import (
	"context"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// ownerGC does, for cert-manager's objects, what kube-controller-manager's garbage collector
// does in a cluster: it deletes a CertificateRequest, Order or Challenge once the object that
// controls it (ownerReferences) is gone. The local API server runs no controller manager, and
// cert-manager relies on this: after a failed issuance it deletes the CertificateRequest and,
// on the retry, creates one with the same name whose Order has the same name as the old one,
// which it refuses to use while the old Order (owned by the deleted request) is still there.
type ownerGC struct {
	dyn    dynamic.Interface
	logger *slog.Logger
}

var (
	certificateGVR        = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
	certificateRequestGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificaterequests"}
	orderGVR              = schema.GroupVersionResource{Group: "acme.cert-manager.io", Version: "v1", Resource: "orders"}
	challengeGVR          = schema.GroupVersionResource{Group: "acme.cert-manager.io", Version: "v1", Resource: "challenges"}
)

// dependents: each kind collected, and its owner's.
var dependents = []struct {
	gvr       schema.GroupVersionResource
	ownerKind string
	owner     schema.GroupVersionResource
}{
	{certificateRequestGVR, "Certificate", certificateGVR},
	{orderGVR, "CertificateRequest", certificateRequestGVR},
	{challengeGVR, "Order", orderGVR},
}

// run collects every second until ctx ends.
func (g ownerGC) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		g.collect(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (g ownerGC) collect(ctx context.Context) {
	for _, d := range dependents {
		list, err := g.dyn.Resource(d.gvr).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, obj := range list.Items {
			for _, ref := range obj.GetOwnerReferences() {
				if ref.Controller == nil || !*ref.Controller || ref.Kind != d.ownerKind {
					continue
				}
				owner, err := g.dyn.Resource(d.owner).Namespace(obj.GetNamespace()).Get(ctx, ref.Name, metav1.GetOptions{})
				if err == nil && owner.GetUID() == ref.UID {
					continue
				}
				if err != nil && !apierrors.IsNotFound(err) {
					continue
				}
				uid := obj.GetUID()
				err = g.dyn.Resource(d.gvr).Namespace(obj.GetNamespace()).Delete(ctx, obj.GetName(),
					metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
				if err == nil {
					g.logger.Info("garbage-collected, as kube-controller-manager would: its owner is gone",
						"resource", d.gvr.Resource, "namespace", obj.GetNamespace(), "name", obj.GetName(), "owner", d.ownerKind+"/"+ref.Name)
				}
			}
		}
	}
}
