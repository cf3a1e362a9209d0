package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/gitrecord"
	"github.com/portal-domains/portal-domains/internal/probe"
	"github.com/portal-domains/portal-domains/internal/telemetry"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// span starts a span tagged with the runbook's tenantId and portalDomainId.
func span(ctx context.Context, tracer trace.Tracer, name string, d jobs.DomainRef, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs = append(attrs, attribute.String("domain", d.Host))
	return telemetry.StartDomainSpan(ctx, tracer, name, d.Tenant, d.ID, attrs...)
}

// endSpan records err (if any) and ends the span.
func endSpan(s trace.Span, err error) {
	if err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// Store gives the jobs the database, mapping db's errors to jobs' sentinels.
type Store struct {
	Pool *pgxpool.Pool
	// Transitions, when set, commits the transitions of concurrently
	// running jobs together (see db.TransitionGroup).
	Transitions *db.TransitionGroup
	// Reads, when set, reads the rows of jobs starting together in one
	// query (see db.ReadGroup).
	Reads *db.ReadGroup
}

var _ jobs.Store = Store{}

// GetDomain reads a row.
func (s Store) GetDomain(ctx context.Context, id string) (domain.Record, error) {
	var rec domain.Record
	var err error
	if s.Reads != nil {
		rec, err = s.Reads.GetDomain(ctx, id)
	} else {
		rec, err = db.GetDomain(ctx, s.Pool, id)
	}
	if errors.Is(err, db.ErrNotFound) {
		return rec, fmt.Errorf("%w: %w", jobs.ErrNotFound, err)
	}
	return rec, err
}

// Transition applies a guarded move; the trigger enqueues the next stage in
// the same statement's transaction.
func (s Store) Transition(ctx context.Context, c domain.Change) (domain.Record, error) {
	var rec domain.Record
	var err error
	if s.Transitions != nil {
		rec, err = s.Transitions.Transition(ctx, c)
	} else {
		rec, err = db.Transition(ctx, s.Pool, c)
	}
	if errors.Is(err, db.ErrStale) {
		return rec, fmt.Errorf("%w: %w", jobs.ErrStale, err)
	}
	return rec, err
}

// WakeStageJob makes the domain's waiting stage job run now.
func (s Store) WakeStageJob(ctx context.Context, id string) error {
	_, err := db.WakeStageJob(ctx, s.Pool, id)
	return err
}

func (s Store) DeleteDisabled(ctx context.Context, id string, generation int64) (bool, error) {
	return db.DeleteDisabled(ctx, s.Pool, id, generation)
}

// RecordDetail writes operator detail to the domain's event history.
func (s Store) RecordDetail(ctx context.Context, rec domain.Record, detail map[string]any) error {
	return db.RecordDetail(ctx, s.Pool, rec, detail)
}

var _ jobs.HealStore = Store{}

// HoldActive runs fn while the row is held active (db.HoldActive).
func (s Store) HoldActive(ctx context.Context, id string, generation int64, fn func(ctx context.Context) (*jobs.HistoryEvent, error)) (bool, error) {
	return db.HoldActive(ctx, s.Pool, id, generation, func(ctx context.Context) (string, map[string]any, error) {
		ev, err := fn(ctx)
		if err != nil || ev == nil {
			return "", nil, err
		}
		return ev.Message, ev.Details, nil
	})
}

// DNS runs the dns package's checks for the verify_dns job.
type DNS struct {
	Resolver    *dns.Resolver
	CAAIdentity string
	Tracer      trace.Tracer
}

var _ jobs.DNSChecker = DNS{}

// CheckDNS checks the CNAME chain and CAA.
func (d DNS) CheckDNS(ctx context.Context, ref jobs.DomainRef) jobs.DNSVerdict {
	target := cmp.Or(ref.CNAMETarget, ref.CanonicalHost)
	ctx, sp := span(ctx, d.Tracer, "dns.check", ref, attribute.String("canonical_host", target))
	report := d.Resolver.Check(ctx, ref.Host, target, d.CAAIdentity)
	sp.SetAttributes(attribute.String("dns.outcome", string(report.Outcome)))
	var reportErr error
	if report.Outcome == dns.OutcomeResolverError {
		reportErr = errors.New(report.Message)
	}
	endSpan(sp, reportErr)
	observation, err := json.Marshal(report)
	if err != nil {
		observation = nil
	}
	return jobs.DNSVerdict{Outcome: jobs.DNSOutcome(report.Outcome), Message: report.Message, Observation: observation}
}

// Kube renders, snapshots and applies a domain's objects with the k8s package.
type Kube struct {
	Client      *k8s.Client
	Config      k8s.Config
	ManifestDir string
	Tracer      trace.Tracer
	Logger      *slog.Logger
	// ApplyErrors counts apply failures by kind (conflict, invalid, ...).
	ApplyErrors func(kind string)
}

var _ jobs.Kube = Kube{}

func toK8s(d jobs.DomainRef) k8s.Domain {
	return k8s.Domain{ID: d.ID, Tenant: d.Tenant, Host: d.Host, CanonicalHost: d.CanonicalHost}
}

// Apply renders, writes the snapshots (when a directory is set) and
// server-side applies.
func (k Kube) Apply(ctx context.Context, d jobs.DomainRef) (jobs.Applied, error) {
	return k.apply(ctx, d, k.Client.Apply)
}

// Reclaim is Apply taking back fields a hand edit changed since
// (k8s.Client.Reclaim).
func (k Kube) Reclaim(ctx context.Context, d jobs.DomainRef) (jobs.Applied, error) {
	return k.apply(ctx, d, k.Client.Reclaim)
}

func (k Kube) apply(ctx context.Context, d jobs.DomainRef, send func(context.Context, k8s.Objects) (k8s.ApplyResult, error)) (applied jobs.Applied, err error) {
	ctx, sp := span(ctx, k.Tracer, "kubernetes.apply", d)
	defer func() {
		endSpan(sp, err)
		if err != nil && k.ApplyErrors != nil {
			k.ApplyErrors(applyErrorKind(err))
		}
	}()
	objs, err := k8s.Render(toK8s(d), k.Config)
	if err != nil {
		return jobs.Applied{}, fmt.Errorf("%w: %w", jobs.ErrPermanent, err)
	}
	if k.ManifestDir != "" {
		if err := k8s.WriteSnapshots(k.ManifestDir, snapshotDir(d), objs); err != nil {
			return jobs.Applied{}, fmt.Errorf("write manifest snapshots: %w", err)
		}
	}
	res, err := send(ctx, objs)
	if err != nil {
		return jobs.Applied{}, kubeKind(permanentIfHopeless(err))
	}
	return jobs.Applied{SecretName: res.SecretName, ResourceVersion: res.CertificateResourceVersion, CertificateReady: res.CertificateReady}, nil
}

func applyErrorKind(err error) string {
	switch {
	case errors.Is(err, k8s.ErrNotOurs):
		return "not_ours"
	case errors.Is(err, k8s.ErrConflict):
		return "conflict"
	case errors.Is(err, k8s.ErrInvalid), errors.Is(err, k8s.ErrBadDomain):
		return "invalid"
	case errors.Is(err, k8s.ErrUnreachable):
		return "unreachable"
	case apierrors.IsForbidden(err):
		return "forbidden"
	}
	return "other"
}

// permanentIfHopeless marks errors that retrying the same request cannot
// fix, so the domain fails now with the API server's message instead of
// after the whole retry budget.
func permanentIfHopeless(err error) error {
	if errors.Is(err, k8s.ErrInvalid) || errors.Is(err, k8s.ErrConflict) || errors.Is(err, k8s.ErrBadDomain) ||
		errors.Is(err, k8s.ErrNotOurs) || apierrors.IsForbidden(err) {
		return fmt.Errorf("%w: %w", jobs.ErrPermanent, err)
	}
	return err
}

// kubeKind marks err with the jobs package's kind of Kube failure, which
// decides the sentence the tenant reads; the error itself, API server
// message and all, stays wrapped for the logs and the event history.
func kubeKind(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case errors.Is(err, k8s.ErrNotOurs):
		kind = jobs.ErrKubeNotOurs
	case apierrors.IsForbidden(err):
		kind = jobs.ErrKubeForbidden
	case errors.Is(err, k8s.ErrInvalid), errors.Is(err, k8s.ErrBadDomain):
		kind = jobs.ErrKubeInvalid
	case errors.Is(err, k8s.ErrConflict), apierrors.IsConflict(err):
		kind = jobs.ErrKubeConflict
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		kind = jobs.ErrKubeTimeout
	case errors.Is(err, k8s.ErrUnreachable):
		kind = jobs.ErrKubeUnavailable
	default:
		return err
	}
	return fmt.Errorf("%w: %w", kind, err)
}

// Drift reads the domain's objects and reports how they differ from what
// this worker renders.
func (k Kube) Drift(ctx context.Context, d jobs.DomainRef) ([]jobs.ObjectDrift, error) {
	objs, err := k8s.Render(toK8s(d), k.Config)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", jobs.ErrPermanent, err)
	}
	drift, err := k.Client.Drift(ctx, objs)
	if err != nil {
		return nil, kubeKind(err)
	}
	out := make([]jobs.ObjectDrift, len(drift))
	for i, o := range drift {
		out[i] = jobs.ObjectDrift{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Change: o.Change, Fields: o.Fields, Managers: o.Managers}
	}
	return out, nil
}

// CertificateReadyWatched asks the Certificate watch's cache.
func (k Kube) CertificateReadyWatched(d jobs.DomainRef) bool {
	names, err := k8s.NamesFor(toK8s(d), k.Config)
	if err != nil {
		return false
	}
	st, ok := k.Client.WatchedCertificateStatus(names.CertNamespace, names.Certificate)
	return ok && st.IsReady()
}

// ServeCertificate copies the TLS Secret into the gateway namespace when
// the gateway does not read the Certificate's (k8s.Client.CopySecretToGateway).
func (k Kube) ServeCertificate(ctx context.Context, d jobs.DomainRef) (served bool, err error) {
	ctx, sp := span(ctx, k.Tracer, "kubernetes.copy_secret", d)
	defer func() { endSpan(sp, err) }()
	res, err := k.Client.CopySecretToGateway(ctx, toK8s(d), k.Config)
	if err != nil {
		return false, kubeKind(permanentIfHopeless(err))
	}
	return res != k8s.SecretSourceMissing, nil
}

// CertificateState reads the Certificate's Ready condition and whether the
// routes exist.
func (k Kube) CertificateState(ctx context.Context, d jobs.DomainRef) (jobs.CertState, error) {
	names, err := k8s.NamesFor(toK8s(d), k.Config)
	if err != nil {
		return jobs.CertState{}, fmt.Errorf("%w: %w", jobs.ErrPermanent, err)
	}
	st, err := k.Client.GetCertificateStatus(ctx, names.CertNamespace, names.Certificate)
	if err != nil {
		return jobs.CertState{}, err
	}
	state := certState(st)
	if st.Exists {
		objs, err := k8s.Render(toK8s(d), k.Config)
		if err != nil {
			return jobs.CertState{}, fmt.Errorf("%w: %w", jobs.ErrPermanent, err)
		}
		state.Drift = certDrift(st, objs.Certificate)
	}
	if st.IssuingFailure != "" && !st.IsReady() {
		state.CAFailure = k.caFailure(ctx, d, names)
	}
	return state, nil
}

// caFailure reads the CA's reason from the failed issuance's Challenge or
// Order, which cert-manager keeps until its next attempt. Not being able
// to read it (a cluster without the RBAC rule) only costs the tenant the
// plainer message, so it is logged, not returned.
func (k Kube) caFailure(ctx context.Context, d jobs.DomainRef, names k8s.Names) *jobs.CAFailure {
	chain, err := k.Client.Issuance(ctx, names.CertNamespace, names.Certificate)
	if err != nil {
		if k.Logger != nil {
			k.Logger.Warn("could not read the failed issuance's Challenge for the CA's reason", "portal_domain_id", d.ID,
				"tenant_id", d.Tenant, "error", err)
		}
		return nil
	}
	p, ok := chain.CAProblem()
	if !ok {
		return nil
	}
	return &jobs.CAFailure{Kind: p.Type, Detail: p.Detail, URL: p.URL}
}

// certDrift names what of the Certificate in the cluster differs from the
// one this worker renders (someone edited it by hand); "" when nothing.
func certDrift(st k8s.CertStatus, want *unstructured.Unstructured) string {
	names, _, _ := unstructured.NestedStringSlice(want.Object, "spec", "dnsNames")
	secret, _, _ := unstructured.NestedString(want.Object, "spec", "secretName")
	var drift []string
	if !slices.Equal(st.DNSNames, names) {
		drift = append(drift, fmt.Sprintf("dnsNames %v instead of %v", st.DNSNames, names))
	}
	if st.SecretName != secret {
		drift = append(drift, fmt.Sprintf("secretName %q instead of %q", st.SecretName, secret))
	}
	return strings.Join(drift, ", ")
}

func certState(st k8s.CertStatus) jobs.CertState {
	ready := string(st.Ready)
	// Just after a re-apply the condition describes the previous spec.
	if st.Exists && st.ObservedGeneration != 0 && st.ObservedGeneration < st.Generation {
		ready = "Unknown"
	}
	return jobs.CertState{Found: st.Exists, Ready: ready, Reason: st.Reason, Message: st.Message,
		Since: st.LastTransitionTime, FailedIssuanceAttempts: st.FailedIssuanceAttempts, IssuingFailure: st.IssuingFailure,
		RoutesPresent: st.ObjectsPresent}
}

// Delete removes the objects and the snapshots. Objects that do not carry
// this installation's identity are left; when they are all that is left
// the error is jobs.ErrKubeNotOurs alone, which the disable job reports
// and moves past.
func (k Kube) Delete(ctx context.Context, d jobs.DomainRef) error {
	if err := k.Client.Delete(ctx, toK8s(d), k.Config); err != nil {
		var notOurs, others []error
		for _, e := range flatten(err) {
			if errors.Is(e, k8s.ErrNotOurs) {
				notOurs = append(notOurs, e)
			} else {
				others = append(others, e)
			}
		}
		if len(others) > 0 {
			return kubeKind(errors.Join(others...))
		}
		err = kubeKind(errors.Join(notOurs...))
		if rmErr := k.removeSnapshots(d); rmErr != nil {
			return errors.Join(err, rmErr)
		}
		return err
	}
	return k.removeSnapshots(d)
}

func (k Kube) removeSnapshots(d jobs.DomainRef) error {
	if k.ManifestDir != "" {
		if err := k8s.RemoveSnapshots(k.ManifestDir, snapshotDir(d)); err != nil {
			return fmt.Errorf("remove manifest snapshots: %w", err)
		}
	}
	return nil
}

// flatten returns the errors an errors.Join holds, or err alone.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Prober probes with the probe package.
type Prober struct {
	Config probe.Config
	Tracer trace.Tracer
}

var _ jobs.Prober = Prober{}

// Probe makes one HTTPS request.
func (p Prober) Probe(ctx context.Context, d jobs.DomainRef) jobs.ProbeResult {
	ctx, sp := span(ctx, p.Tracer, "https.probe", d)
	res := probe.Probe(ctx, p.Config, d.Host)
	sp.SetAttributes(attribute.Int("http.status_code", res.StatusCode))
	endSpan(sp, res.Err)
	return jobs.ProbeResult{OK: res.OK, Message: res.Message, CertificateNotAfter: res.CertificateNotAfter}
}

// snapshotDir is the runbook's <tenant7> folder: the canonical host's first
// label, which is the tenant's 7 characters except after a collision, when
// it is longer so two tenants never share a folder.
func snapshotDir(d jobs.DomainRef) string { return domain.CanonicalPrefix(d.CanonicalHost) }

// DomainsKeepingObjects tells the orphan sweep which domains still own
// their objects.
func (s Store) DomainsKeepingObjects(ctx context.Context, ids []string, disabledFor time.Duration) (map[string]bool, error) {
	return db.DomainsKeepingObjects(ctx, s.Pool, ids, disabledFor)
}

// Sweeper lists and deletes this installation's objects for the orphan
// sweep: only objects labelled with its installation id, and only in the
// namespaces this worker manages. Another deployment sharing the cluster
// (staging next to production) has another id, and its objects never look
// orphaned from here.
type Sweeper struct {
	Client       *k8s.Client
	Namespaces   []string
	Installation string
}

var _ jobs.Sweeper = Sweeper{}

// ListManaged lists every object carrying this installation's id.
func (s Sweeper) ListManaged(ctx context.Context) ([]jobs.ManagedObject, error) {
	if s.Installation == "" {
		return nil, errors.New("list managed objects: no installation id")
	}
	objs, err := s.Client.ListManaged(ctx, k8s.InstallationSelector(s.Installation))
	if err != nil {
		return nil, err
	}
	out := make([]jobs.ManagedObject, 0, len(objs))
	for _, o := range objs {
		if slices.Contains(s.Namespaces, o.Namespace) && o.Installation == s.Installation {
			out = append(out, jobs.ManagedObject{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, DomainID: o.DomainID,
				CreatedAt: o.CreatedAt, Handle: o})
		}
	}
	return out, nil
}

// DeleteManaged deletes one listed object (and a Certificate's Secret), if
// it still carries this installation's id and is unchanged since the list.
func (s Sweeper) DeleteManaged(ctx context.Context, obj jobs.ManagedObject) error {
	m, ok := obj.Handle.(k8s.ManagedObject)
	if !ok {
		return fmt.Errorf("delete %s %s/%s: not listed by this sweeper", obj.Kind, obj.Namespace, obj.Name)
	}
	return s.Client.DeleteManaged(ctx, m, s.Installation)
}

// Certificates lists this installation's Certificates for the stuck scan,
// in the namespace this worker puts them in (another deployment sharing the
// cluster alerts on its own).
type Certificates struct {
	Client       *k8s.Client
	Namespace    string
	Installation string
}

var _ jobs.CertificateLister = Certificates{}

var _ jobs.CAFailureReader = Certificates{}

// CAFailure reads the CA's reason for the Certificate's failed issuance
// from its Challenge or Order; nil when cert-manager kept none or reading
// failed (the alert then carries cert-manager's words alone).
func (c Certificates) CAFailure(ctx context.Context, namespace, name string) *jobs.CAFailure {
	chain, err := c.Client.Issuance(ctx, namespace, name)
	if err != nil {
		return nil
	}
	p, ok := chain.CAProblem()
	if !ok {
		return nil
	}
	return &jobs.CAFailure{Kind: p.Type, Detail: p.Detail, URL: p.URL}
}

// ManagedCertificates lists Certificates carrying this installation's id.
func (c Certificates) ManagedCertificates(ctx context.Context) ([]jobs.Certificate, error) {
	if c.Installation == "" {
		return nil, errors.New("list managed certificates: no installation id")
	}
	objs, err := c.Client.ListManaged(ctx, k8s.InstallationSelector(c.Installation))
	if err != nil {
		return nil, err
	}
	var out []jobs.Certificate
	for _, o := range objs {
		if o.Kind != "Certificate" || o.Namespace != c.Namespace {
			continue
		}
		st := o.Certificate
		out = append(out, jobs.Certificate{Namespace: o.Namespace, Name: o.Name, DomainID: o.DomainID,
			Ready: string(st.Ready), Reason: st.Reason, Message: st.Message,
			LastTransitionTime: st.LastTransitionTime, CreatedAt: o.CreatedAt,
			FailedIssuanceAttempts: st.FailedIssuanceAttempts, LastFailureTime: st.LastFailureTime,
			Stale:          st.ObservedGeneration != 0 && st.ObservedGeneration < st.Generation,
			IssuingFailure: st.IssuingFailure, NotAfter: st.NotAfter, RenewalTime: st.RenewalTime})
	}
	return out, nil
}

// AlertStore gives the stuck scan the database. Opening (or resolving) an
// alert and enqueuing its alert_webhook job share one transaction, so the
// job exists exactly when the alert changed: never lost to a crash between
// the two, never enqueued twice (only the INSERT that won notifies).
type AlertStore struct {
	Pool *pgxpool.Pool
	// River is an insert-only client for InsertTx.
	River *river.Client[pgx.Tx]
}

var _ jobs.AlertStore = (*AlertStore)(nil)

// NewAlertStore builds the store with its own insert-only River client.
func NewAlertStore(pool *pgxpool.Pool, logger *slog.Logger) (*AlertStore, error) {
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("river insert client for alerts: %w", err)
	}
	return &AlertStore{Pool: pool, River: client}, nil
}

// OpenAlerts returns the unresolved alerts.
func (s *AlertStore) OpenAlerts(ctx context.Context) ([]jobs.Alert, error) {
	rows, err := db.OpenAlerts(ctx, s.Pool)
	if err != nil {
		return nil, err
	}
	out := make([]jobs.Alert, len(rows))
	for i, a := range rows {
		out[i] = toJobsAlert(a)
	}
	return out, nil
}

// StuckDomains reads the stuck rows through the working index.
func (s *AlertStore) StuckDomains(ctx context.Context, cutoffs map[domain.Status]time.Time, limit int) ([]domain.Record, error) {
	return db.StuckDomains(ctx, s.Pool, cutoffs, limit)
}

// Domains reads rows by id.
func (s *AlertStore) Domains(ctx context.Context, ids []string) (map[string]domain.Record, error) {
	return db.DomainsByID(ctx, s.Pool, ids)
}

// OpenAlert opens the alert and, when it is new and notify is set,
// enqueues its webhook job in the same transaction.
func (s *AlertStore) OpenAlert(ctx context.Context, o jobs.AlertOpening, notify bool) (jobs.Alert, bool, error) {
	na := db.NewAlert{DomainID: o.DomainID, Kind: o.Kind, Reason: o.Reason, Message: o.Message,
		FailedIssuanceAttempts: o.FailedIssuanceAttempts, LastFailureTime: timePtr(o.LastFailureTime),
		NotReadySince: timePtr(o.NotReadySince), Details: o.Details, WhileStatus: string(o.WhileStatus),
		WhileSince: timePtr(o.WhileSince)}
	var out jobs.Alert
	var opened bool
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		a, ok, err := db.OpenAlert(ctx, tx, na)
		if err != nil || !ok {
			return err
		}
		out, opened = toJobsAlert(a), true
		return s.notify(ctx, tx, notify, jobs.AlertEventOpened, out)
	})
	if err != nil {
		return jobs.Alert{}, false, err
	}
	return out, opened, nil
}

// ResolveAlert resolves the alert and, when this call did and notify is
// set, enqueues its webhook job in the same transaction.
func (s *AlertStore) ResolveAlert(ctx context.Context, id int64, resolution string, notify bool) (jobs.Alert, bool, error) {
	var out jobs.Alert
	var resolved bool
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		a, ok, err := db.ResolveAlert(ctx, tx, id, resolution)
		if err != nil || !ok {
			return err
		}
		out, resolved = toJobsAlert(a), true
		return s.notify(ctx, tx, notify, jobs.AlertEventResolved, out)
	})
	if err != nil {
		return jobs.Alert{}, false, err
	}
	return out, resolved, nil
}

func (s *AlertStore) notify(ctx context.Context, tx pgx.Tx, notify bool, event string, a jobs.Alert) error {
	if !notify {
		return nil
	}
	if _, err := s.River.InsertTx(ctx, tx, jobs.NewAlertWebhookArgs(event, a), nil); err != nil {
		return fmt.Errorf("enqueue %s webhook for alert %d: %w", event, a.ID, err)
	}
	return nil
}

func toJobsAlert(a db.Alert) jobs.Alert {
	out := jobs.Alert{ID: a.ID, Kind: a.Kind, DomainID: a.DomainID, Tenant: a.Tenant, Domain: a.Domain,
		Reason: a.Reason, Message: a.Message, FailedIssuanceAttempts: a.FailedIssuanceAttempts,
		OpenedAt: a.OpenedAt, Resolution: a.Resolution}
	if a.LastFailureTime != nil {
		out.LastFailureTime = *a.LastFailureTime
	}
	if a.NotReadySince != nil {
		out.NotReadySince = *a.NotReadySince
	}
	if a.ResolvedAt != nil {
		out.ResolvedAt = *a.ResolvedAt
	}
	if len(a.Details) > 0 {
		_ = json.Unmarshal(a.Details, &out.Details) // written by OpenAlert as a JSON object
		if len(out.Details) == 0 {
			out.Details = nil
		}
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

var _ jobs.StageJobEnqueuer = Store{}

func (s Store) EnqueueMissingStageJobs(ctx context.Context, after domain.ReconcileCursor, window int) (int, domain.ReconcileCursor, error) {
	return db.EnqueueMissingStageJobs(ctx, s.Pool, after, window)
}

// GetDomainByTenant reads a tenant's row, for the git_record job.
func (s Store) GetDomainByTenant(ctx context.Context, tenant string) (domain.Record, error) {
	rec, err := db.GetDomainByTenant(ctx, s.Pool, domain.TenantID(tenant))
	if errors.Is(err, db.ErrNotFound) {
		return rec, fmt.Errorf("%w: %w", jobs.ErrNotFound, err)
	}
	return rec, err
}

var _ jobs.TenantDomains = Store{}

// Manifests renders a domain's objects as the snapshots' JSON documents.
type Manifests struct{ Config k8s.Config }

var _ jobs.ManifestRenderer = Manifests{}

// Manifests renders the Certificate, Gateway and VirtualService.
func (m Manifests) Manifests(d jobs.DomainRef) ([][]byte, error) {
	objs, err := k8s.Render(toK8s(d), m.Config)
	if err != nil {
		return nil, err
	}
	var docs [][]byte
	for _, o := range []*unstructured.Unstructured{objs.Certificate, objs.Gateway, objs.VirtualService} {
		b, err := k8s.SnapshotJSON(o)
		if err != nil {
			return nil, err
		}
		docs = append(docs, b)
	}
	return docs, nil
}

// GitRecorder commits manifest changes with the gitrecord package.
type GitRecorder struct{ Recorder *gitrecord.Recorder }

var _ jobs.GitRecorder = GitRecorder{}

// Record commits and pushes c once.
func (g GitRecorder) Record(ctx context.Context, c jobs.GitChange) (string, error) {
	res, err := g.Recorder.Record(ctx, gitrecord.Change{Key: c.Key, Tenant: c.Tenant, DomainID: c.DomainID, Domain: c.Domain,
		Slug: c.Slug, Status: string(c.Status), Generation: c.Generation, Documents: c.Documents})
	return res.Outcome, err
}

var _ jobs.ChangeReviewer = GitRecorder{}

// Propose puts c on its review branch and says whether it was merged.
func (g GitRecorder) Propose(ctx context.Context, c jobs.GitChange) (string, bool, error) {
	p, err := g.Recorder.Propose(ctx, gitrecord.Change{Key: c.Key, Tenant: c.Tenant, DomainID: c.DomainID, Domain: c.Domain,
		Slug: c.Slug, Status: string(c.Status), Generation: c.Generation, Documents: c.Documents})
	return p.Branch, p.Merged, err
}

// Rechecks gives the live re-check of active domains the database. The
// scheduler's claim, the jobs it enqueues and the moved next checks share
// one transaction: a check is enqueued exactly when its time was moved on.
type Rechecks struct {
	Pool *pgxpool.Pool
	// River is an insert-only client for InsertManyTx.
	River *river.Client[pgx.Tx]
}

var _ jobs.Rechecks = Rechecks{}

// ScheduleNew gives active domains not seen in their generation a first
// check.
func (r Rechecks) ScheduleNew(ctx context.Context, limit int, first func() time.Time) (int, error) {
	var n int
	err := db.InTx(ctx, r.Pool, func(tx pgx.Tx) error {
		found, err := db.UnscheduledActive(ctx, tx, limit)
		if err != nil || len(found) == 0 {
			return err
		}
		at := make([]time.Time, len(found))
		for i := range found {
			at[i] = first()
		}
		n = len(found)
		return db.AddRechecks(ctx, tx, found, at)
	})
	return n, err
}

// EnqueueDue claims the due checks, enqueues a job for each live one, moves
// its next check and drops the rest, in one transaction.
func (r Rechecks) EnqueueDue(ctx context.Context, limit int, next func() time.Time) (enqueued, dropped int, err error) {
	err = db.InTx(ctx, r.Pool, func(tx pgx.Tx) error {
		due, err := db.ClaimDueRechecks(ctx, tx, limit)
		if err != nil || len(due) == 0 {
			return err
		}
		var live, gone []string
		var nexts []time.Time
		params := make([]river.InsertManyParams, 0, len(due))
		for _, d := range due {
			if !d.Live {
				gone = append(gone, d.DomainID)
				continue
			}
			live = append(live, d.DomainID)
			nexts = append(nexts, next())
			params = append(params, river.InsertManyParams{Args: jobs.RecheckArgs{
				DomainArgs: jobs.DomainArgs{DomainID: d.DomainID, Generation: d.Generation}, Due: d.Due.UTC()}})
		}
		if len(params) > 0 {
			if _, err := r.River.InsertManyTx(ctx, tx, params); err != nil {
				return fmt.Errorf("enqueue %d re-checks: %w", len(params), err)
			}
		}
		if err := db.MoveRechecks(ctx, tx, live, nexts); err != nil {
			return err
		}
		if err := db.DropRechecks(ctx, tx, gone); err != nil {
			return err
		}
		enqueued, dropped = len(live), len(gone)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return enqueued, dropped, nil
}

// RecheckState reads the domain's re-check row and open re-check alerts.
func (r Rechecks) RecheckState(ctx context.Context, domainID string) (jobs.RecheckState, error) {
	row, err := db.GetRecheck(ctx, r.Pool, domainID)
	if errors.Is(err, db.ErrNotFound) {
		return jobs.RecheckState{}, nil
	}
	if err != nil {
		return jobs.RecheckState{}, err
	}
	state := jobs.RecheckState{ProblemKind: row.ProblemKind}
	if row.ProblemSince != nil {
		state.ProblemSince = *row.ProblemSince
	}
	for _, a := range row.OpenAlerts {
		if state.OpenAlerts == nil {
			state.OpenAlerts = map[string]int64{}
		}
		state.OpenAlerts[a.Kind] = a.ID
	}
	return state, nil
}

// RecordRecheck stores a result in one transaction.
func (r Rechecks) RecordRecheck(ctx context.Context, rec jobs.RecheckRecord) (bool, error) {
	res := db.RecheckResult{DomainID: rec.DomainID, Generation: rec.Generation, Outcome: rec.Outcome,
		ProblemKind: rec.ProblemKind, ProblemSince: timePtr(rec.ProblemSince), ServedNotAfter: timePtr(rec.ServedNotAfter),
		CheckBy: timePtr(rec.CheckBy), Message: rec.Message, Details: rec.Details}
	err := db.InTx(ctx, r.Pool, func(tx pgx.Tx) error { return db.RecordRecheck(ctx, tx, res) })
	if errors.Is(err, db.ErrStale) {
		return false, nil
	}
	return err == nil, err
}
