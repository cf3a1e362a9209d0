package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// FieldManager is the server-side apply field manager for every write.
const FieldManager = "portal-domains"

// Client limits and timeouts applied by NewClient when the rest.Config does
// not set them.
const (
	// client-go's default limiter (5 QPS, burst 10) would cap apply at about
	// 6 objects/s, and a few hundred QPS still capped the apply stage below
	// what the API server takes. The worker's concurrency is already bounded
	// by its kubernetes queue's workers, and the API server has its own
	// priority and fairness; this only guards against a runaway loop.
	// PORTAL_DOMAIN_KUBE_QPS / _BURST set other values.
	DefaultQPS   = 1000
	DefaultBurst = 2000
	// DefaultRequestTimeout bounds a single request, so a black-holed API
	// server surfaces as ErrUnreachable instead of hanging a job. The watch
	// uses long-lived requests and is exempt.
	DefaultRequestTimeout = 30 * time.Second
)

// Client applies, reads and deletes portal domain objects. It holds no
// per-domain state and is safe for concurrent use.
type Client struct {
	dyn   dynamic.Interface  // short requests, with DefaultRequestTimeout
	watch dynamic.Interface  // long-lived watch requests, no client timeout
	meta  metadata.Interface // metadata-only watches (WatchHandChanges), no client timeout
	// certs is the running WatchCertificates informer, if any: reads of a
	// Certificate are served from it (see GetCertificateStatus).
	certs atomic.Pointer[cache.SharedIndexInformer]
}

// NewClient builds a Client from cfg (in-cluster config in the worker,
// envtest's in tests). cfg is copied, not modified.
func NewClient(cfg *rest.Config) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("new kubernetes client: nil rest.Config")
	}
	base := rest.CopyConfig(cfg)
	if base.QPS == 0 {
		base.QPS = DefaultQPS
	}
	if base.Burst == 0 {
		base.Burst = DefaultBurst
	}
	if base.UserAgent == "" {
		base.UserAgent = FieldManager
	}
	watchCfg := rest.CopyConfig(base)
	if base.Timeout == 0 {
		base.Timeout = DefaultRequestTimeout
	}
	dyn, err := dynamic.NewForConfig(base)
	if err != nil {
		return nil, fmt.Errorf("new kubernetes client: %w", err)
	}
	watch, err := dynamic.NewForConfig(watchCfg)
	if err != nil {
		return nil, fmt.Errorf("new kubernetes watch client: %w", err)
	}
	meta, err := metadata.NewForConfig(watchCfg)
	if err != nil {
		return nil, fmt.Errorf("new kubernetes metadata client: %w", err)
	}
	return &Client{dyn: dyn, watch: watch, meta: meta}, nil
}

// ApplyResult is what Apply leaves behind, for the portal_domains row.
type ApplyResult struct {
	// CertificateResourceVersion goes to last_synced_resource_version.
	CertificateResourceVersion    string
	GatewayResourceVersion        string
	VirtualServiceResourceVersion string
	// SecretName goes to certificate_secret_name.
	SecretName string
	// CertificateReady: the Certificate the API server returned is Ready
	// for its current spec already (re-applying an issued certificate), so
	// no watch event may follow to say so.
	CertificateReady bool
}

// Apply server-side applies the Certificate, Gateway and VirtualService, in
// that order, as field manager "portal-domains".
//
// Force is false on purpose: if another manager (an operator's kubectl edit,
// an old AlgaPSA deployment) owns a field this worker sets and holds a
// different value, the apply fails with ErrConflict naming the manager and
// field instead of silently taking the field back. Fields nobody else owns
// are simply updated, so re-applying after a config change converges, and
// re-applying unchanged objects is a no-op (same resourceVersion).
//
// It stops at the first failure; the objects already applied stay (applying
// again converges). Errors wrap ErrConflict, ErrInvalid or ErrUnreachable
// where they fit.
func (c *Client) Apply(ctx context.Context, objs Objects) (ApplyResult, error) {
	return c.apply(ctx, objs, false)
}

// Reclaim is Apply with Force: fields another manager changed on objects
// this worker already applied (a hand edit of dnsNames with kubectl edit)
// are taken back instead of reported as ErrConflict. Only the
// await-certificate stage and the heal job call it, to restore objects this
// worker applied itself for the domain's current generation; the first
// apply never takes fields from others.
func (c *Client) Reclaim(ctx context.Context, objs Objects) (ApplyResult, error) {
	return c.apply(ctx, objs, true)
}

func (c *Client) apply(ctx context.Context, objs Objects, force bool) (ApplyResult, error) {
	var res ApplyResult
	for _, obj := range objs.All() {
		if obj == nil {
			return res, errors.New("apply: missing object (use Render)")
		}
		gvr, err := gvrFor(obj)
		if err != nil {
			return res, fmt.Errorf("apply: %w", err)
		}
		op := fmt.Sprintf("apply %s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
		if installation := obj.GetLabels()[LabelInstallation]; installation != "" {
			if err := c.checkOwner(ctx, gvr, obj.GetNamespace(), obj.GetName(), installation, op); err != nil {
				return res, err
			}
		}
		applied, err := c.dyn.Resource(gvr).Namespace(obj.GetNamespace()).Apply(ctx, obj.GetName(), obj,
			metav1.ApplyOptions{FieldManager: FieldManager, Force: force})
		if err != nil {
			return res, classify(ctx, op, err)
		}
		switch gvr {
		case CertificateGVR:
			res.CertificateResourceVersion = applied.GetResourceVersion()
			res.SecretName, _, _ = unstructured.NestedString(applied.Object, "spec", "secretName")
			res.CertificateReady = certStatusFrom(applied).IsReady()
		case GatewayGVR:
			res.GatewayResourceVersion = applied.GetResourceVersion()
		case VirtualServiceGVR:
			res.VirtualServiceResourceVersion = applied.GetResourceVersion()
		}
	}
	return res, nil
}

func gvrFor(obj *unstructured.Unstructured) (schema.GroupVersionResource, error) {
	gvk := obj.GroupVersionKind()
	for _, gvr := range []schema.GroupVersionResource{CertificateGVR, GatewayGVR, VirtualServiceGVR} {
		if gvk.Group == gvr.Group && gvk.Version == gvr.Version && strings.ToLower(gvk.Kind)+"s" == gvr.Resource {
			return gvr, nil
		}
	}
	return schema.GroupVersionResource{}, fmt.Errorf("%s is not a portal domain object", gvk)
}

// Ready is the status of a Certificate's Ready condition.
type Ready string

const (
	ReadyTrue    Ready = "True"
	ReadyFalse   Ready = "False"
	ReadyUnknown Ready = "Unknown"
	// ReadyMissing: the Certificate has no Ready condition yet (cert-manager
	// has not looked at it), or does not exist.
	ReadyMissing Ready = ""
)

// CertStatus is what cert-manager reports about a Certificate, flattened.
type CertStatus struct {
	// Exists is false when the Certificate is not there; every other field
	// is then zero.
	Exists bool
	Ready  Ready
	Reason string
	// Message is cert-manager's explanation, e.g. why issuance failed.
	Message            string
	LastTransitionTime time.Time
	// Generation is the Certificate's metadata.generation and
	// ObservedGeneration the one the Ready condition was computed for; the
	// condition is stale while they differ (just after a re-apply).
	Generation         int64
	ObservedGeneration int64
	// FailedIssuanceAttempts and LastFailureTime drive cert-manager's
	// back-off (1h, 2h, 4h...) and go into stuck-certificate alerts.
	FailedIssuanceAttempts int
	LastFailureTime        time.Time
	// IssuingFailure is the message of the Issuing condition when cert-manager reports the
	// last issuance Failed. Ready then still describes the Secret ("does not exist"); this
	// is where cert-manager says why issuance failed.
	IssuingFailure string
	NotAfter       time.Time
	// RenewalTime is when cert-manager means to renew the certificate.
	RenewalTime time.Time
	SecretName  string
	// DNSNames is the spec's dnsNames, to tell a hand edit from what was
	// applied.
	DNSNames        []string
	ResourceVersion string
	// Renewed is set by WatchCertificates on an update that changed the
	// notAfter of an issued certificate: cert-manager renewed it.
	Renewed bool
	// ObjectsPresent: the VirtualService for this Certificate and the
	// Gateway it references both exist. Only GetCertificateStatus fills it
	// in; WatchCertificates leaves it false.
	ObjectsPresent bool
}

// IsReady is true when the Certificate exists and cert-manager says Ready
// for its current spec.
func (s CertStatus) IsReady() bool {
	return s.Exists && s.Ready == ReadyTrue && s.ObservedGeneration >= s.Generation
}

// certStatusFrom reads the status of a Certificate object. Malformed status
// fields are left zero: the status is cert-manager's, not ours to reject.
func certStatusFrom(obj *unstructured.Unstructured) CertStatus {
	s := CertStatus{
		Exists:          true,
		Generation:      obj.GetGeneration(),
		ResourceVersion: obj.GetResourceVersion(),
	}
	s.SecretName, _, _ = unstructured.NestedString(obj.Object, "spec", "secretName")
	s.DNSNames, _, _ = unstructured.NestedStringSlice(obj.Object, "spec", "dnsNames")
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == "Issuing" && m["status"] == "False" && m["reason"] == "Failed" {
			s.IssuingFailure, _ = m["message"].(string)
		}
		if !ok || m["type"] != "Ready" {
			continue
		}
		st, _ := m["status"].(string)
		s.Ready = Ready(st)
		s.Reason, _ = m["reason"].(string)
		s.Message, _ = m["message"].(string)
		s.LastTransitionTime = parseTime(m["lastTransitionTime"])
		s.ObservedGeneration, _ = asInt64(m["observedGeneration"])
	}
	if n, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "status", "failedIssuanceAttempts"); ok {
		v, _ := asInt64(n)
		s.FailedIssuanceAttempts = int(v)
	}
	if v, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "status", "lastFailureTime"); ok {
		s.LastFailureTime = parseTime(v)
	}
	if v, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "status", "notAfter"); ok {
		s.NotAfter = parseTime(v)
	}
	if v, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "status", "renewalTime"); ok {
		s.RenewalTime = parseTime(v)
	}
	return s
}

func parseTime(v any) time.Time {
	s, _ := v.(string)
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}

// GetCertificateStatus reads the Certificate's status and checks that its
// VirtualService (portal-domain-vs-<prefix> in the same namespace) and the
// Gateway that VirtualService references exist. A missing Certificate is
// not an error: the result has Exists false.
func (c *Client) GetCertificateStatus(ctx context.Context, namespace, name string) (CertStatus, error) {
	s, watched := c.WatchedCertificateStatus(namespace, name)
	if !watched {
		obj, err := c.dyn.Resource(CertificateGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && !isMissingResource(err) {
			return CertStatus{}, nil
		}
		if err != nil {
			return CertStatus{}, classify(ctx, fmt.Sprintf("get Certificate %s/%s", namespace, name), err)
		}
		s = certStatusFrom(obj)
	}
	present, err := c.routingPresent(ctx, namespace, name)
	s.ObjectsPresent = present
	return s, err
}

// WatchedCertificateStatus is the Certificate's status as the running
// WatchCertificates informer holds it; false when no watch runs or it does
// not hold the Certificate. It makes no request. That cache is what woke
// the await job, so it already holds the Ready that the job is about to act
// on, and reading it costs the API server nothing. It is not required to
// have synced: whatever it holds came from the API server, and the
// informer stores an object before it calls the handlers, so an object a
// callback reported is found even while the initial list is still being
// handed out (requiring HasSynced made that a race). GetCertificateStatus
// reads anything it does not hold from the API server, so a deletion is
// never concluded from a lagging cache.
func (c *Client) WatchedCertificateStatus(namespace, name string) (CertStatus, bool) {
	inf := c.certs.Load()
	if inf == nil {
		return CertStatus{}, false
	}
	obj, exists, err := (*inf).GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !exists {
		return CertStatus{}, false
	}
	w, ok := obj.(*watchedCert)
	if !ok {
		return CertStatus{}, false
	}
	return w.status(), true
}

// getCached reads an object from the API server's watch cache
// (resourceVersion "0"), which spares etcd a quorum read and the API server
// decoding the stored object: the await job reads the routes on each check.
// The cache trails etcd by milliseconds, so "not found" is confirmed with a
// quorum read before anyone re-creates an object that was only just applied.
func (c *Client) getCached(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) (*unstructured.Unstructured, error) {
	res := c.dyn.Resource(gvr).Namespace(namespace)
	obj, err := res.Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		return res.Get(ctx, name, metav1.GetOptions{})
	}
	return obj, err
}

// routingPresent follows the naming scheme from the Certificate to its
// VirtualService, and from the VirtualService's gateways to the Gateway, so
// it needs no Config.
func (c *Client) routingPresent(ctx context.Context, namespace, certName string) (bool, error) {
	prefix, ok := strings.CutPrefix(certName, "portal-domain-")
	if !ok {
		return false, nil
	}
	vsName := "portal-domain-vs-" + prefix
	vs, err := c.getCached(ctx, VirtualServiceGVR, namespace, vsName)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, classify(ctx, fmt.Sprintf("get VirtualService %s/%s", namespace, vsName), err)
	}
	gws, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways")
	if len(gws) == 0 {
		return false, nil
	}
	gwNS, gwName, ok := strings.Cut(gws[0], "/")
	if !ok {
		gwNS, gwName = namespace, gws[0]
	}
	_, err = c.getCached(ctx, GatewayGVR, gwNS, gwName)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, classify(ctx, fmt.Sprintf("get Gateway %s/%s", gwNS, gwName), err)
	}
	return true, nil
}

// Delete removes the domain's VirtualService, Gateway, Certificate, TLS
// Secret and the Secret's copy in the gateway namespace, in that order: routing goes first so nothing serves a half-deleted
// domain, and the Certificate goes before its Secret so cert-manager does not
// re-issue into it. Objects already gone are fine, so Delete can be rerun.
// Every deletion is attempted; the errors are joined.
//
// Only objects carrying cfg.Installation are deleted: each is read first and
// deleted with a precondition on the UID read, so an object re-created in
// between is left alone. One without this installation's identity is left
// and reported as ErrNotOurs; with cfg.Installation empty nothing is
// deleted. The Secret is deleted when it carries this installation's
// identity, or carries none and cert-manager issued it for the Certificate
// just deleted.
func (c *Client) Delete(ctx context.Context, d Domain, cfg Config) error {
	n, err := NamesFor(d, cfg)
	if err != nil {
		return fmt.Errorf("delete portal domain objects: %w", err)
	}
	if cfg.Installation == "" {
		return fmt.Errorf("delete portal domain objects: %w: no installation id configured, so none is ours", ErrNotOurs)
	}
	vsErr := c.deleteOwned(ctx, VirtualServiceGVR, n.CertNamespace, n.VirtualService, cfg.Installation)
	gwErr := c.deleteOwned(ctx, GatewayGVR, n.GatewayNamespace, n.Gateway, cfg.Installation)
	certErr := c.deleteOwned(ctx, CertificateGVR, n.CertNamespace, n.Certificate, cfg.Installation)
	var secretErr, copyErr error
	if !errors.Is(certErr, ErrNotOurs) {
		secretErr = c.deleteSecret(ctx, n.CertNamespace, n.Secret, n.Certificate, cfg.Installation)
	}
	if n.GatewayNamespace != n.CertNamespace {
		copyErr = c.deleteSecretCopy(ctx, n, cfg.Installation, true)
	}
	return errors.Join(vsErr, gwErr, certErr, secretErr, copyErr)
}

// deleteOwned deletes the object when it carries installation, on the
// condition that its UID is still the one read.
func (c *Client) deleteOwned(ctx context.Context, gvr schema.GroupVersionResource, namespace, name, installation string) error {
	op := fmt.Sprintf("delete %s %s/%s", kindOf(gvr), namespace, name)
	res := c.dyn.Resource(gvr).Namespace(namespace)
	obj, err := res.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && !isMissingResource(err) {
		return nil
	}
	if err != nil {
		return classify(ctx, op, err)
	}
	if err := ownedBy(obj, installation, op); err != nil {
		return err
	}
	uid := obj.GetUID()
	err = res.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) && !isMissingResource(err) {
		return nil
	}
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s: re-created since it was read, not deleted: %w", op, err)
	}
	return classify(ctx, op, err)
}

// ownedBy is nil when obj carries installation's identity, else ErrNotOurs
// saying whose it is.
func ownedBy(obj *unstructured.Unstructured, installation, op string) error {
	switch have := obj.GetLabels()[LabelInstallation]; {
	case installation != "" && have == installation:
		return nil
	case have == "":
		return fmt.Errorf("%s: %w: it carries no %s label (made before installation ids, or by AlgaPSA); `portal-domains adopt` claims such objects", op, ErrNotOurs, LabelInstallation)
	default:
		return fmt.Errorf("%s: %w: it carries %s=%s, this installation is %s", op, ErrNotOurs, LabelInstallation, have, installation)
	}
}

// checkOwner lets an apply go ahead when the object does not exist yet or
// carries installation's identity.
func (c *Client) checkOwner(ctx context.Context, gvr schema.GroupVersionResource, namespace, name, installation, op string) error {
	// The watch cache is enough: an object another installation created in
	// the milliseconds it trails etcd is the one race this leaves, and
	// confirming every miss would double the requests of a first apply.
	obj, err := c.dyn.Resource(gvr).Namespace(namespace).Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) && !isMissingResource(err) {
		return nil
	}
	if err != nil {
		return classify(ctx, op, err)
	}
	return ownedBy(obj, installation, op)
}

func (c *Client) deleteSecret(ctx context.Context, namespace, name, certName, installation string) error {
	op := fmt.Sprintf("delete Secret %s/%s", namespace, name)
	sec, err := c.dyn.Resource(SecretGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify(ctx, op, err)
	}
	have := sec.GetLabels()[LabelInstallation]
	issuedForCert := sec.GetAnnotations()["cert-manager.io/certificate-name"] == certName
	switch {
	case have != "" && have != installation:
		return ownedBy(sec, installation, op)
	case have == "" && !issuedForCert:
		return fmt.Errorf("%s: %w: not deleted: it is neither labelled %s=%s nor issued for Certificate %s", op, ErrNotOurs, LabelInstallation, installation, certName)
	}
	uid := sec.GetUID()
	err = c.dyn.Resource(SecretGVR).Namespace(namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return classify(ctx, op, err)
}

func kindOf(gvr schema.GroupVersionResource) string {
	switch gvr {
	case CertificateGVR:
		return "Certificate"
	case GatewayGVR:
		return "Gateway"
	case VirtualServiceGVR:
		return "VirtualService"
	case SecretGVR:
		return "Secret"
	}
	return gvr.String()
}

// ManagedObject is one object carrying the managed label, as ListManaged
// sees it.
type ManagedObject struct {
	Kind      string // Certificate, Gateway or VirtualService
	Namespace string
	Name      string
	DomainID  string
	Tenant    string
	// Installation is the LabelInstallation value; "" when it has none.
	Installation string
	// Host is the full domain, from the annotation (the label may be
	// shortened).
	Host            string
	UID             string
	ResourceVersion string
	CreatedAt       time.Time
	// Certificate is the status of a Certificate; zero for other kinds.
	Certificate CertStatus
}

// ListManaged lists every Certificate, Gateway and VirtualService matching
// selector (InstallationSelector for one installation's objects,
// UnownedSelector for those nobody claimed) in all namespaces, for the
// orphan sweep, the stuck-certificate scan and adoption. Secrets are not
// listed (the worker may not list Secrets); a Certificate's Secret is its
// Certificate.SecretName.
func (c *Client) ListManaged(ctx context.Context, selector string) ([]ManagedObject, error) {
	var out []ManagedObject
	for _, gvr := range []schema.GroupVersionResource{CertificateGVR, GatewayGVR, VirtualServiceGVR} {
		opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
		for {
			list, err := c.dyn.Resource(gvr).Namespace(metav1.NamespaceAll).List(ctx, opts)
			if err != nil {
				return nil, classify(ctx, fmt.Sprintf("list managed %ss", kindOf(gvr)), err)
			}
			for i := range list.Items {
				obj := &list.Items[i]
				m := ManagedObject{
					Kind:            kindOf(gvr),
					Namespace:       obj.GetNamespace(),
					Name:            obj.GetName(),
					DomainID:        obj.GetLabels()[LabelDomainID],
					Tenant:          obj.GetLabels()[LabelTenant],
					Installation:    obj.GetLabels()[LabelInstallation],
					Host:            obj.GetAnnotations()[AnnotationDomainHost],
					UID:             string(obj.GetUID()),
					ResourceVersion: obj.GetResourceVersion(),
					CreatedAt:       obj.GetCreationTimestamp().Time,
				}
				if m.Host == "" {
					m.Host = obj.GetLabels()[LabelDomainHost]
				}
				if gvr == CertificateGVR {
					m.Certificate = certStatusFrom(obj)
				}
				out = append(out, m)
			}
			if list.GetContinue() == "" {
				break
			}
			opts.Continue = list.GetContinue()
		}
	}
	return out, nil
}

func gvrOfKind(kind string) (schema.GroupVersionResource, error) {
	switch kind {
	case "Certificate":
		return CertificateGVR, nil
	case "Gateway":
		return GatewayGVR, nil
	case "VirtualService":
		return VirtualServiceGVR, nil
	}
	return schema.GroupVersionResource{}, fmt.Errorf("unknown kind %q", kind)
}

// DeleteManaged deletes one object found by ListManaged (the orphan sweep's
// delete), for a Certificate its Secret too, and for a Gateway the copy of
// the Secret it served. It refuses an object not
// carrying installation (ErrNotOurs), and the delete is conditional on the
// UID and resourceVersion ListManaged saw, so an object re-created or
// re-applied since the list is left alone; that race is reported as an
// apierrors Conflict, which is not ErrConflict.
func (c *Client) DeleteManaged(ctx context.Context, m ManagedObject, installation string) error {
	gvr, err := gvrOfKind(m.Kind)
	if err != nil {
		return fmt.Errorf("delete managed object: %w", err)
	}
	op := fmt.Sprintf("delete %s %s/%s", m.Kind, m.Namespace, m.Name)
	if installation == "" || m.Installation != installation {
		return fmt.Errorf("%s: %w: it carries %s=%q, this installation is %q", op, ErrNotOurs, LabelInstallation, m.Installation, installation)
	}
	if m.UID == "" || m.ResourceVersion == "" {
		return fmt.Errorf("%s: not deleted: no UID and resourceVersion to make the delete conditional on", op)
	}
	uid := types.UID(m.UID)
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &m.ResourceVersion}}
	err = c.dyn.Resource(gvr).Namespace(m.Namespace).Delete(ctx, m.Name, opts)
	if apierrors.IsNotFound(err) && !isMissingResource(err) {
		err = nil
	}
	if err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("%s: changed since it was listed, not deleted: %w", op, err)
		}
		return classify(ctx, op, err)
	}
	if gvr == CertificateGVR && m.Certificate.SecretName != "" {
		return c.deleteSecret(ctx, m.Namespace, m.Certificate.SecretName, m.Name, installation)
	}
	if prefix, ok := strings.CutPrefix(m.Name, "portal-domain-gw-"); ok && gvr == GatewayGVR {
		// The Gateway's credentialName; a copy there goes with it.
		return c.deleteSecretCopy(ctx, Names{GatewayNamespace: m.Namespace, Secret: "portal-domain-" + prefix}, installation, false)
	}
	return nil
}

// Adopt claims an object ListManaged found without an installation id (made
// by AlgaPSA, or before installation ids) for installation, by adding
// LabelInstallation. The patch is conditional on the resourceVersion
// listed, so an object changed since is left alone (an apierrors Conflict).
// A Certificate's Secret gets the label from the Certificate's
// secretTemplate when the worker next applies it.
func (c *Client) Adopt(ctx context.Context, m ManagedObject, installation string) error {
	gvr, err := gvrOfKind(m.Kind)
	if err != nil {
		return fmt.Errorf("adopt managed object: %w", err)
	}
	op := fmt.Sprintf("adopt %s %s/%s", m.Kind, m.Namespace, m.Name)
	if installation == "" || m.Installation != "" {
		return fmt.Errorf("%s: it carries %s=%q; only objects without one are adopted", op, LabelInstallation, m.Installation)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": m.ResourceVersion,
		"labels":          map[string]string{LabelInstallation: installation},
	}})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_, err = c.dyn.Resource(gvr).Namespace(m.Namespace).Patch(ctx, m.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager + "-adopt"})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s: changed since it was listed, not adopted: %w", op, err)
	}
	return classify(ctx, op, err)
}
