package stack

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func TestSolverAnswer(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Args: []string{"--listen-port=8089", "--domain=portal.acme.test", "--token=tok1", "--key=tok1.thumb"},
	}}}}

	t.Run("the solver answers its key for its own domain and token", func(t *testing.T) {
		key, ok := solverAnswer(pod, "portal.acme.test", "tok1")
		require.True(t, ok)
		require.Equal(t, "tok1.thumb", key)
	})
	t.Run("another token or domain gets nothing, as acmesolver answers 404", func(t *testing.T) {
		_, ok := solverAnswer(pod, "portal.acme.test", "tok2")
		require.False(t, ok)
		_, ok = solverAnswer(pod, "other.acme.test", "tok1")
		require.False(t, ok)
	})
}

func TestHostsMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hosts []string
		name  string
		want  bool
	}{
		{[]string{"portal.acme.test"}, "portal.acme.test", true},
		{[]string{"msp/portal.acme.test"}, "portal.acme.test", true},
		{[]string{"*.acme.test"}, "portal.acme.test", true},
		{[]string{"*"}, "portal.acme.test", true},
		{[]string{"other.acme.test"}, "portal.acme.test", false},
		{[]string{"*.other.test"}, "portal.acme.test", false},
	} {
		require.Equal(t, tc.want, hostsMatch(tc.hosts, tc.name), "%v vs %s", tc.hosts, tc.name)
	}
}
