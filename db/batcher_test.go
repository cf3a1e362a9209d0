package db

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The batcher's own logic, without a database: requests that wait while a
// batch runs go into the next batch together, one per key, and a caller
// whose context ends before its request is taken (or before it asks) gets
// its error and is never run.
func TestBatcherGroupsWaitingRequests(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var mu sync.Mutex
	var batches [][]string
	run := func(_ context.Context, reqs []string) []string {
		mu.Lock()
		batches = append(batches, reqs)
		first := len(batches) == 1
		mu.Unlock()
		if first {
			<-release // hold the only slot
		}
		out := make([]string, len(reqs))
		for i, r := range reqs {
			out[i] = "done " + r
		}
		return out
	}
	b := newBatcher(3, 1, func(r string) string { return r[:1] }, run)

	results := make(map[string]string)
	var resultsMu sync.Mutex
	var wg sync.WaitGroup
	call := func(ctx context.Context, req string) {
		defer wg.Done()
		res, err := b.do(ctx, req)
		resultsMu.Lock()
		defer resultsMu.Unlock()
		if err != nil {
			results[req] = "error: " + err.Error()
			return
		}
		results[req] = res
	}
	wg.Add(1)
	go call(context.Background(), "a0")
	require.Eventually(t, func() bool { return b.waitingCount() == 0 && len(b.slots) == 1 }, 5*time.Second, time.Millisecond)

	cancelled, cancel := context.WithCancel(context.Background())
	for i, req := range []string{"b1", "c1", "b2", "d1", "e1"} {
		wg.Add(1)
		go call(context.Background(), req)
		// One at a time, so the waiting order is known.
		require.Eventually(t, func() bool { return b.waitingCount() == i+1 }, 5*time.Second, time.Millisecond)
	}
	wg.Add(1)
	go call(cancelled, "x1")
	require.Eventually(t, func() bool { return b.waitingCount() == 6 }, 5*time.Second, time.Millisecond)
	cancel()
	require.Eventually(t, func() bool { return b.waitingCount() == 5 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()

	require.Equal(t, "error: context canceled", results["x1"])
	for _, req := range []string{"a0", "b1", "c1", "b2", "d1", "e1"} {
		require.Equal(t, "done "+req, results[req])
	}
	require.Equal(t, []string{"a0"}, batches[0])
	// Three at most, one per key: b2 waits for the batch after b1's.
	require.Equal(t, []string{"b1", "c1", "d1"}, batches[1], fmt.Sprint(batches))
	require.ElementsMatch(t, []string{"b2", "e1"}, batches[2])
	require.Len(t, batches, 3)

	// A caller that has already given up (a job cancelled at shutdown)
	// is not run, even with every slot free.
	_, err := b.do(cancelled, "z1")
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, batches, 3)
}
