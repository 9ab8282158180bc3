package backup

import (
	"context"
	"sync"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// ReadAhead is how many tasks the assembler prepares (reads the outcome
// record, opens the part) ahead of the one it writes. Each of those reads
// is a round trip to the store; done one after another they bound how
// fast a job of many small units assembles (docs/SCALE.md).
const ReadAhead = 32

// eachAhead walks the plan of job in order: prepare runs for up to n tasks
// ahead of use, concurrently, and use sees every task in plan order.
// At most n+1 prepared values exist at once; release frees each one that
// was prepared (also after a failure, when the walk stops early).
func eachAhead[T any](ctx context.Context, j *pipeline.Jobs, job string, n int,
	prepare func(context.Context, events.Task) (T, error), use func(events.Task, T) error, release func(T)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type slot struct {
		t    events.Task
		v    T
		err  error
		done chan struct{}
	}
	slots := make(chan *slot, max(n, 1)-1)
	var (
		wg      sync.WaitGroup
		walkErr error
	)
	go func() {
		defer close(slots)
		walkErr = j.EachTask(ctx, job, func(t events.Task) error {
			s := &slot{t: t, done: make(chan struct{})}
			select {
			case slots <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(s.done)
				s.v, s.err = prepare(ctx, t)
			}()
			return nil
		})
	}()
	var err error
	for s := range slots {
		<-s.done
		if s.err != nil {
			if err == nil {
				err = s.err
				cancel()
			}
			continue
		}
		if err == nil {
			if err = use(s.t, s.v); err != nil {
				cancel()
			}
		}
		release(s.v)
	}
	wg.Wait()
	if err != nil {
		return err
	}
	return walkErr
}
