package worker

import (
	"context"
	"errors"
	"sync"
)

// RunTogether runs the parts of one process (the worker, its HTTP server,
// and in the dev stack the issuer and status board) until ctx ends or one
// of them returns, then cancels the rest and waits for all. Cancellation
// is how they are told to stop, so context.Canceled is not an error.
func RunTogether(ctx context.Context, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(fns))
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			err := fn(ctx)
			cancel()
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}
