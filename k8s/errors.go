package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Sentinel errors at the package edge; test with errors.Is. The API
// server's own error stays wrapped too, so apierrors.IsForbidden and friends
// still work on what the Client returns.
var (
	// ErrUnreachable: the API server could not be reached or did not answer
	// in time (connection refused or reset, timeouts, 429/503/504). Nothing
	// is wrong with the request; retry later.
	ErrUnreachable = errors.New("kubernetes API server unreachable")
	// ErrInvalid: the API server rejected the object (CRD schema or
	// validation). Retrying the same object cannot succeed; the message
	// holds the API server's explanation.
	ErrInvalid = errors.New("rejected by the kubernetes API server as invalid")
	// ErrConflict: server-side apply found fields this worker sets that are
	// owned by another field manager with a different value. The message
	// names the manager(s) and fields.
	ErrConflict = errors.New("field manager conflict")
	// ErrNotOurs: the object exists but does not carry this installation's
	// identity (LabelInstallation), so it is neither written over nor
	// deleted. Another installation applied it, or it predates
	// installation ids and has not been adopted.
	ErrNotOurs = errors.New("object belongs to another installation")
)

// classify wraps err from an API call with what was being done and, where
// it fits, one of the sentinels.
func classify(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up; that is not the API server's fault.
		return fmt.Errorf("%s: %w", op, err)
	}
	var status apierrors.APIStatus
	switch {
	case apierrors.IsConflict(err) && errors.As(err, &status):
		return fmt.Errorf("%s: %w: %s: %w", op, ErrConflict, describeConflict(status.Status()), err)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), isTypedPatchError(err):
		return fmt.Errorf("%s: %w: %w", op, ErrInvalid, err)
	case isUnreachable(err):
		return fmt.Errorf("%s: %w: %w", op, ErrUnreachable, err)
	case apierrors.IsNotFound(err) && isMissingResource(err):
		return fmt.Errorf("%s: the API server does not serve this resource (are the cert-manager and Istio CRDs installed?): %w", op, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: the worker's service account is not allowed to do this (see deploy/rbac.yaml): %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isUnreachable is true for failures to talk to the API server at all, as
// opposed to answers it gave.
func isUnreachable(err error) bool {
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) {
		return true
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// client-go reports transport failures as *url.Error; API answers are
	// *StatusError, handled above.
	var urlErr *url.Error
	return errors.As(err, &urlErr)
}

// isTypedPatchError recognises a server-side apply whose object does not
// fit the schema's types (a string where a list belongs). kube-apiserver
// answers that with a bare 500 rather than 422 Invalid; retrying the same
// object can never succeed, so it is ErrInvalid.
func isTypedPatchError(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	return s.Code == 500 && strings.Contains(s.Message, "failed to create typed patch object")
}

// isMissingResource tells "no such resource type" (CRD not installed) from
// "no such object": only the former has an empty Details.Name.
func isMissingResource(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d == nil || d.Name == ""
}

// describeConflict turns a server-side apply conflict into "field .spec.x
// (owned by "kubectl-edit")" terms an operator can act on.
func describeConflict(s metav1.Status) string {
	var parts []string
	if s.Details != nil {
		for _, c := range s.Details.Causes {
			if c.Type != metav1.CauseTypeFieldManagerConflict {
				continue
			}
			manager := strings.TrimPrefix(c.Message, "conflict with ")
			if i := strings.Index(manager, " using "); i >= 0 {
				manager = manager[:i]
			}
			parts = append(parts, fmt.Sprintf("%s is owned by field manager %s", c.Field, manager))
		}
	}
	if len(parts) == 0 {
		return "another writer changed the object"
	}
	return strings.Join(parts, ", ") + "; undo that change or hand the fields back (kubectl apply --server-side --force-conflicts --field-manager=" + FieldManager + ")"
}
