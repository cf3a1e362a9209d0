package k8s_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portal-domains/portal-domains/k8s"
)

// TestCopySecretToGateway: the issued Secret is copied where Istio's gateway
// reads it, kept current, claimed from AlgaPSA, and never written over or
// deleted when it is someone else's.
func TestCopySecretToGateway(t *testing.T) {
	t.Parallel()
	secrets := func(b *bundle, ns string) func(name string) (*corev1.Secret, error) {
		return func(name string) (*corev1.Secret, error) {
			return b.env.Clientset.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{})
		}
	}

	t.Run("CopiesKeepsCurrentAndDeletes", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)
		got, err := b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretSourceMissing, got, "nothing to copy before cert-manager stores the Secret")
		_, err = secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.True(t, apierrors.IsNotFound(err), "no copy made of a missing Secret: %v", err)

		_, err = b.env.CreateTLSSecret(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		got, err = b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretCopied, got)
		src, err := secrets(b, b.cfg.CertNamespace)(b.names.Secret)
		require.NoError(t, err)
		dst, err := secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.NoError(t, err)
		require.Equal(t, corev1.SecretTypeTLS, dst.Type)
		require.Equal(t, map[string][]byte{"tls.crt": src.Data["tls.crt"], "tls.key": src.Data["tls.key"]}, dst.Data)
		require.Equal(t, b.cfg.Installation, dst.Labels[k8s.LabelInstallation])
		require.Equal(t, b.d.ID, dst.Labels[k8s.LabelDomainID])
		require.Equal(t, b.cfg.CertNamespace, dst.Labels[k8s.LabelOriginSecretNamespace])
		require.Equal(t, b.names.Secret, dst.Labels[k8s.LabelOriginSecretName])
		require.Equal(t, src.ResourceVersion, dst.Annotations[k8s.AnnotationOriginResourceVersion])

		got, err = b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretCopyCurrent, got)
		again, err := secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.NoError(t, err)
		require.Equal(t, dst.ResourceVersion, again.ResourceVersion, "a current copy is not written again")

		// A renewal rewrites the source; the next copy follows it.
		src.Data["tls.crt"] = append([]byte(nil), src.Data["tls.crt"]...)
		src.Data["tls.crt"][len(src.Data["tls.crt"])-2] ^= 1
		_, err = b.env.Clientset.CoreV1().Secrets(b.cfg.CertNamespace).Update(ctx, src, metav1.UpdateOptions{})
		require.NoError(t, err)
		got, err = b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretCopied, got)
		dst, err = secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.NoError(t, err)
		require.Equal(t, src.Data["tls.crt"], dst.Data["tls.crt"])

		require.NoError(t, b.client.Delete(ctx, b.d, b.cfg))
		_, err = secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.True(t, apierrors.IsNotFound(err), "disable deletes the copy: %v", err)
	})

	t.Run("NotNeededInOneNamespace", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.cfg.GatewayNamespace = b.cfg.CertNamespace
		got, err := b.client.CopySecretToGateway(t.Context(), b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretCopyNotNeeded, got)
	})

	t.Run("ClaimsAlgaPSACopy", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)
		_, err := b.env.CreateTLSSecret(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		_, err = b.env.Clientset.CoreV1().Secrets(b.cfg.GatewayNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: b.names.Secret, Labels: map[string]string{
				k8s.LabelManaged: "true", k8s.LabelOriginSecretName: b.names.Secret, k8s.LabelOriginSecretNamespace: b.cfg.CertNamespace,
			}},
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": []byte("old"), "tls.key": []byte("old")},
		}, metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"})
		require.NoError(t, err)
		got, err := b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretCopied, got)
		dst, err := secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.NoError(t, err)
		require.Equal(t, b.cfg.Installation, dst.Labels[k8s.LabelInstallation])
		require.NotEqual(t, []byte("old"), dst.Data["tls.crt"])
	})

	t.Run("LeavesOthersSecrets", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)
		_, err := b.env.CreateTLSSecret(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		theirs := map[string][]byte{"tls.crt": []byte("theirs"), "tls.key": []byte("their-private-key")}
		_, err = b.env.Clientset.CoreV1().Secrets(b.cfg.GatewayNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: b.names.Secret},
			Type:       corev1.SecretTypeTLS,
			Data:       theirs,
		}, metav1.CreateOptions{})
		require.NoError(t, err)

		_, err = b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.ErrorIs(t, err, k8s.ErrNotOurs)
		src, serr := secrets(b, b.cfg.CertNamespace)(b.names.Secret)
		require.NoError(t, serr)
		for _, secret := range [][]byte{src.Data["tls.key"], theirs["tls.key"]} {
			require.NotContains(t, err.Error(), string(secret))
		}
		require.ErrorIs(t, b.client.Delete(ctx, b.d, b.cfg), k8s.ErrNotOurs, "disable reports the Secret it left")
		dst, err := secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.NoError(t, err, "someone else's Secret is not deleted")
		require.Equal(t, theirs, dst.Data, "nor written over")
	})

	t.Run("OnlyFromCertManagersSecret", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		b.apply(t)
		_, err := b.env.Clientset.CoreV1().Secrets(b.cfg.CertNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: b.names.Secret},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.ErrorIs(t, err, k8s.ErrNotOurs)
		require.True(t, strings.Contains(err.Error(), "did not issue it"), err.Error())
		_, err = secrets(b, b.cfg.GatewayNamespace)(b.names.Secret)
		require.True(t, apierrors.IsNotFound(err), "nothing copied: %v", err)
	})
}
