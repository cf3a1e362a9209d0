package localdns_test

import (
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/harness/localdns"
)

func TestOnQuery(t *testing.T) {
	t.Parallel()

	t.Run("reports every question with its normalised name, type and arrival time", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var mu sync.Mutex
		var seen []localdns.Query
		b.srv.OnQuery(func(q localdns.Query) {
			mu.Lock()
			seen = append(seen, q)
			mu.Unlock()
		})
		before := time.Now()
		query(t, b.srv.Addr(), "udp", "Portal.ACME.test.", mdns.TypeA)
		query(t, b.srv.Addr(), "tcp", "acme.test", mdns.TypeCAA)
		query(t, b.srv.Addr(), "udp", "example.com", mdns.TypeA) // refused, still reported
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, seen, 3)
		require.Equal(t, "portal.acme.test", seen[0].Name)
		require.Equal(t, "A", seen[0].Type)
		require.Equal(t, "acme.test", seen[1].Name)
		require.Equal(t, "CAA", seen[1].Type)
		require.Equal(t, "example.com", seen[2].Name)
		for _, q := range seen {
			require.False(t, q.At.Before(before))
			require.False(t, q.At.After(time.Now()))
		}
	})

	t.Run("nil stops the reports", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		calls := 0
		b.srv.OnQuery(func(localdns.Query) { calls++ })
		b.srv.OnQuery(nil)
		query(t, b.srv.Addr(), "udp", "www.acme.test", mdns.TypeA)
		require.Zero(t, calls)
	})
}
