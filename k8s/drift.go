package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"unique"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
)

// How an object was changed by hand.
const (
	ChangeEdited  = "edited"
	ChangeDeleted = "deleted"
)

// HandChange is a change to one of this installation's objects that this
// worker did not make: its spec was changed by another field manager, or
// it was deleted (or lost the installation label, which takes it out of
// the watch just the same).
type HandChange struct {
	Kind      string // Certificate, Gateway or VirtualService
	Namespace string
	Name      string
	DomainID  string
	// Tenant and Host are the object's tenant label and domain-host
	// annotation, for tagging the heal job.
	Tenant, Host string
	Change       string // ChangeEdited or ChangeDeleted
	// Revision tells one change of the object from the next: its UID and
	// generation after an edit ("<uid>/<generation>": a re-created object
	// counts its generations from 1 again), its UID for a deletion.
	Revision string
	// Managers are the field managers other than this worker that own
	// fields of the spec (kubectl-edit, kubectl-client-side-apply, ...).
	Managers []string
}

// WatchHandChanges calls onChange for every hand change to this
// installation's Certificates, Gateways and VirtualServices (selected by
// InstallationSelector(installation)) in all namespaces. It reads metadata
// only: a spec edit shows as a new generation with another field manager
// owning part of the spec, and this worker's own server-side applies, as
// the only manager of the fields it sets, never qualify. So re-applying
// never feeds back into the watch as a heal of its own.
//
// On start (and after a re-list) objects edited by hand while the worker
// was down are reported too. Deletions while it was down are not seen
// here. onChange runs on the informers' goroutines, one call at a time
// per kind: keep it short (enqueue a job). It blocks until ctx is done.
func (c *Client) WatchHandChanges(ctx context.Context, installation string, onChange func(HandChange)) error {
	if onChange == nil {
		return errors.New("watch hand changes: nil onChange")
	}
	if installation == "" {
		return errors.New("watch hand changes: no installation id: only this installation's objects are watched")
	}
	var informers []cache.SharedIndexInformer
	for _, gvr := range []schemaGVR{{CertificateGVR, "Certificate"}, {GatewayGVR, "Gateway"}, {VirtualServiceGVR, "VirtualService"}} {
		inf := metadatainformer.NewFilteredMetadataInformer(c.meta, gvr.gvr, metav1.NamespaceAll, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = InstallationSelector(installation) }).Informer()
		// Keep only what the handlers read: managed fields of 10,000
		// objects per kind would dominate the worker's memory otherwise.
		if err := inf.SetTransform(slimMetadata); err != nil {
			return fmt.Errorf("watch %ss: set transform: %w", gvr.kind, err)
		}
		kind := gvr.kind
		_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if m, ok := obj.(*watchedMeta); ok && len(m.Managers) > 0 {
					onChange(handChange(kind, m, ChangeEdited))
				}
			},
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(*watchedMeta)
				n, ok2 := newObj.(*watchedMeta)
				if ok1 && ok2 && n.Generation != o.Generation && len(n.Managers) > 0 {
					onChange(handChange(kind, n, ChangeEdited))
				}
			},
			DeleteFunc: func(obj any) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if m, ok := obj.(*watchedMeta); ok {
					onChange(handChange(kind, m, ChangeDeleted))
				}
			},
		})
		if err != nil {
			return fmt.Errorf("watch %ss: add handler: %w", kind, err)
		}
		informers = append(informers, inf)
	}
	var wg sync.WaitGroup
	for _, inf := range informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	wg.Wait()
	return nil
}

type schemaGVR struct {
	gvr  schema.GroupVersionResource
	kind string
}

func handChange(kind string, m *watchedMeta, change string) HandChange {
	hc := HandChange{Kind: kind, Namespace: m.Namespace, Name: m.Name, DomainID: m.DomainID,
		Tenant: m.Tenant, Host: m.Host, Change: change, Managers: slices.Clone(m.Managers)}
	if change == ChangeDeleted {
		hc.Revision = string(m.UID)
	} else {
		hc.Revision = fmt.Sprintf("%s/%d", m.UID, m.Generation)
	}
	return hc
}

// watchedMeta is what the WatchHandChanges caches hold for an object: its
// identity, generation, domain-id and tenant labels, domain-host
// annotation and, in place of the managed fields, the names of the other
// managers of its spec. As plain fields instead of an ObjectMeta with label
// and annotation maps it costs a fraction of a PartialObjectMetadata per
// object.
type watchedMeta struct {
	Name, Namespace, ResourceVersion string
	UID                              types.UID
	Generation                       int64
	DomainID, Tenant, Host           string
	Managers                         []string
}

// GetObjectMeta is how the informer's store reads the key and
// resourceVersion (meta.Accessor); the ObjectMeta is built on each call
// so that the cache does not keep one per object.
func (m *watchedMeta) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID,
		ResourceVersion: m.ResourceVersion, Generation: m.Generation}
}

func (m *watchedMeta) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (m *watchedMeta) DeepCopyObject() runtime.Object {
	out := *m
	out.Managers = slices.Clone(m.Managers)
	return &out
}

// slimMetadata turns an object's metadata from the API server into the
// watchedMeta the cache keeps. client-go may hand it an object it slimmed
// already (the informer's initial list goes through it twice), which it
// keeps as is.
func slimMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &watchedMeta{
		Name:            m.Name,
		Namespace:       unique.Make(m.Namespace).Value(),
		ResourceVersion: m.ResourceVersion,
		UID:             m.UID,
		Generation:      m.Generation,
		DomainID:        m.Labels[LabelDomainID],
		Tenant:          unique.Make(m.Labels[LabelTenant]).Value(),
		Host:            m.Annotations[AnnotationDomainHost],
		Managers:        otherSpecManagers(m.ManagedFields),
	}, nil
}

// otherSpecManagers names the field managers other than this worker that
// own a field of the object's spec. Status writers (cert-manager) write
// through the status subresource and do not count.
func otherSpecManagers(entries []metav1.ManagedFieldsEntry) []string {
	var out []string
	for _, e := range entries {
		if e.Manager == FieldManager || e.Subresource != "" || e.FieldsV1 == nil {
			continue
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(e.FieldsV1.Raw, &fields) != nil {
			continue
		}
		if _, owns := fields["f:spec"]; owns && !slices.Contains(out, e.Manager) {
			out = append(out, e.Manager)
		}
	}
	slices.Sort(out)
	return out
}

// ObjectDrift is how one of a domain's objects in the cluster differs from
// what this worker renders for it.
type ObjectDrift struct {
	Kind, Namespace, Name string
	Change                string // ChangeEdited or ChangeDeleted
	// Fields are the paths whose values differ ("spec.dnsNames").
	Fields []string
	// Managers are the other field managers of the spec (see HandChange).
	Managers []string
}

// Drift reads each of objs from the API server (a quorum read: a heal
// must not act on a cache that trails its own last apply) and reports
// those missing or differing in a field this worker sets. Fields only
// someone else sets are not drift. An object that exists without this
// installation's label is ErrNotOurs: it is not to be touched.
func (c *Client) Drift(ctx context.Context, objs Objects) ([]ObjectDrift, error) {
	var out []ObjectDrift
	for _, want := range objs.All() {
		if want == nil {
			return nil, errors.New("drift: missing object (use Render)")
		}
		gvr, err := gvrFor(want)
		if err != nil {
			return nil, fmt.Errorf("drift: %w", err)
		}
		op := fmt.Sprintf("read %s %s/%s", want.GetKind(), want.GetNamespace(), want.GetName())
		have, err := c.dyn.Resource(gvr).Namespace(want.GetNamespace()).Get(ctx, want.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) && !isMissingResource(err) {
			out = append(out, ObjectDrift{Kind: want.GetKind(), Namespace: want.GetNamespace(), Name: want.GetName(), Change: ChangeDeleted})
			continue
		}
		if err != nil {
			return nil, classify(ctx, op, err)
		}
		if err := ownedBy(have, want.GetLabels()[LabelInstallation], op); err != nil {
			return nil, err
		}
		if fields := differingFields(want, have); len(fields) > 0 {
			out = append(out, ObjectDrift{Kind: want.GetKind(), Namespace: want.GetNamespace(), Name: want.GetName(),
				Change: ChangeEdited, Fields: fields, Managers: otherSpecManagers(have.GetManagedFields())})
		}
	}
	return out, nil
}

// differingFields lists the paths of want's spec, labels and annotations
// whose value in have is missing or different. Lists are compared whole,
// as server-side apply treats the CRDs' lists (atomic).
func differingFields(want, have *unstructured.Unstructured) []string {
	var out []string
	wantSpec, _, _ := unstructured.NestedMap(want.Object, "spec")
	haveSpec, _, _ := unstructured.NestedMap(have.Object, "spec")
	out = appendDiffering(out, "spec", wantSpec, haveSpec)
	for _, l := range slices.Sorted(maps.Keys(want.GetLabels())) {
		if v, ok := have.GetLabels()[l]; !ok || v != want.GetLabels()[l] {
			out = append(out, "metadata.labels."+l)
		}
	}
	for _, a := range slices.Sorted(maps.Keys(want.GetAnnotations())) {
		if v, ok := have.GetAnnotations()[a]; !ok || v != want.GetAnnotations()[a] {
			out = append(out, "metadata.annotations."+a)
		}
	}
	return out
}

func appendDiffering(out []string, path string, want, have map[string]any) []string {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		p := path + "." + k
		h, ok := have[k]
		if !ok {
			out = append(out, p)
			continue
		}
		wm, wIsMap := want[k].(map[string]any)
		hm, hIsMap := h.(map[string]any)
		if wIsMap && hIsMap {
			out = appendDiffering(out, p, wm, hm)
			continue
		}
		if !reflect.DeepEqual(want[k], h) {
			out = append(out, p)
		}
	}
	return out
}
