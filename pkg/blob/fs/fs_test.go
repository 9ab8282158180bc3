package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSuite(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) pipeline.BlobStore { return newStore(t) })
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Put(ctx, "a/b/put", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "a/create", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Compose(ctx, "c/compose", []string{"a/b/put", "a/create"}); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := iofs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSymlinkEscape(t *testing.T) {
	s := newStore(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.root.Name(), "link")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "link/new", strings.NewReader("x")); err == nil {
		t.Error("Put through a symlink out of the root succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("a file appeared outside the root: %v", err)
	}
	if rc, err := s.Get(ctx, "link/secret"); err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Errorf("Get through a symlink out of the root read %q", b)
	}
	if err := s.Delete(ctx, "link/secret"); err == nil {
		if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
			t.Errorf("Delete through a symlink removed a file outside the root")
		}
	}
	var listed []string
	if err := s.List(ctx, "", func(i blob.Info) error { listed = append(listed, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Errorf("List followed a symlink: %q", listed)
	}
}

func TestReservedTempNames(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, k := range []string{TempPrefix + "x", "a/" + TempPrefix + "y/b"} {
		if err := s.Put(ctx, k, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) accepted a reserved name", k)
		}
	}
	// Leftovers of a crashed write stay hidden.
	if err := os.WriteFile(filepath.Join(s.root.Name(), TempPrefix+"crashed"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "visible", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := s.List(ctx, "", func(i blob.Info) error { listed = append(listed, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != "visible" {
		t.Errorf("List = %q", listed)
	}
}

func TestDeletePrunesDirectories(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Put(ctx, "jobs/1/parts/a", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "jobs/2", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "jobs/1/parts/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.root.Name(), "jobs", "1")); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("empty directories left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.root.Name(), "jobs", "2")); err != nil {
		t.Errorf("sibling removed: %v", err)
	}
}

func TestKeyConflictsWithDirectory(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Put(ctx, "a/b", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a", strings.NewReader("x")); err == nil {
		t.Error("Put(a) over the directory of a/b succeeded")
	}
	if err := s.Put(ctx, "a/b/c", strings.NewReader("x")); err == nil {
		t.Error("Put(a/b/c) below the blob a/b succeeded")
	}
	if err := s.Create(ctx, "a", strings.NewReader("x")); err == nil {
		t.Error("Create(a) over a directory succeeded")
	}
}

// The behaviour contract holds for non-durable writes too.
func TestSuiteWithoutSync(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) pipeline.BlobStore {
		s, err := NewWithOptions(t.TempDir(), Options{NoSync: func(string) bool { return true }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestWritesRaceDeletesThatPrune: writers into a directory that
// concurrent deletes keep pruning (the last blob of a directory removed)
// never fail: a directory removed between its creation and its use is
// created again.
func TestWritesRaceDeletesThatPrune(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("a/b/w%d-%d", w, i)
				if err := s.Create(ctx, key, bytes.NewReader([]byte("x"))); err != nil {
					t.Error(err)
					return
				}
				if err := s.Delete(ctx, key); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestListRacesDeletesThatPrune: a directory a Delete prunes while List
// reads it lists as empty, not as an error.
func TestListRacesDeletesThatPrune(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("jobs/j/parts/w%d/%d/part", w, i)
				if err := s.Put(ctx, key, bytes.NewReader([]byte("x"))); err != nil {
					t.Error(err)
					return
				}
				if err := s.Delete(ctx, key); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 2000 {
		if err := s.List(ctx, "jobs/", func(blob.Info) error { return nil }); err != nil {
			t.Errorf("List while directories are pruned: %v", err)
			break
		}
	}
	close(stop)
	wg.Wait()
}

// TestDirectoryHandlesAreBounded: the cached directory handles never hold
// more descriptors than the cache's size, however many directories a job
// writes (one per task and delivery).
func TestDirectoryHandlesAreBounded(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd to count descriptors")
	}
	openFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	s := newStore(t)
	ctx := context.Background()
	before := openFDs()
	for i := range 4 * maxCachedDirs {
		key := fmt.Sprintf("jobs/j/parts/%05d/d/part", i)
		if err := s.Put(ctx, key, bytes.NewReader([]byte("x"))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if grew := openFDs() - before; grew > maxCachedDirs+8 {
		t.Fatalf("%d descriptors more after writing %d directories (cache of %d)", grew, 4*maxCachedDirs, maxCachedDirs)
	}
}

func TestRename(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Put(ctx, "tmp/1", strings.NewReader("new")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a/b/key", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "tmp/1", "a/b/key"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "tmp/2", strings.NewReader("deep")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "tmp/2", "new/dir/key"); err != nil {
		t.Fatalf("rename into a new directory: %v", err)
	}
	for key, want := range map[string]string{"a/b/key": "new", "new/dir/key": "deep"} {
		rc, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if _, err := s.Stat(ctx, "tmp/1"); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("the renamed blob is still there: %v", err)
	}
	if err := s.Rename(ctx, "tmp/missing", "x"); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("rename of a missing blob: %v", err)
	}
	if err := s.Rename(ctx, "a/b/key", "../escape"); err == nil {
		t.Error("rename to an invalid key was accepted")
	}
}
