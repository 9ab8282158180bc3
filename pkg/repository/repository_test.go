package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

const testPass = "correct horse battery staple"

// testOptions keep scrypt cheap; everything else is the default.
var testOptions = Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1}

func newStore(t *testing.T) (*fs.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func initRepo(t *testing.T, store pipeline.BlobStore) *Repository {
	t.Helper()
	r, err := Init(context.Background(), store, testPass, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// randomBytes are incompressible, reproducible bytes.
func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func listKeys(t *testing.T, store pipeline.BlobStore) []string {
	t.Helper()
	var keys []string
	for _, p := range []string{"config", "keys/", "data/", "index/", "snapshots/", "locks/"} {
		if err := store.List(context.Background(), p, func(i blob.Info) error {
			keys = append(keys, i.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func load(t *testing.T, r *Repository, l ChunkList) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := r.LoadStream(context.Background(), l, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestInitSaveOpenLoad(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	r := initRepo(t, store)
	data := randomBytes(1, 12<<20)
	list, size, err := r.SaveStream(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(data)) || len(list) < 2 {
		t.Fatalf("size %d, %d chunks; want %d bytes in several chunks", size, len(list), len(data))
	}
	id, err := r.SaveSnapshot(ctx, &Snapshot{SourceURL: "http://src", Units: []Unit{{Section: "config", Size: size, Chunks: list}}})
	if err != nil {
		t.Fatal(err)
	}

	r2, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID() != r.ID() {
		t.Fatalf("id %s after open, %s at init", r2.ID(), r.ID())
	}
	s, err := r2.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.SourceURL != "http://src" || len(s.Units) != 1 {
		t.Fatalf("snapshot %+v", s)
	}
	if got := load(t, r2, s.Units[0].Chunks); !bytes.Equal(got, data) {
		t.Fatal("loaded content differs from what was saved")
	}
	latest, err := r2.FindSnapshot(ctx, "latest")
	if err != nil || latest.ID != id {
		t.Fatalf("latest = %v, %v; want %s", latest.ID, err, id)
	}
	if _, err := r2.Check(ctx, true, 100); err != nil {
		t.Fatal(err)
	}
}

func TestOpenFailsClosed(t *testing.T) {
	ctx := context.Background()
	store, dir := newStore(t)
	if _, err := Open(ctx, store, testPass); !errors.Is(err, ErrNotRepository) {
		t.Fatalf("open of an empty store: %v, want ErrNotRepository", err)
	}
	r := initRepo(t, store)
	if _, err := r.SaveBytes(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveSnapshot(ctx, &Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, store, testPass, testOptions); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	before := listKeys(t, store)
	_, err := Open(ctx, store, "not the passphrase")
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	t.Logf("wrong passphrase: %v", err)
	if after := listKeys(t, store); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("a failed open changed the store:\n%v\n%v", before, after)
	}

	// A config of another version is refused before any key is tried.
	path := filepath.Join(dir, "config")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cf map[string]any
	if err := json.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	cf["version"] = 2
	b2, _ := json.Marshal(cf)
	if err := os.WriteFile(path, b2, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, store, testPass); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 2: %v, want ErrVersion", err)
	}
}

func TestDedupAcrossSaves(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	r := initRepo(t, store)
	data := randomBytes(2, 32<<20)
	if _, _, err := r.SaveStream(ctx, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	first := r.Stats()

	// The same bytes again store nothing; a 4 KiB change in the middle
	// stores about the chunks around it.
	edited := bytes.Clone(data)
	copy(edited[len(edited)/2:], randomBytes(3, 4096))
	list, _, err := r.SaveStream(ctx, bytes.NewReader(edited))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	second := r.Stats()
	newBytes := second.BytesNew - first.BytesNew
	written := second.Written - first.Written
	t.Logf("first save: %d bytes in %d chunks, wrote %d bytes in %d packs", first.BytesNew, first.ChunksNew, first.Written, first.Packs)
	t.Logf("after a 4 KiB edit of 32 MiB: %d new chunks (%d bytes), %d reused; wrote %d bytes (%.2f%% of the first)",
		second.ChunksNew-first.ChunksNew, newBytes, second.ChunksDup-first.ChunksDup, written, 100*float64(written)/float64(first.Written))
	if newBytes > 2*int64(chunkerMax(r)) {
		t.Fatalf("a 4 KiB edit stored %d new bytes", newBytes)
	}
	if got := load(t, r, list); !bytes.Equal(got, edited) {
		t.Fatal("edited content does not round-trip")
	}
}

func chunkerMax(r *Repository) uint { return r.cfg.MaxChunk }

// packFiles are the paths of every pack under dir.
func packFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "data", "*", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no packs: %v", err)
	}
	return files
}

func TestCheckFindsFlippedByteAndMissingPack(t *testing.T) {
	ctx := context.Background()
	store, dir := newStore(t)
	r := initRepo(t, store)
	list, _, err := r.SaveStream(ctx, bytes.NewReader(randomBytes(4, 6<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveSnapshot(ctx, &Snapshot{Units: []Unit{{Section: "config", Chunks: list}}}); err != nil {
		t.Fatal(err)
	}
	packs := packFiles(t, dir)
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0x01
	if err := os.WriteFile(packs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}

	r2, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Check(ctx, false, 0); err != nil {
		t.Fatalf("structure check sees a flipped data byte: %v", err)
	}
	rep, err := r2.Check(ctx, true, 100)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read-data check of a flipped byte: %v, want ErrCorrupt", err)
	}
	t.Logf("check --read-data: %v (report %+v)", err, rep.Errors)
	err = r2.LoadStream(ctx, list, new(bytes.Buffer))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("load of a flipped byte: %v, want ErrCorrupt", err)
	}
	t.Logf("load: %v", err)

	if err := os.Remove(packs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Check(ctx, false, 0); !errors.Is(err, ErrMissing) {
		t.Fatalf("check with a pack gone: %v, want ErrMissing", err)
	}
}

func TestStorageTableRoundTrip(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	r := initRepo(t, store)
	tw := r.NewTableWriter(ctx)
	var want []StorageEntry
	for i := range 3000 {
		obj := randomBytes(uint64(100+i), 2000+i)
		l, err := r.SaveBytes(ctx, obj)
		if err != nil {
			t.Fatal(err)
		}
		e := StorageEntry{Key: keyName(i), Size: int64(len(obj)), ETag: "e", ContentType: "application/octet-stream", Chunks: l}
		want = append(want, e)
		if err := tw.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	table, err := tw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveSnapshot(ctx, &Snapshot{Storage: table}); err != nil {
		t.Fatal(err)
	}
	var got []StorageEntry
	if err := r.ReadTable(ctx, table, func(e StorageEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if !bytes.Equal(wb, gb) {
		t.Fatal("storage table does not round-trip")
	}
	if rep, err := r.Check(ctx, true, 100); err != nil || rep.Chunks < 3000 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

func keyName(i int) string { return fmt.Sprintf("bucket/obj-%05d.bin", i) }

func TestMissingIndexIsAClearError(t *testing.T) {
	ctx := context.Background()
	store, dir := newStore(t)
	r := initRepo(t, store)
	list, err := r.SaveBytes(ctx, randomBytes(5, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveSnapshot(ctx, &Snapshot{Units: []Unit{{Section: "config", Chunks: list}}}); err != nil {
		t.Fatal(err)
	}
	idx, err := filepath.Glob(filepath.Join(dir, "index", "*"))
	if err != nil || len(idx) != 1 {
		t.Fatalf("index files: %v, %v", idx, err)
	}
	if err := os.Remove(idx[0]); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	err = r2.LoadStream(ctx, list, new(bytes.Buffer))
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("load without an index: %v, want ErrMissing", err)
	}
	rep, err := r2.Check(ctx, false, 0)
	if !errors.Is(err, ErrMissing) || len(rep.Unreferenced) == 0 {
		t.Fatalf("check without an index: %v (%+v), want ErrMissing and unindexed packs", err, rep)
	}
	t.Logf("check: %v", err)
	// A snapshot naming an unstored chunk is refused.
	if _, err := r2.SaveSnapshot(ctx, &Snapshot{Units: []Unit{{Section: "config", Chunks: ChunkList{{1}}}}}); !errors.Is(err, ErrMissing) {
		t.Fatalf("snapshot of an unstored chunk: %v", err)
	}
}
