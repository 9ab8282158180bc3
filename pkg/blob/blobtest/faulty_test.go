package blobtest_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

func newFS(t *testing.T) pipeline.BlobStore {
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A Faulty store with no faults armed is a BlobStore like any other.
func TestFaultyPassesTheSuite(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) pipeline.BlobStore { return blobtest.NewFaulty(newFS(t), false) })
}

func TestFaultyInjects(t *testing.T) {
	ctx := context.Background()
	f := blobtest.NewFaulty(newFS(t), true)
	put := func(key string) error { return f.Put(ctx, key, strings.NewReader(key)) }

	// The Nth matching call fails, before the write.
	f.Inject(blobtest.Fault{Op: blobtest.OpPut, Match: func(k string) bool { return strings.HasPrefix(k, "a/") }, Nth: 2})
	if err := put("a/1"); err != nil {
		t.Fatal(err)
	}
	if err := put("b/1"); err != nil {
		t.Fatal(err)
	}
	if err := put("a/2"); !errors.Is(err, blobtest.ErrInjected) {
		t.Fatalf("second a/ put: %v", err)
	}
	if _, err := f.Stat(ctx, "a/2"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("a failed-before write happened: %v", err)
	}
	if err := put("a/3"); err != nil {
		t.Fatalf("Nth fired twice: %v", err)
	}

	// After: the write happens, the caller sees a failure.
	f.Inject(blobtest.Fault{Op: blobtest.OpCreate, Nth: 1, After: true, Err: context.DeadlineExceeded})
	if err := f.Create(ctx, "c", bytes.NewReader([]byte("x"))); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create: %v", err)
	}
	if _, err := f.Stat(ctx, "c"); err != nil {
		t.Fatalf("an After fault did not let the write happen: %v", err)
	}

	// Every matching call, a bounded number of times, with a hook.
	hooked := 0
	f.Inject(blobtest.Fault{Op: blobtest.OpGet, Times: 2, Hook: func(blobtest.Call) { hooked++ }})
	for i, want := range []bool{true, true, false} {
		rc, err := f.Get(ctx, "c")
		if got := err != nil; got != want {
			t.Fatalf("get %d failed=%v want %v (%v)", i, got, want, err)
		}
		if rc != nil {
			rc.Close()
		}
	}
	if hooked != 2 || f.Fired() != 4 {
		t.Fatalf("hook ran %d times, faults fired %d times", hooked, f.Fired())
	}
	calls := f.Calls()
	if len(calls) != 10 || calls[0].Op != blobtest.OpPut || calls[0].Key != "a/1" || calls[9].Seq != 10 {
		t.Fatalf("calls: %+v", calls)
	}
}
