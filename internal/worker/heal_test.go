package worker_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// healEvent is the part of a heal's history row the test reads.
type healEvent struct {
	Message string
	Objects []struct {
		Kind      string   `json:"kind"`
		Namespace string   `json:"namespace"`
		Name      string   `json:"name"`
		Change    string   `json:"change"`
		Fields    []string `json:"fields"`
		ChangedBy []string `json:"changed_by"`
	}
}

// healEvents reads the domain's history rows written by heals.
func (b *bundle) healEvents(t *testing.T, id string) []healEvent {
	t.Helper()
	events, err := db.ListEvents(b.ctx, b.schema.Pool, id)
	require.NoError(t, err)
	var out []healEvent
	for _, e := range events {
		var d struct {
			Event   string `json:"event"`
			Objects json.RawMessage
		}
		require.NoError(t, json.Unmarshal(e.Details, &d))
		if d.Event != "healed" {
			continue
		}
		require.Equal(t, domain.StatusActive, e.From, "a heal leaves the status as it is")
		require.Equal(t, domain.StatusActive, e.To)
		h := healEvent{Message: e.Message}
		require.NoError(t, json.Unmarshal(d.Objects, &h.Objects))
		out = append(out, h)
	}
	return out
}

// TestHandChangesAreHealed edits, deletes and edits again each of an
// active domain's three objects by hand, against a real API server and a worker running
// under its shipped database grants: each is applied again, the history
// says what was changed back, and the domain stays active throughout. An
// object that no longer carries the installation's label is left alone.
func TestHandChangesAreHealed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{asWorkerRole: true})
	rec := b.register(t, tenant, "portal.acme.test")
	b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
	b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })

	want, err := k8s.Render(k8s.Domain{ID: rec.ID, Tenant: string(rec.Tenant), Host: rec.Domain, CanonicalHost: rec.CanonicalHost}, b.cfg.Kube)
	require.NoError(t, err)
	// Each edit changes a field the worker sets, as `kubectl edit` would.
	edits := map[string]func(obj *unstructured.Unstructured){
		"Certificate": func(obj *unstructured.Unstructured) {
			require.NoError(t, unstructured.SetNestedStringSlice(obj.Object, []string{"evil.example.test"}, "spec", "dnsNames"))
		},
		"Gateway": func(obj *unstructured.Unstructured) {
			require.NoError(t, unstructured.SetNestedStringMap(obj.Object, map[string]string{"istio": "elsewhere"}, "spec", "selector"))
		},
		"VirtualService": func(obj *unstructured.Unstructured) {
			require.NoError(t, unstructured.SetNestedStringSlice(obj.Object, []string{"elsewhere/gateway"}, "spec", "gateways"))
		},
	}
	seen := 0
	// waitHealed waits for the object to match what the worker renders
	// again and for the next heal's history row, which it returns.
	waitHealed := func(t *testing.T, wantObj *unstructured.Unstructured, oldUID string) healEvent {
		t.Helper()
		res := b.kube.Dynamic.Resource(gvrOf(t, wantObj)).Namespace(wantObj.GetNamespace())
		deadline := time.Now().Add(waitTimeout)
		for {
			obj, err := res.Get(b.ctx, wantObj.GetName(), metav1.GetOptions{})
			if err == nil && (oldUID == "" || string(obj.GetUID()) != oldUID) {
				events := b.healEvents(t, rec.ID)
				wantSpec, _, _ := unstructured.NestedMap(wantObj.Object, "spec")
				haveSpec, _, _ := unstructured.NestedMap(obj.Object, "spec")
				if len(events) > seen && specContains(haveSpec, wantSpec) {
					require.Len(t, events, seen+1, "one history row per hand change")
					seen++
					return events[seen-1]
				}
			} else if err != nil {
				require.True(t, apierrors.IsNotFound(err), "read %s: %v", wantObj.GetName(), err)
			}
			require.True(t, time.Now().Before(deadline), "%s %s was not applied again", wantObj.GetKind(), wantObj.GetName())
			time.Sleep(50 * time.Millisecond)
		}
	}

	for _, wantObj := range want.All() {
		kind := wantObj.GetKind()
		res := b.kube.Dynamic.Resource(gvrOf(t, wantObj)).Namespace(wantObj.GetNamespace())

		// editByHand edits the object as kubectl edit would and waits for
		// the heal's history row.
		editByHand := func(t *testing.T) healEvent {
			obj, err := res.Get(b.ctx, wantObj.GetName(), metav1.GetOptions{})
			require.NoError(t, err)
			edits[kind](obj)
			_, err = res.Update(b.ctx, obj, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			require.NoError(t, err)
			return waitHealed(t, wantObj, "")
		}

		t.Run(kind+" edited by hand is applied again", func(t *testing.T) {
			ev := editByHand(t)
			require.Len(t, ev.Objects, 1)
			require.Equal(t, kind, ev.Objects[0].Kind)
			require.Equal(t, wantObj.GetName(), ev.Objects[0].Name)
			require.Equal(t, jobs.ChangeEdited, ev.Objects[0].Change)
			require.NotEmpty(t, ev.Objects[0].Fields, "the history names the fields changed back")
			require.Contains(t, ev.Objects[0].ChangedBy, "kubectl-edit", "and who changed them")
			require.Contains(t, ev.Message, "was edited for portal.acme.test; it has been restored")
		})

		t.Run(kind+" deleted by hand is created again", func(t *testing.T) {
			obj, err := res.Get(b.ctx, wantObj.GetName(), metav1.GetOptions{})
			require.NoError(t, err)
			require.NoError(t, res.Delete(b.ctx, wantObj.GetName(), metav1.DeleteOptions{}))

			ev := waitHealed(t, wantObj, string(obj.GetUID()))
			require.Len(t, ev.Objects, 1)
			require.Equal(t, kind, ev.Objects[0].Kind)
			require.Equal(t, jobs.ChangeDeleted, ev.Objects[0].Change)
			require.Contains(t, ev.Message, "was deleted for portal.acme.test; it has been restored")
			recreated, err := res.Get(b.ctx, wantObj.GetName(), metav1.GetOptions{})
			require.NoError(t, err)
			require.Equal(t, b.installation, recreated.GetLabels()[k8s.LabelInstallation])
		})

		t.Run(kind+" re-created and edited again is applied again", func(t *testing.T) {
			// The re-created object counts its generations from 1 again:
			// its edit is a change of its own, not the first one's.
			ev := editByHand(t)
			require.Equal(t, jobs.ChangeEdited, ev.Objects[0].Change)
		})
	}

	t.Run("an object that lost the installation label is left alone", func(t *testing.T) {
		gw := want.Gateway
		res := b.kube.Dynamic.Resource(k8s.GatewayGVR).Namespace(gw.GetNamespace())
		obj, err := res.Get(b.ctx, gw.GetName(), metav1.GetOptions{})
		require.NoError(t, err)
		// Someone takes the Gateway over: another installation's label
		// and their own spec, in one edit. The watch sees it leave this
		// installation's objects, and the heal job finds it not ours.
		labels := obj.GetLabels()
		labels[k8s.LabelInstallation] = "someone-else"
		obj.SetLabels(labels)
		edits["Gateway"](obj)
		_, err = res.Update(b.ctx, obj, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
		require.NoError(t, err)

		deadline := time.Now().Add(waitTimeout)
		for {
			var done int
			require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `SELECT count(*) FROM river_job
				WHERE kind = 'heal' AND state = 'completed' AND args->>'object' = 'Gateway' AND args->>'revision' = $1`,
				string(obj.GetUID())).Scan(&done))
			if done == 1 {
				break
			}
			require.True(t, time.Now().Before(deadline), "the heal job of the Gateway taken over never completed")
			time.Sleep(50 * time.Millisecond)
		}
		still, err := res.Get(b.ctx, gw.GetName(), metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "someone-else", still.GetLabels()[k8s.LabelInstallation])
		selector, _, _ := unstructured.NestedStringMap(still.Object, "spec", "selector")
		require.Equal(t, map[string]string{"istio": "elsewhere"}, selector, "its spec is as they left it")
		require.Len(t, b.healEvents(t, rec.ID), seen, "no heal recorded")
	})

	// One heal job per hand change: the heals' own applies, the worker
	// being the only manager of what it sets, did not look like hand
	// changes to the watch.
	var healJobs, tagged int
	require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `SELECT count(*), count(*) FILTER (WHERE tags @> $1)
		FROM river_job WHERE kind = 'heal'`, domain.JobTags(rec.Domain, rec.Tenant)).Scan(&healJobs, &tagged))
	require.Equal(t, 3*len(edits)+1, healJobs)
	require.Equal(t, healJobs, tagged, "heal jobs carry the domain's and tenant's tags, as stage jobs do")

	after, err := db.GetDomain(b.ctx, b.schema.Pool, rec.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusActive, after.Status)
	require.Equal(t, rec.Generation, after.Generation, "heals never restart the pipeline")
	require.Equal(t, []domain.Status{domain.StatusPendingDNS, domain.StatusPendingCertificate,
		domain.StatusCertificateIssuing, domain.StatusDeploying, domain.StatusActive}, statuses(t, b, rec.ID),
		"active throughout: no other status after it")
}

func gvrOf(t *testing.T, obj *unstructured.Unstructured) (gvr schema.GroupVersionResource) {
	t.Helper()
	switch obj.GetKind() {
	case "Certificate":
		return k8s.CertificateGVR
	case "Gateway":
		return k8s.GatewayGVR
	case "VirtualService":
		return k8s.VirtualServiceGVR
	}
	t.Fatalf("unknown kind %s", obj.GetKind())
	return gvr
}

// specContains: every field of want is in have with the same value.
func specContains(have, want map[string]any) bool {
	for k, w := range want {
		h, ok := have[k]
		if !ok {
			return false
		}
		wm, ok1 := w.(map[string]any)
		hm, ok2 := h.(map[string]any)
		if ok1 && ok2 {
			if !specContains(hm, wm) {
				return false
			}
			continue
		}
		if fmt.Sprint(w) != fmt.Sprint(h) {
			return false
		}
	}
	return true
}
