package blobtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Op names a BlobStore (or Composer) operation.
type Op string

// The operations a Fault can hit.
const (
	OpPut         Op = "put"
	OpCreate      Op = "create"
	OpReplace     Op = "replace"
	OpReadVersion Op = "readversion"
	OpGet         Op = "get"
	OpGetRange    Op = "getrange"
	OpStat        Op = "stat"
	OpList        Op = "list"
	OpDelete      Op = "delete"
	OpCompose     Op = "compose"
)

// writes are the operations that change the store.
var writes = map[Op]bool{OpPut: true, OpCreate: true, OpReplace: true, OpDelete: true, OpCompose: true}

// ErrInjected is the error a Fault returns unless it names another.
var ErrInjected = errors.New("blobtest: injected fault")

// Fault describes when and how an operation fails.
type Fault struct {
	// Op is the operation hit ("" = every operation).
	Op Op
	// Match selects keys (the prefix, for List); nil matches every key.
	Match func(key string) bool
	// When, if set, must hold for the fault to count a call (e.g. "the
	// process is dead": every call fails until it restarts).
	When func() bool
	// Nth fires on the Nth matching call (1-based) and only then; 0 fires
	// on every matching call (up to Times).
	Nth int
	// Times bounds how often a Fault with Nth == 0 fires (0 = no bound).
	Times int
	// Err is returned (default ErrInjected).
	Err error
	// Delay holds the call before it runs (or fails).
	Delay time.Duration
	// After lets a write happen and then reports Err anyway: the caller
	// cannot tell whether it took effect (a lost response).
	After bool
	// Hook, when set, runs when the fault fires, before the error is
	// returned (e.g. to cancel the context of a "killed" process).
	Hook func(Call)
}

// Call is one operation a Faulty store saw.
type Call struct {
	Op  Op
	Key string
	Seq int // 1-based position among all calls
}

// Faulty wraps a BlobStore and injects faults: errors before or after an
// operation, delays, hooks that kill the caller. It records every call, so
// a test can first run a job cleanly, list its steps, then fail each step
// in turn.
type Faulty struct {
	pipeline.BlobStore
	mu     sync.Mutex
	faults []*armed
	calls  []Call
	record bool
}

type armed struct {
	Fault
	seen, fired int
}

var _ pipeline.BlobStore = (*Faulty)(nil)

// NewFaulty wraps s. record keeps the list of calls (Calls).
func NewFaulty(s pipeline.BlobStore, record bool) *Faulty {
	return &Faulty{BlobStore: s, record: record}
}

// Inject arms f.
func (f *Faulty) Inject(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &armed{Fault: fault})
}

// Clear disarms every fault.
func (f *Faulty) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// Calls returns the calls seen so far (when recording).
func (f *Faulty) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Fired reports how many times faults fired.
func (f *Faulty) Fired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.faults {
		n += a.fired
	}
	return n
}

// check records the call and returns the fault that fires on it, if any.
func (f *Faulty) check(op Op, key string) *armed {
	f.mu.Lock()
	c := Call{Op: op, Key: key}
	if f.record {
		c.Seq = len(f.calls) + 1
		f.calls = append(f.calls, c)
	}
	var hit *armed
	for _, a := range f.faults {
		if (a.Op != "" && a.Op != op) || (a.Match != nil && !a.Match(key)) || (a.When != nil && !a.When()) {
			continue
		}
		a.seen++
		fire := a.Nth == 0 && (a.Times == 0 || a.fired < a.Times) || a.Nth > 0 && a.seen == a.Nth
		if fire && hit == nil {
			a.fired++
			hit = a
		}
	}
	f.mu.Unlock()
	if hit != nil {
		if hit.Delay > 0 {
			time.Sleep(hit.Delay)
		}
		if hit.Hook != nil {
			hit.Hook(c)
		}
	}
	return hit
}

func (a *armed) err(op Op, key string) error {
	err := a.Err
	if err == nil {
		err = ErrInjected
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// do runs a write through the fault rules.
func (f *Faulty) do(op Op, key string, write func() error) error {
	a := f.check(op, key)
	if a == nil {
		return write()
	}
	if a.After && writes[op] {
		if err := write(); err != nil {
			return err
		}
	}
	if a.Err == nil && a.Delay > 0 && a.Hook == nil {
		return write() // a pure delay
	}
	return a.err(op, key)
}

// Put implements pipeline.BlobStore.
func (f *Faulty) Put(ctx context.Context, key string, r io.Reader) error {
	return f.do(OpPut, key, func() error { return f.BlobStore.Put(ctx, key, r) })
}

// Create implements pipeline.BlobStore.
func (f *Faulty) Create(ctx context.Context, key string, r io.Reader) error {
	return f.do(OpCreate, key, func() error { return f.BlobStore.Create(ctx, key, r) })
}

// Replace implements pipeline.BlobStore.
func (f *Faulty) Replace(ctx context.Context, key string, r io.Reader, v blob.Version) error {
	return f.do(OpReplace, key, func() error { return f.BlobStore.Replace(ctx, key, r, v) })
}

// Delete implements pipeline.BlobStore.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	return f.do(OpDelete, key, func() error { return f.BlobStore.Delete(ctx, key) })
}

// ReadVersion implements pipeline.BlobStore.
func (f *Faulty) ReadVersion(ctx context.Context, key string) (rc io.ReadCloser, v blob.Version, err error) {
	err = f.do(OpReadVersion, key, func() error { rc, v, err = f.BlobStore.ReadVersion(ctx, key); return err })
	return rc, v, err
}

// Get implements pipeline.BlobStore.
func (f *Faulty) Get(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = f.do(OpGet, key, func() error { rc, err = f.BlobStore.Get(ctx, key); return err })
	return rc, err
}

// GetRange implements pipeline.BlobStore.
func (f *Faulty) GetRange(ctx context.Context, key string, offset, length int64) (rc io.ReadCloser, err error) {
	err = f.do(OpGetRange, key, func() error { rc, err = f.BlobStore.GetRange(ctx, key, offset, length); return err })
	return rc, err
}

// Stat implements pipeline.BlobStore.
func (f *Faulty) Stat(ctx context.Context, key string) (info blob.Info, err error) {
	err = f.do(OpStat, key, func() error { info, err = f.BlobStore.Stat(ctx, key); return err })
	return info, err
}

// List implements pipeline.BlobStore.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	return f.do(OpList, prefix, func() error { return f.BlobStore.List(ctx, prefix, fn) })
}

// Compose implements pipeline.Composer when the wrapped store does.
func (f *Faulty) Compose(ctx context.Context, dst string, srcs []string) error {
	c, ok := f.BlobStore.(pipeline.Composer)
	if !ok {
		return errors.New("blobtest: the wrapped store cannot compose")
	}
	return f.do(OpCompose, dst, func() error { return c.Compose(ctx, dst, srcs) })
}

// Step is one write a recorded run made: its operation and which one of
// that operation it was (1-based), and the key.
type Step struct {
	Op  Op
	Nth int
	Key string
}

// Fault fails this step: before it takes effect, or after with the
// answer lost.
func (s Step) Fault(after bool) Fault { return Fault{Op: s.Op, Nth: s.Nth, After: after} }

// Writes lists the puts, creates and deletes of a recorded run in order:
// the steps a test fails one at a time.
func Writes(calls []Call) []Step {
	var out []Step
	count := map[Op]int{}
	for _, c := range calls {
		count[c.Op]++
		if c.Op == OpPut || c.Op == OpCreate || c.Op == OpDelete {
			out = append(out, Step{Op: c.Op, Nth: count[c.Op], Key: c.Key})
		}
	}
	return out
}
