package k8s_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/portal-domains/portal-domains/k8s"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func randomUUID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newDomain(t testing.TB) k8s.Domain {
	tenant := randomUUID(t)
	return k8s.Domain{
		ID:            randomUUID(t),
		Tenant:        tenant,
		Host:          "portal-" + tenant[:7] + ".example.com",
		CanonicalHost: tenant[:7] + ".portal.algapsa.com",
	}
}

// bundle is one test's view of the shared API server: its own namespaces,
// a Client and a domain to work on.
type bundle struct {
	env    *kubetest.Env
	client *k8s.Client
	cfg    k8s.Config
	d      k8s.Domain
	names  k8s.Names
}

// setupLogged is setup on a client whose every request goes into the
// returned log.
func setupLogged(t *testing.T) (*bundle, *requestLog) {
	t.Helper()
	env := kubetest.Start(t)
	log := &requestLog{}
	restCfg := rest.CopyConfig(env.Config)
	restCfg.WrapTransport = log.wrap
	return setupOn(t, env, restCfg), log
}

func setupOn(t *testing.T, env *kubetest.Env, restCfg *rest.Config) *bundle {
	t.Helper()
	cfg := k8s.Config{
		CertNamespace:    env.Namespace(t, "msp"),
		GatewayNamespace: env.Namespace(t, "gw"),
		Installation:     randomUUID(t),
	}
	if restCfg == nil {
		restCfg = env.Config
	}
	client, err := k8s.NewClient(restCfg)
	require.NoError(t, err)
	d := newDomain(t)
	names, err := k8s.NamesFor(d, cfg)
	require.NoError(t, err)
	return &bundle{env: env, client: client, cfg: cfg, d: d, names: names}
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupOn(t, kubetest.Start(t), nil)
}

func (b *bundle) render(t *testing.T) k8s.Objects {
	t.Helper()
	objs, err := k8s.Render(b.d, b.cfg)
	require.NoError(t, err)
	return objs
}

func (b *bundle) apply(t *testing.T) k8s.ApplyResult {
	t.Helper()
	res, err := b.client.Apply(t.Context(), b.render(t))
	require.NoError(t, err)
	return res
}

func (b *bundle) get(t *testing.T, gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	return b.env.Dynamic.Resource(gvr).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
}

func TestApply(t *testing.T) {
	t.Parallel()

	t.Run("CreatesObjectsWithFieldManager", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res := b.apply(t)
		require.NotEmpty(t, res.CertificateResourceVersion)
		require.NotEmpty(t, res.GatewayResourceVersion)
		require.NotEmpty(t, res.VirtualServiceResourceVersion)
		require.Equal(t, b.names.Secret, res.SecretName)

		for _, o := range []struct {
			gvr      schema.GroupVersionResource
			ns, name string
		}{
			{k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate},
			{k8s.GatewayGVR, b.cfg.GatewayNamespace, b.names.Gateway},
			{k8s.VirtualServiceGVR, b.cfg.CertNamespace, b.names.VirtualService},
		} {
			got, err := b.get(t, o.gvr, o.ns, o.name)
			require.NoError(t, err)
			require.Equal(t, b.d.ID, got.GetLabels()[k8s.LabelDomainID])
			mf := got.GetManagedFields()
			require.Len(t, mf, 1, "only our manager touched %s", o.name)
			require.Equal(t, k8s.FieldManager, mf[0].Manager)
			require.Equal(t, metav1.ManagedFieldsOperationApply, mf[0].Operation)
		}
	})

	t.Run("ReapplyChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first := b.apply(t)
		second := b.apply(t)
		require.Equal(t, first, second)
	})

	t.Run("ConfigChangeConverges", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first := b.apply(t)

		b.cfg.ChallengeHost = "solver.example.svc"
		withChallenge := b.apply(t)
		require.Equal(t, first.CertificateResourceVersion, withChallenge.CertificateResourceVersion)
		require.NotEqual(t, first.VirtualServiceResourceVersion, withChallenge.VirtualServiceResourceVersion)
		vs, err := b.get(t, k8s.VirtualServiceGVR, b.cfg.CertNamespace, b.names.VirtualService)
		require.NoError(t, err)
		routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
		require.Len(t, routes, 3)

		// Fields the worker no longer sets are removed by server-side apply.
		b.cfg.ChallengeHost = ""
		b.apply(t)
		vs, err = b.get(t, k8s.VirtualServiceGVR, b.cfg.CertNamespace, b.names.VirtualService)
		require.NoError(t, err)
		routes, _, _ = unstructured.NestedSlice(vs.Object, "spec", "http")
		require.Len(t, routes, 1)
		gw, err := b.get(t, k8s.GatewayGVR, b.cfg.GatewayNamespace, b.names.Gateway)
		require.NoError(t, err)
		servers, _, _ := unstructured.NestedSlice(gw.Object, "spec", "servers")
		require.Len(t, servers, 1)
	})

	t.Run("ConflictWithAnotherManager", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.apply(t)
		// An operator edits the Certificate by hand.
		cert, err := b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.NoError(t, unstructured.SetNestedField(cert.Object, "hand-edited-secret", "spec", "secretName"))
		_, err = b.env.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.CertNamespace).
			Update(t.Context(), cert, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
		require.NoError(t, err)

		_, err = b.client.Apply(t.Context(), b.render(t))
		require.ErrorIs(t, err, k8s.ErrConflict)
		require.NotErrorIs(t, err, k8s.ErrInvalid)
		require.True(t, apierrors.IsConflict(err), "the API error stays wrapped")
		require.ErrorContains(t, err, "apply Certificate "+b.cfg.CertNamespace+"/"+b.names.Certificate)
		require.ErrorContains(t, err, `.spec.secretName is owned by field manager "kubectl-edit"`)
		t.Log(err)

		// The hand edit is still there: Force is off.
		cert, err = b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		got, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		require.Equal(t, "hand-edited-secret", got)

		// Reclaim (Apply with Force) takes the field back.
		res, err := b.client.Reclaim(t.Context(), b.render(t))
		require.NoError(t, err)
		require.Equal(t, b.names.Secret, res.SecretName)
		cert, err = b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		got, _, _ = unstructured.NestedString(cert.Object, "spec", "secretName")
		require.Equal(t, b.names.Secret, got)
		_, err = b.client.Apply(t.Context(), b.render(t))
		require.NoError(t, err, "after a reclaim a plain apply no longer conflicts")
	})

	t.Run("SameValueFromAnotherManagerIsNoConflict", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		objs := b.render(t)
		// Someone (e.g. an earlier deployment) created the same object.
		_, err := b.env.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.CertNamespace).
			Create(t.Context(), objs.Certificate.DeepCopy(), metav1.CreateOptions{FieldManager: "algapsa"})
		require.NoError(t, err)
		_, err = b.client.Apply(t.Context(), objs)
		require.NoError(t, err)
	})

	invalid := []struct {
		name string
		edit func(objs k8s.Objects)
		want []string
	}{
		{
			name: "EnumValue",
			edit: func(objs k8s.Objects) {
				_ = unstructured.SetNestedField(objs.Certificate.Object, "Sometimes", "spec", "privateKey", "rotationPolicy")
			},
			want: []string{"spec.privateKey.rotationPolicy", "Unsupported value", "Sometimes"},
		},
		{
			name: "WrongType",
			edit: func(objs k8s.Objects) {
				_ = unstructured.SetNestedField(objs.Certificate.Object, "portal.acme.com", "spec", "dnsNames")
			},
			want: []string{"dnsNames", "expected list"},
		},
		{
			name: "IssuerRefWithoutName",
			edit: func(objs k8s.Objects) {
				unstructured.RemoveNestedField(objs.Certificate.Object, "spec", "issuerRef", "name")
			},
			want: []string{"spec.issuerRef.name", "Required value"},
		},
		{
			name: "GatewayTLSMode",
			edit: func(objs k8s.Objects) {
				servers, _, _ := unstructured.NestedSlice(objs.Gateway.Object, "spec", "servers")
				servers[0].(map[string]any)["tls"].(map[string]any)["mode"] = "SIMPLEST"
				_ = unstructured.SetNestedSlice(objs.Gateway.Object, servers, "spec", "servers")
			},
			want: []string{"apply Gateway", "SIMPLEST"},
		},
	}
	for _, tc := range invalid {
		t.Run("Invalid"+tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			objs := b.render(t)
			tc.edit(objs)
			_, err := b.client.Apply(t.Context(), objs)
			require.ErrorIs(t, err, k8s.ErrInvalid)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			t.Log(err)
		})
	}
}

func TestGetCertificateStatus(t *testing.T) {
	t.Parallel()

	t.Run("FollowsReadyCondition", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)

		st, err := b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.True(t, st.Exists)
		require.Equal(t, k8s.ReadyMissing, st.Ready)
		require.True(t, st.ObjectsPresent)
		require.False(t, st.IsReady())
		require.Equal(t, b.names.Secret, st.SecretName)

		require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, false, "Failed",
			"The certificate request has failed to complete and will be retried: 429 urn:ietf:params:acme:error:rateLimited"))
		st, err = b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.Equal(t, k8s.ReadyFalse, st.Ready)
		require.Equal(t, "Failed", st.Reason)
		require.Contains(t, st.Message, "rateLimited")
		require.Equal(t, 1, st.FailedIssuanceAttempts)
		require.False(t, st.LastFailureTime.IsZero())
		require.False(t, st.LastTransitionTime.IsZero())
		require.False(t, st.IsReady())

		require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, true, "Ready",
			"Certificate is up to date and has not expired"))
		st, err = b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.Equal(t, k8s.ReadyTrue, st.Ready)
		require.True(t, st.IsReady())
		require.Zero(t, st.FailedIssuanceAttempts)
		require.True(t, st.NotAfter.After(time.Now().Add(80*24*time.Hour)))
	})

	t.Run("ReadyForOldGenerationIsNotReady", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)
		require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, true, "Ready", "ok"))
		b.cfg.IssuerName = "letsencrypt-staging" // spec change: new generation
		b.apply(t)
		st, err := b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.Equal(t, k8s.ReadyTrue, st.Ready)
		require.Greater(t, st.Generation, st.ObservedGeneration)
		require.False(t, st.IsReady())
	})

	t.Run("MissingCertificate", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		st, err := b.client.GetCertificateStatus(t.Context(), b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.Equal(t, k8s.CertStatus{}, st)
	})

	t.Run("MissingGateway", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.apply(t)
		require.NoError(t, b.env.Dynamic.Resource(k8s.GatewayGVR).Namespace(b.cfg.GatewayNamespace).
			Delete(t.Context(), b.names.Gateway, metav1.DeleteOptions{}))
		st, err := b.client.GetCertificateStatus(t.Context(), b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.True(t, st.Exists)
		require.False(t, st.ObjectsPresent)
	})
}

// watcher collects WatchCertificates callbacks for one domain.
type watcher struct {
	mu     sync.Mutex
	events []k8s.CertStatus
	ch     chan k8s.CertStatus
}

func watch(t *testing.T, client *k8s.Client, domainID string) *watcher {
	t.Helper()
	w := &watcher{ch: make(chan k8s.CertStatus, 100)}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() {
		done <- client.WatchCertificates(ctx, func(id string, st k8s.CertStatus) {
			if id != domainID {
				return // other tests share the API server
			}
			w.mu.Lock()
			w.events = append(w.events, st)
			w.mu.Unlock()
			w.ch <- st
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return w
}

// next waits for the next callback. The bound only keeps a broken watch
// from hanging the test; it is not a latency assertion.
func (w *watcher) next(t *testing.T, want func(k8s.CertStatus) bool) k8s.CertStatus {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case st := <-w.ch:
			if want(st) {
				return st
			}
		case <-timeout:
			t.Fatal("no matching certificate callback")
		}
	}
}

func TestWatchCertificates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	w := watch(t, b.client, b.d.ID)

	b.apply(t)
	st := w.next(t, func(s k8s.CertStatus) bool { return s.Exists })
	require.Equal(t, k8s.ReadyMissing, st.Ready)

	start := time.Now()
	require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, false, "Failed", "challenge failed"))
	st = w.next(t, func(s k8s.CertStatus) bool { return s.Ready == k8s.ReadyFalse })
	t.Logf("Ready=False seen %s after the status write", time.Since(start))
	require.Equal(t, "challenge failed", st.Message)
	require.Equal(t, 1, st.FailedIssuanceAttempts)

	start = time.Now()
	require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, true, "Ready", "up to date"))
	st = w.next(t, func(s k8s.CertStatus) bool { return s.Ready == k8s.ReadyTrue })
	t.Logf("Ready=True seen %s after the status write", time.Since(start))
	require.True(t, st.IsReady())

	// A change that does not touch Ready (an annotation) is not reported.
	cert, err := b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	cert.SetAnnotations(map[string]string{"note": "x"})
	_, err = b.env.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.CertNamespace).Update(ctx, cert, metav1.UpdateOptions{})
	require.NoError(t, err)

	require.NoError(t, b.client.Delete(ctx, b.d, b.cfg))
	st = w.next(t, func(k8s.CertStatus) bool { return true })
	require.False(t, st.Exists, "the next callback is the delete, not the annotation change")
}

func TestDelete(t *testing.T) {
	t.Parallel()

	t.Run("LeavesNothingBehind", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)
		_, err := b.env.CreateTLSSecret(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)

		require.NoError(t, b.client.Delete(ctx, b.d, b.cfg))
		for _, o := range []struct {
			gvr      schema.GroupVersionResource
			ns, name string
		}{
			{k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate},
			{k8s.SecretGVR, b.cfg.CertNamespace, b.names.Secret},
			{k8s.GatewayGVR, b.cfg.GatewayNamespace, b.names.Gateway},
			{k8s.VirtualServiceGVR, b.cfg.CertNamespace, b.names.VirtualService},
		} {
			_, err := b.get(t, o.gvr, o.ns, o.name)
			require.True(t, apierrors.IsNotFound(err), "%s %s still there: %v", o.gvr.Resource, o.name, err)
		}
		for _, gvr := range []schema.GroupVersionResource{k8s.CertificateGVR, k8s.VirtualServiceGVR, k8s.SecretGVR} {
			list, err := b.env.Dynamic.Resource(gvr).Namespace(b.cfg.CertNamespace).List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			require.Empty(t, list.Items, gvr.Resource)
		}

		require.NoError(t, b.client.Delete(ctx, b.d, b.cfg), "deleting again is fine")
	})

	t.Run("LeavesForeignSecret", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)
		foreign := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata":   map[string]any{"name": b.names.Secret, "namespace": b.cfg.CertNamespace},
			"stringData": map[string]any{"password": "hunter2"},
		}}
		require.NoError(t, b.env.Create(ctx, foreign))

		err := b.client.Delete(ctx, b.d, b.cfg)
		require.ErrorContains(t, err, "not deleted")
		_, err = b.get(t, k8s.SecretGVR, b.cfg.CertNamespace, b.names.Secret)
		require.NoError(t, err)
		_, err = b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
		require.True(t, apierrors.IsNotFound(err), "the other objects are still deleted")
	})
}

func TestListManaged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	b.apply(t)
	other := newDomain(t)
	objs, err := k8s.Render(other, b.cfg)
	require.NoError(t, err)
	_, err = b.client.Apply(ctx, objs)
	require.NoError(t, err)
	require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, false, "Failed", "stuck"))
	_, err = b.env.CreateTLSSecret(ctx, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)

	all, err := b.client.ListManaged(ctx, k8s.InstallationSelector(b.cfg.Installation))
	require.NoError(t, err)
	mine := map[string]k8s.ManagedObject{}
	for _, m := range all {
		if m.DomainID == b.d.ID || m.DomainID == other.ID {
			mine[m.DomainID+"/"+m.Kind] = m
		}
	}
	require.Len(t, mine, 6)
	cert := mine[b.d.ID+"/Certificate"]
	require.Equal(t, b.d.Tenant, cert.Tenant)
	require.Equal(t, b.d.Host, cert.Host)
	require.Equal(t, b.names.Certificate, cert.Name)
	require.Equal(t, k8s.ReadyFalse, cert.Certificate.Ready)
	require.Equal(t, 1, cert.Certificate.FailedIssuanceAttempts)
	require.Equal(t, b.cfg.GatewayNamespace, mine[other.ID+"/Gateway"].Namespace)

	t.Run("DeleteManaged", func(t *testing.T) {
		stale := cert
		stale.ResourceVersion = "1"
		err := b.client.DeleteManaged(ctx, stale, b.cfg.Installation)
		require.ErrorContains(t, err, "changed since it was listed")

		require.NoError(t, b.client.DeleteManaged(ctx, cert, b.cfg.Installation))
		_, err = b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
		require.True(t, apierrors.IsNotFound(err))
		_, err = b.get(t, k8s.SecretGVR, b.cfg.CertNamespace, b.names.Secret)
		require.True(t, apierrors.IsNotFound(err), "the Certificate's Secret goes with it")
		require.NoError(t, b.client.DeleteManaged(ctx, mine[b.d.ID+"/Gateway"], b.cfg.Installation))
		require.NoError(t, b.client.DeleteManaged(ctx, cert, b.cfg.Installation), "already gone is fine")
	})
}

// TestUnreachable stops the API server under a Client and a running watch,
// then brings it back: calls fail with ErrUnreachable while it is down, and
// both the calls and the watch recover by themselves.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	env := kubetest.StartDedicated(t)
	b := setupOn(t, env, nil)
	ctx := t.Context()
	w := watch(t, b.client, b.d.ID)
	b.apply(t)
	w.next(t, func(s k8s.CertStatus) bool { return s.Exists })

	env.StopAPIServer(t)
	_, err := b.client.Apply(ctx, b.render(t))
	require.ErrorIs(t, err, k8s.ErrUnreachable)
	t.Log(err)
	_, err = b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
	require.ErrorIs(t, err, k8s.ErrUnreachable)
	_, err = b.client.ListManaged(ctx, k8s.InstallationSelector(b.cfg.Installation))
	require.ErrorIs(t, err, k8s.ErrUnreachable)
	require.ErrorIs(t, b.client.Delete(ctx, b.d, b.cfg), k8s.ErrUnreachable)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.client.Apply(cancelled, b.render(t))
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, k8s.ErrUnreachable, "a caller's cancel is not the API server's fault")

	env.StartAPIServer(t)
	_, err = b.client.Apply(ctx, b.render(t))
	require.NoError(t, err)

	start := time.Now()
	require.NoError(t, env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, true, "Ready", "issued"))
	w.next(t, func(s k8s.CertStatus) bool { return s.Ready == k8s.ReadyTrue })
	t.Logf("watch saw Ready %s after the write, following an API server restart", time.Since(start))
}

func TestNewClient(t *testing.T) {
	t.Parallel()
	_, err := k8s.NewClient(nil)
	require.Error(t, err)
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	c, err := k8s.NewClient(cfg)
	require.NoError(t, err)
	require.Zero(t, cfg.QPS, "the caller's config is not modified")
	_, err = c.GetCertificateStatus(t.Context(), "msp", "portal-domain-x")
	require.ErrorIs(t, err, k8s.ErrUnreachable)
	require.False(t, errors.Is(err, k8s.ErrInvalid))
	require.Contains(t, fmt.Sprint(err), "get Certificate msp/portal-domain-x")
}

// requestLog records the API requests a client makes.
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "GET /apis/.../certificates/name?resourceVersion=0"
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.RequestURI())
		l.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCertificateReadsUseTheWatch: while WatchCertificates runs, the await
// job's reads of a Certificate come from the informer that woke it (no
// request), and the routes come from the API server's watch cache
// (resourceVersion=0), not quorum reads through etcd. A deleted object is
// still seen as deleted.
func TestCertificateReadsUseTheWatch(t *testing.T) {
	t.Parallel()
	b, log := setupLogged(t)
	ctx := t.Context()

	b.apply(t)
	fromAPI, err := b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	require.True(t, fromAPI.Exists)
	require.Contains(t, log.take(), "GET /apis/cert-manager.io/v1/namespaces/"+b.cfg.CertNamespace+"/certificates/"+b.names.Certificate+"?timeout=30s",
		"without a watch the Certificate is read from the API server, a quorum read")

	_, known := b.client.WatchedCertificateStatus(b.cfg.CertNamespace, b.names.Certificate)
	require.False(t, known, "no watch, nothing known")
	w := watch(t, b.client, b.d.ID)
	require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, true, "Ready", "up to date"))
	w.next(t, func(s k8s.CertStatus) bool { return s.IsReady() })
	log.take()
	watched, known := b.client.WatchedCertificateStatus(b.cfg.CertNamespace, b.names.Certificate)
	require.True(t, known)
	require.True(t, watched.IsReady(), "the watch's cache holds the Ready it reported")
	require.Empty(t, log.take(), "asking the watch's cache makes no request")

	st, err := b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	require.True(t, st.IsReady(), "the informer's copy has the Ready that woke the job")
	require.True(t, st.ObjectsPresent)
	require.Equal(t, fromAPI.DNSNames, st.DNSNames)
	require.Equal(t, fromAPI.SecretName, st.SecretName)
	reqs := log.take()
	var cachedReads []string
	for _, r := range reqs {
		require.NotContains(t, r, "/certificates/", "the Certificate comes from the informer: %v", reqs)
		if strings.Contains(r, "resourceVersion=0") {
			cachedReads = append(cachedReads, r)
		}
	}
	// Routes are read from the API server's watch cache first; a cache
	// that has not caught up yet (seen right after the CRDs appear) is
	// answered by a quorum read, which is what the fallback is for.
	require.Len(t, cachedReads, 2, "the VirtualService and the Gateway, from the watch cache: %v", reqs)
	require.LessOrEqual(t, len(reqs), 4, reqs)

	// Deleted behind the cache's back: a cache miss is confirmed with a
	// quorum read, never taken on trust.
	require.NoError(t, b.env.Dynamic.Resource(k8s.GatewayGVR).Namespace(b.cfg.GatewayNamespace).
		Delete(ctx, b.names.Gateway, metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		st, err := b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
		return err == nil && st.Exists && !st.ObjectsPresent
	}, 30*time.Second, 50*time.Millisecond, "a deleted Gateway is reported missing")
	require.NoError(t, b.client.Delete(ctx, b.d, b.cfg))
	w.next(t, func(s k8s.CertStatus) bool { return !s.Exists })
	st, err = b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	require.False(t, st.Exists)
}

// TestOwnership: objects carry their installation's id, and a client
// configured with another id neither writes over them nor deletes them;
// objects without an id are left alone until adopted.
func TestOwnership(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	b.apply(t)
	cert, err := b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	require.Equal(t, b.cfg.Installation, cert.GetLabels()[k8s.LabelInstallation])

	other := b.cfg
	other.Installation = randomUUID(t)
	objs, err := k8s.Render(b.d, other)
	require.NoError(t, err)

	t.Run("AnotherInstallationNeitherAppliesNorDeletes", func(t *testing.T) {
		_, err := b.client.Apply(ctx, objs)
		require.ErrorIs(t, err, k8s.ErrNotOurs)
		_, err = b.client.Reclaim(ctx, objs)
		require.ErrorIs(t, err, k8s.ErrNotOurs)
		require.ErrorIs(t, b.client.Delete(ctx, b.d, other), k8s.ErrNotOurs)
		require.ErrorIs(t, b.client.Delete(ctx, b.d, k8s.Config{CertNamespace: b.cfg.CertNamespace, GatewayNamespace: b.cfg.GatewayNamespace}), k8s.ErrNotOurs,
			"no installation id: nothing is ours")
		listed, err := b.client.ListManaged(ctx, k8s.InstallationSelector(b.cfg.Installation))
		require.NoError(t, err)
		require.NotEmpty(t, listed)
		for _, m := range listed {
			require.ErrorIs(t, b.client.DeleteManaged(ctx, m, other.Installation), k8s.ErrNotOurs)
		}
		none, err := b.client.ListManaged(ctx, k8s.InstallationSelector(other.Installation))
		require.NoError(t, err)
		require.Empty(t, none)

		after, err := b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.Equal(t, cert.GetResourceVersion(), after.GetResourceVersion(), "unchanged")
		for _, o := range []struct {
			gvr      schema.GroupVersionResource
			ns, name string
		}{
			{k8s.GatewayGVR, b.cfg.GatewayNamespace, b.names.Gateway},
			{k8s.VirtualServiceGVR, b.cfg.CertNamespace, b.names.VirtualService},
		} {
			_, err := b.get(t, o.gvr, o.ns, o.name)
			require.NoError(t, err, "%s still there", o.name)
		}
	})

	t.Run("DeleteManagedIsConditionalOnTheUID", func(t *testing.T) {
		d := newDomain(t)
		objs, err := k8s.Render(d, b.cfg)
		require.NoError(t, err)
		_, err = b.client.Apply(ctx, objs)
		require.NoError(t, err)
		listed, err := b.client.ListManaged(ctx, k8s.InstallationSelector(b.cfg.Installation))
		require.NoError(t, err)
		var gw k8s.ManagedObject
		for _, m := range listed {
			if m.DomainID == d.ID && m.Kind == "Gateway" {
				gw = m
			}
		}
		require.NotEmpty(t, gw.UID)
		// Deleted and re-created under the same name since the list.
		require.NoError(t, b.env.Dynamic.Resource(k8s.GatewayGVR).Namespace(gw.Namespace).Delete(ctx, gw.Name, metav1.DeleteOptions{}))
		_, err = b.client.Apply(ctx, objs)
		require.NoError(t, err)
		err = b.client.DeleteManaged(ctx, gw, b.cfg.Installation)
		require.ErrorContains(t, err, "changed since it was listed")
		again, err := b.get(t, k8s.GatewayGVR, gw.Namespace, gw.Name)
		require.NoError(t, err)
		require.NotEqual(t, gw.UID, string(again.GetUID()), "the new object is still there")
	})

	t.Run("UnlabelledObjectsWaitForAdoption", func(t *testing.T) {
		d := newDomain(t)
		unowned := b.cfg
		unowned.Installation = ""
		legacy, err := k8s.Render(d, unowned)
		require.NoError(t, err)
		_, err = b.client.Apply(ctx, legacy)
		require.NoError(t, err)
		mine, err := k8s.Render(d, b.cfg)
		require.NoError(t, err)
		_, err = b.client.Apply(ctx, mine)
		require.ErrorIs(t, err, k8s.ErrNotOurs)
		require.ErrorContains(t, err, "portal-domains adopt")
		require.ErrorIs(t, b.client.Delete(ctx, d, b.cfg), k8s.ErrNotOurs)

		listed, err := b.client.ListManaged(ctx, k8s.UnownedSelector)
		require.NoError(t, err)
		n := 0
		for _, m := range listed {
			if m.DomainID != d.ID {
				continue
			}
			n++
			require.NoError(t, b.client.Adopt(ctx, m, b.cfg.Installation))
		}
		require.Equal(t, 3, n)
		_, err = b.client.Apply(ctx, mine)
		require.NoError(t, err)
		require.NoError(t, b.client.Delete(ctx, d, b.cfg))
	})
}

// TestWatchCertificatesCachesCompactCertificates: the watch's cache holds
// each Certificate as the compact WatchedCert (no labels, annotations or
// managed fields), fills it by streaming the initial list instead of a
// LIST decoded whole, and still reports status changes, renewals and
// deletes from it.
func TestWatchCertificatesCachesCompactCertificates(t *testing.T) {
	t.Parallel()
	b, log := setupLogged(t)
	ctx := t.Context()

	b.apply(t)
	require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, true, "Ready", "up to date"))
	applied, err := b.get(t, k8s.CertificateGVR, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	log.take()
	w := watch(t, b.client, b.d.ID)
	st := w.next(t, func(s k8s.CertStatus) bool { return s.Exists })
	require.True(t, st.IsReady(), "the Certificate that was there before the watch is reported on start")
	var certRequests []string
	for _, r := range log.take() {
		if strings.Contains(r, "/apis/cert-manager.io/v1/certificates?") {
			certRequests = append(certRequests, r)
		}
	}
	require.NotEmpty(t, certRequests)
	for _, r := range certRequests {
		require.Contains(t, r, "watch=true", "no LIST of every Certificate: %v", certRequests)
		require.Contains(t, r, "sendInitialEvents=true", "the initial list is streamed: %v", certRequests)
	}

	obj, ok := k8s.CachedCertificate(b.client, b.cfg.CertNamespace, b.names.Certificate)
	require.True(t, ok)
	cached, ok := obj.(*k8s.WatchedCert)
	require.True(t, ok, "the cache holds the compact form, not %T", obj)
	require.Equal(t, b.d.ID, cached.DomainID)
	require.Equal(t, applied.GetUID(), cached.UID)
	require.Equal(t, applied.GetResourceVersion(), cached.Status.ResourceVersion)
	fromAPI, err := b.client.GetCertificateStatus(ctx, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	require.Equal(t, st.NotAfter, fromAPI.NotAfter)
	secretName, _, _ := unstructured.NestedString(applied.Object, "spec", "secretName")
	require.Equal(t, secretName, fromAPI.SecretName)

	require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, false, "Failed", "challenge failed"))
	st = w.next(t, func(s k8s.CertStatus) bool { return s.Ready == k8s.ReadyFalse })
	require.Equal(t, "challenge failed", st.Message)
	require.Equal(t, 1, st.FailedIssuanceAttempts)
	require.False(t, st.Renewed)
	watched, known := b.client.WatchedCertificateStatus(b.cfg.CertNamespace, b.names.Certificate)
	require.True(t, known)
	require.Equal(t, "challenge failed", watched.Message, "the cache holds the status it reported")

	_, err = b.env.CreateTLSSecret(ctx, b.cfg.CertNamespace, b.names.Certificate)
	require.NoError(t, err)
	require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, true, "Ready", "up to date"))
	issued := w.next(t, func(s k8s.CertStatus) bool { return s.IsReady() })
	_, err = b.env.RenewCertificate(ctx, b.cfg.CertNamespace, b.names.Certificate, time.Now().Add(24*time.Hour))
	require.NoError(t, err)
	st = w.next(t, func(s k8s.CertStatus) bool { return s.Renewed })
	require.True(t, st.IsReady())
	require.True(t, st.NotAfter.After(issued.NotAfter), "the renewal's notAfter is reported")

	require.NoError(t, b.client.Delete(ctx, b.d, b.cfg))
	st = w.next(t, func(s k8s.CertStatus) bool { return !s.Exists })
	require.Equal(t, k8s.CertStatus{}, st)
	_, known = b.client.WatchedCertificateStatus(b.cfg.CertNamespace, b.names.Certificate)
	require.False(t, known, "the deleted Certificate left the cache")
}
