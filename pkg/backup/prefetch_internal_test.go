package backup

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase"
)

// slowFirst serves small objects at once, except the first, which waits
// until release is closed.
type slowFirst struct {
	first   string
	release chan struct{}
	started atomic.Int64
}

func (s *slowFirst) GetObject(ctx context.Context, key string, fn func(io.Reader, edgebase.ObjectInfo) error) error {
	s.started.Add(1)
	if key == s.first {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fn(strings.NewReader("body of "+key), edgebase.ObjectInfo{Size: int64(len("body of " + key))})
}

func (s *slowFirst) ListPages(context.Context, string, string, int, func([]edgebase.Object) error) error {
	return nil
}

// Objects fetched ahead of the member writer count against the range's
// concurrency until the writer takes them: one slow object early in a
// range must not let the rest of the range pile up in memory.
func TestPrefetchWindowBoundsObjectsWaitingForTheWriter(t *testing.T) {
	const n, conc = 200, 4
	src := &slowFirst{first: "k000", release: make(chan struct{})}
	b := &Tasks{Direct: src, Concurrency: conc, Spool: NewSpool(t.TempDir(), 0, 0)}
	objs := make([]edgebase.Object, n)
	for i := range objs {
		objs[i] = edgebase.Object{Key: fmt.Sprintf("k%03d", i), Size: 12}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := b.prefetch(ctx, objs)
	deadline := time.Now().Add(5 * time.Second)
	for src.started.Load() < conc && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for fetches beyond the window, if any
	if got := src.started.Load(); got != conc {
		t.Fatalf("%d fetches started while the first object was outstanding, want %d", got, conc)
	}
	close(src.release)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range objs {
			s := p.next(i)
			if s.err != nil || s.size != int64(len("body of "+objs[i].Key)) {
				t.Errorf("object %d: %+v", i, s)
			}
			s.close()
		}
	}()
	wg.Wait()
	if got := src.started.Load(); got != n {
		t.Errorf("%d fetches, want %d", got, n)
	}
}

// A writer that stops early drains the rest without blocking.
func TestPrefetchDrainAfterCancel(t *testing.T) {
	src := &slowFirst{first: "none", release: make(chan struct{})}
	b := &Tasks{Direct: src, Concurrency: 3, Spool: NewSpool(t.TempDir(), 0, 0)}
	objs := make([]edgebase.Object, 50)
	for i := range objs {
		objs[i] = edgebase.Object{Key: fmt.Sprintf("k%03d", i), Size: 12}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := b.prefetch(ctx, objs)
	p.next(0).close()
	p.next(1).close()
	cancel()
	done := make(chan struct{})
	go func() { p.drain(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not end")
	}
}
