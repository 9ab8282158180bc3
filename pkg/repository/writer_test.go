package repository

import (
	"bytes"
	"context"
	"testing"

	"github.com/edgevault/edgevault/pkg/archive"
)

// Writers write packs and nothing else: the chunks become visible only
// when an IndexWriter writes their records, and a writer deduplicates
// against the index and itself, never against another writer's packs
// (which may never be indexed).
func TestWritersIndexWriterAndSealedSnapshot(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	r := initRepo(t, store)
	data := randomBytes(1, 3<<20)

	w1, w2 := r.NewWriter(), r.NewWriter()
	l1, _, err := w1.SaveStream(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := w1.SaveStream(ctx, bytes.NewReader(data))
	if err != nil || len(again) != len(l1) {
		t.Fatal(err)
	}
	if st := w1.Stats(); st.ChunksDup != int64(len(l1)) {
		t.Fatalf("a writer stores its own chunks once: %+v", st)
	}
	if _, _, err := w2.SaveStream(ctx, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if st := w2.Stats(); st.ChunksNew != int64(len(l1)) {
		t.Fatalf("a writer must not reuse another writer's unindexed chunks: %+v", st)
	}
	recs1, err := w1.Finish(ctx)
	if err != nil || len(recs1) == 0 {
		t.Fatalf("records %v, %v", recs1, err)
	}
	if _, err := w2.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := listKeys(t, store); countPrefix(keys, "index/") != 0 {
		t.Fatalf("writers wrote an index: %v", keys)
	}
	snap := &Snapshot{SourceURL: "https://x", Header: archive.Header{Version: archive.Version}, Units: []Unit{{Section: archive.SectionConfig, Size: int64(len(data)), Chunks: l1}}}
	if _, _, err := r.SealSnapshot(snap); err == nil {
		t.Fatal("a snapshot naming unindexed chunks was sealed")
	}
	iw := r.NewIndexWriter()
	if err := iw.Add(ctx, recs1...); err != nil {
		t.Fatal(err)
	}
	if err := iw.Add(ctx, recs1...); err != nil { // a repeated step
		t.Fatal(err)
	}
	if err := iw.Close(ctx); err != nil || iw.Files != 1 {
		t.Fatalf("files %d, %v", iw.Files, err)
	}
	id, b, err := r.SealSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a repeated final step stores the same file
		if got, err := r.PutSnapshot(ctx, b); err != nil || got != id {
			t.Fatalf("put %s, %v; want %s", got, err, id)
		}
	}
	if _, err := r.PutSnapshot(ctx, []byte("not a snapshot at all, not sealed")); err == nil {
		t.Fatal("stored garbage as a snapshot")
	}
	r2, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r2.Check(ctx, true, 100)
	if err != nil || len(rep.Errors) > 0 || rep.Snapshots != 1 {
		t.Fatalf("check %+v, %v", rep, err)
	}
	if len(rep.Unreferenced) == 0 {
		t.Fatal("the second writer's packs should be unindexed garbage")
	}
	if !bytes.Equal(load(t, r2, l1), data) {
		t.Fatal("content differs")
	}
	// A later writer of a reloaded repository reuses what is indexed now.
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	w3 := r.NewWriter()
	if _, _, err := w3.SaveStream(ctx, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if recs, _ := w3.Finish(ctx); len(recs) != 0 {
		t.Fatalf("indexed chunks were stored again: %d packs", len(recs))
	}
}

// A writer does not reuse chunks of the repository's own writer that no
// index file names yet; once flushed, it does.
func TestWriterIgnoresUnflushedPacks(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	r := initRepo(t, store)
	data := randomBytes(2, 2<<20)
	if _, err := r.SaveBytes(ctx, data); err != nil {
		t.Fatal(err)
	}
	w := r.NewWriter()
	if _, err := w.SaveBytes(ctx, data); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.ChunksDup != 0 || st.ChunksNew == 0 {
		t.Fatalf("reused unflushed chunks: %+v", st)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	w2 := r.NewWriter()
	if _, err := w2.SaveBytes(ctx, data); err != nil {
		t.Fatal(err)
	}
	if st := w2.Stats(); st.ChunksNew != 0 {
		t.Fatalf("stored indexed chunks again: %+v", st)
	}
}

func countPrefix(keys []string, p string) int {
	n := 0
	for _, k := range keys {
		if len(k) >= len(p) && k[:len(p)] == p {
			n++
		}
	}
	return n
}
