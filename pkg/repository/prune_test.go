package repository

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// smallOptions make many small packs, so prune has work at every step.
var smallOptions = Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1, MinChunk: 16 << 10, MaxChunk: 64 << 10, PackSize: 64 << 10,
	Polynomial: 0x3DA3358B4DC173} // fixed: every repository of the crash suite packs alike

var t0 = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)

const grace = time.Hour

// setupForgotten writes three snapshots that share a part, then forgets
// the older two. It returns the kept snapshot and its content.
func setupForgotten(t *testing.T, store pipeline.BlobStore) (ID, []byte) {
	t.Helper()
	ctx := context.Background()
	r, err := Init(ctx, store, testPass, smallOptions)
	if err != nil {
		t.Fatal(err)
	}
	shared := randomBytes(50, 200<<10)
	var keep ID
	var content []byte
	for i := range 3 {
		data := append(bytes.Clone(shared), randomBytes(uint64(60+i), 300<<10)...)
		l, _, err := r.SaveStream(ctx, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		keep, err = r.SaveSnapshot(ctx, &Snapshot{Time: t0.Add(time.Duration(i-3) * 24 * time.Hour), Units: []Unit{{Section: "config", Chunks: l}}})
		if err != nil {
			t.Fatal(err)
		}
		content = data
	}
	if _, err := r.Forget(ctx, Policy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	return keep, content
}

// prune runs both phases: mark at t0, delete after the grace period.
func prune(ctx context.Context, store pipeline.BlobStore) error {
	r, err := Open(ctx, store, testPass)
	if err != nil {
		return err
	}
	for _, now := range []time.Time{t0, t0.Add(2 * grace)} {
		if _, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return now }}); err != nil {
			return err
		}
	}
	return nil
}

// verifyRepo checks the repository and the kept snapshot's content.
func verifyRepo(t *testing.T, store pipeline.BlobStore, keep ID, content []byte) CheckReport {
	t.Helper()
	ctx := context.Background()
	r, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(ctx, true, 100)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	s, err := r.LoadSnapshot(ctx, keep)
	if err != nil {
		t.Fatal(err)
	}
	if got := load(t, r, s.Units[0].Chunks); !bytes.Equal(got, content) {
		t.Fatal("the kept snapshot's content changed")
	}
	return rep
}

func TestPruneDeletesAfterGrace(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	keep, content := setupForgotten(t, store)
	before := verifyRepo(t, store, keep, content)

	r, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0 }})
	if err != nil || rep.Marked == 0 || len(rep.Deleted) != 0 {
		t.Fatalf("first prune: %+v, %v; want packs marked, none deleted", rep, err)
	}
	rep, err = r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(grace / 2) }})
	if err != nil || len(rep.Deleted) != 0 || rep.Waiting == 0 {
		t.Fatalf("prune within the grace period: %+v, %v; want nothing deleted", rep, err)
	}
	rep, err = r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(grace) }})
	if err != nil || len(rep.Deleted) == 0 || rep.Waiting != 0 {
		t.Fatalf("prune after the grace period: %+v, %v; want the marked packs deleted", rep, err)
	}
	after := verifyRepo(t, store, keep, content)
	t.Logf("prune: %d packs before, %d after; deleted %d (%d bytes)", before.Packs, after.Packs, len(rep.Deleted), rep.Freed)
	if after.Packs != before.Packs-len(rep.Deleted) || len(after.Unreferenced) != 0 {
		t.Fatalf("after prune: %+v", after)
	}
}

// TestPruneBackupDuringGrace: a backup opened before the mark reuses
// chunks of a pack about to be marked; its snapshot, written within the
// grace period, rescues the pack. A backup opened after the mark stores
// marked chunks again instead of reusing them.
func TestPruneBackupDuringGrace(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	keep, content := setupForgotten(t, store)
	forgotten := append(randomBytes(50, 200<<10), randomBytes(60, 300<<10)...) // the oldest snapshot's content

	early, err := Open(ctx, store, testPass) // a backup starts before the prune
	if err != nil {
		t.Fatal(err)
	}
	pr, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0 }}); err != nil {
		t.Fatal(err)
	}
	l, _, err := early.SaveStream(ctx, bytes.NewReader(forgotten))
	if err != nil {
		t.Fatal(err)
	}
	if n := early.Stats().ChunksNew; n != 0 {
		t.Fatalf("the early backup stored %d chunks; it should reuse them all", n)
	}
	earlyID, err := early.SaveSnapshot(ctx, &Snapshot{Time: t0.Add(time.Minute), Units: []Unit{{Section: "config", Chunks: l}}})
	if err != nil {
		t.Fatal(err)
	}

	late, err := Open(ctx, store, testPass) // opened after the mark
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := late.SaveStream(ctx, bytes.NewReader(forgotten[:100<<10])); err != nil {
		t.Fatal(err)
	}
	if late.Stats().ChunksNew == 0 {
		t.Fatal("a backup opened after the mark reused marked chunks")
	}
	if err := late.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	rep, err := pr.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(2 * grace) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second prune: %+v", rep)
	if rep.Rescued == 0 {
		t.Fatal("no pack rescued by the early backup's snapshot")
	}
	verifyRepo(t, store, keep, content)
	verifyRepo(t, store, earlyID, forgotten)
}

// TestPruneCrashAtEveryStep kills prune at each of its writes (before the
// write, and after it with the answer lost) and checks the repository
// verifies and a later prune finishes the job.
func TestPruneCrashAtEveryStep(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	keep0, content0 := setupForgotten(t, store)
	f := blobtest.NewFaulty(store, true)
	if err := prune(ctx, f); err != nil {
		t.Fatal(err)
	}
	steps := blobtest.Writes(f.Calls())
	if len(steps) < 5 {
		t.Fatalf("a clean prune made %d writes", len(steps))
	}
	rep := verifyRepo(t, store, keep0, content0)
	t.Logf("a clean prune makes %d writes; %d packs remain", len(steps), rep.Packs)
	for _, s := range steps {
		for _, after := range []bool{false, true} {
			name := fmt.Sprintf("%s#%d(%s)/after=%v", s.Op, s.Nth, s.Key[:min(len(s.Key), 12)], after)
			t.Run(name, func(t *testing.T) {
				store, _ := newStore(t)
				keep, content := setupForgotten(t, store)
				f := blobtest.NewFaulty(store, false)
				f.Inject(s.Fault(after))
				if err := prune(ctx, f); err == nil {
					t.Fatal("the injected fault did not stop prune")
				}
				verifyRepo(t, store, keep, content)
				if err := prune(ctx, store); err != nil {
					t.Fatal(err)
				}
				r, err := Open(ctx, store, testPass)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(4 * grace) }}); err != nil {
					t.Fatal(err)
				}
				if rep := verifyRepo(t, store, keep, content); len(rep.Unreferenced) != 0 {
					t.Fatalf("%d unindexed packs left after the prunes finished", len(rep.Unreferenced))
				}
				// Nothing is left to mark or delete: the job is done.
				rep, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(6 * grace) }})
				if err != nil || rep.Marked != 0 || rep.Waiting != 0 || len(rep.Deleted) != 0 {
					t.Fatalf("a prune after the job finished: %+v, %v", rep, err)
				}
			})
		}
	}
}

func TestForgetDryRunAndCheckSubset(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	r, err := Init(ctx, store, testPass, smallOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		l, err := r.SaveBytes(ctx, randomBytes(uint64(70+i), 200<<10))
		if err != nil {
			t.Fatal(err)
		}
		src := "http://a"
		if i == 3 {
			src = "http://b" // another source keeps its own newest
		}
		if _, err := r.SaveSnapshot(ctx, &Snapshot{SourceURL: src, Time: t0.Add(time.Duration(i) * time.Hour), Units: []Unit{{Section: "config", Chunks: l}}}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := r.Forget(ctx, Policy{Last: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	keep := 0
	for _, d := range ds {
		if d.Keep {
			keep++
		}
	}
	if len(ds) != 4 || keep != 2 {
		t.Fatalf("dry run: %d decisions, %d kept; want 4 and 2 (one per source)", len(ds), keep)
	}
	if snaps, _ := r.ListSnapshots(ctx); len(snaps) != 4 {
		t.Fatalf("a dry run deleted snapshots: %d left", len(snaps))
	}
	if _, err := r.Forget(ctx, Policy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	if snaps, _ := r.ListSnapshots(ctx); len(snaps) != 2 {
		t.Fatalf("%d snapshots after forget, want 2", len(snaps))
	}
	all, err := r.Check(ctx, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	part, err := r.Check(ctx, true, 25)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read-data check: all %d packs; a 25%% subset read %d", all.PacksRead, part.PacksRead)
	if all.PacksRead != all.IndexedPacks || part.PacksRead >= all.PacksRead {
		t.Fatalf("subset read %d of %d packs", part.PacksRead, all.PacksRead)
	}
}
