package db

import (
	"context"
	"slices"
	"sync"
	"time"
)

// batcher runs the requests of concurrent callers in batches, so that work
// arriving together (jobs fetched together start and finish together) pays
// one statement, one round trip and one commit per batch instead of per
// request.
//
// There is no goroutine of its own: a caller that finds one of the slots
// free runs whatever is waiting, its own request included; the others wait
// for their result or for a slot. With nothing else waiting a request runs
// at once, alone, so an idle pipeline gains no latency. A batch holds at
// most one request per key (a second one waits for the next batch).
type batcher[Req, Res any] struct {
	max   int
	slots chan struct{}
	key   func(Req) string
	// run returns one result per request, in order. Its context outlives
	// the caller that happens to run the batch.
	run func(ctx context.Context, reqs []Req) []Res

	mu      sync.Mutex
	waiting []*batchCall[Req, Res]
}

type batchCall[Req, Res any] struct {
	req Req
	// ctx is the caller's: a call whose caller has given up is never
	// taken into a batch (a job cancelled at shutdown must not write).
	ctx  context.Context
	done chan Res
	// taken is set (under mu) when a batch takes the call: from then on
	// its caller only waits for done.
	taken bool
}

// batchTimeout bounds one batch's work.
const batchTimeout = 30 * time.Second

func newBatcher[Req, Res any](maxBatch, concurrent int, key func(Req) string, run func(context.Context, []Req) []Res) *batcher[Req, Res] {
	return &batcher[Req, Res]{max: max(maxBatch, 1), slots: make(chan struct{}, max(concurrent, 1)), key: key, run: run}
}

// do runs req in a batch and returns its result; the error is the caller's
// context ending before its request was taken into a batch (once taken,
// the result comes whatever happens to the caller). A request whose
// context has already ended is not run at all.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	if err := ctx.Err(); err != nil {
		var zero Res
		return zero, err
	}
	c := &batchCall[Req, Res]{req: req, ctx: ctx, done: make(chan Res, 1)}
	b.mu.Lock()
	b.waiting = append(b.waiting, c)
	b.mu.Unlock()
	for !b.isTaken(c) {
		select {
		case r := <-c.done:
			return r, nil
		case b.slots <- struct{}{}:
			b.runWaiting(ctx)
			<-b.slots
		case <-ctx.Done():
			if b.withdraw(c) {
				var zero Res
				return zero, ctx.Err()
			}
		}
	}
	// Another caller's batch has the request. (Competing for a slot now
	// would only find nothing waiting, again and again: a spin that burns
	// the CPU the batch needs.)
	return <-c.done, nil
}

func (b *batcher[Req, Res]) isTaken(c *batchCall[Req, Res]) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return c.taken
}

// withdraw takes c out of the waiting list; false when a batch took it.
func (b *batcher[Req, Res]) withdraw(c *batchCall[Req, Res]) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.waiting, c); i >= 0 {
		b.waiting = slices.Delete(b.waiting, i, i+1)
		return true
	}
	return false
}

func (b *batcher[Req, Res]) waitingCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting)
}

// runWaiting runs up to max waiting requests with distinct keys, leaving
// those whose callers have given up for them to withdraw.
func (b *batcher[Req, Res]) runWaiting(ctx context.Context) {
	b.mu.Lock()
	var calls []*batchCall[Req, Res]
	keys := make(map[string]bool)
	b.waiting = slices.DeleteFunc(b.waiting, func(c *batchCall[Req, Res]) bool {
		if len(calls) == b.max || keys[b.key(c.req)] || c.ctx.Err() != nil {
			return false
		}
		keys[b.key(c.req)] = true
		c.taken = true
		calls = append(calls, c)
		return true
	})
	b.mu.Unlock()
	if len(calls) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	reqs := make([]Req, len(calls))
	for i, c := range calls {
		reqs[i] = c.req
	}
	for i, r := range b.run(ctx, reqs) {
		calls[i].done <- r
	}
}
