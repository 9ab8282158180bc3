package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/snapshot"
)

// crashOptions pack every run alike (a fixed chunker polynomial, objects
// read one at a time), so the Nth write of a run is the probe's Nth.
var crashOptions = repository.Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1, MinChunk: 64 << 10, MaxChunk: 256 << 10, PackSize: 256 << 10,
	Polynomial: 0x3DA3358B4DC173}

// backupOnce is one incremental snapshot backup through store: open, a
// unit, the storage table against the newest snapshot, the snapshot.
func backupOnce(ctx context.Context, store pipeline.BlobStore, src snapshot.Storage) (repository.ID, error) {
	r, err := repository.Open(ctx, store, "pw")
	if err != nil {
		return repository.ID{}, err
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return repository.ID{}, err
	}
	var parent *repository.Snapshot
	if len(snaps) > 0 {
		parent = snaps[len(snaps)-1].Snapshot
	}
	unit, err := r.SaveBytes(ctx, []byte(fmt.Sprintf(`{"tables":{"t":[{"id":%d}]}}`, len(snaps))))
	if err != nil {
		return repository.ID{}, err
	}
	res, err := snapshot.TakeStorage(ctx, r, parent, src, 1)
	if err != nil {
		return repository.ID{}, err
	}
	s := &repository.Snapshot{Header: archive.Header{Version: "1.1", Timestamp: "2026-12-03T00:00:00.000Z", Source: "docker"},
		Units: []repository.Unit{{Section: archive.SectionConfig, Size: 28, Chunks: unit}}, Storage: res.Table}
	return r.SaveSnapshot(ctx, s)
}

// A snapshot backup that fails at any write (before it, or after it with
// the answer lost) leaves a repository that checks clean with every chunk
// re-read, keeps the earlier snapshot intact, and the next backup makes a
// complete snapshot.
func TestBackupFailsAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	// The deployment before (v1) and at (emu) the backup under test: three
	// changed objects and two new, one of several packs.
	v1 := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	seedObjects(t, v1, 12, func(i int) string { return fmt.Sprint("v1-", i) })
	emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	seedObjects(t, emu, 12, func(i int) string {
		if i%4 == 0 {
			return fmt.Sprint("v2-", i)
		}
		return fmt.Sprint("v1-", i)
	})
	if err := emu.AddObjects(ctx, edgebasetest.Object{Key: "files/zz-new.txt", ContentType: "text/plain", Data: []byte("new")},
		edgebasetest.Object{Key: "files/zz-big.bin", ContentType: "application/zip", Size: 900 << 10}); err != nil {
		t.Fatal(err)
	}
	src := snapshot.AdminStorage{Client: newClient(t, emu)}
	setup := func(t *testing.T) pipeline.BlobStore {
		st, err := fs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := repository.Init(ctx, st, "pw", crashOptions); err != nil {
			t.Fatal(err)
		}
		if _, err := backupOnce(ctx, st, snapshot.AdminStorage{Client: newClient(t, v1)}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	probe := blobtest.NewFaulty(setup(t), true)
	if _, err := backupOnce(ctx, probe, src); err != nil {
		t.Fatal(err)
	}
	steps := blobtest.Writes(probe.Calls())
	if len(steps) < 3 {
		t.Fatalf("a clean backup made %d writes: %v", len(steps), steps)
	}
	t.Logf("a clean incremental backup makes %d writes", len(steps))
	for _, s := range steps {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s#%d(%s)/after=%v", s.Op, s.Nth, strings.SplitN(s.Key, "/", 2)[0], after), func(t *testing.T) {
				st := setup(t)
				f := blobtest.NewFaulty(st, false)
				f.Inject(s.Fault(after))
				_, err := backupOnce(ctx, f, src)
				if err == nil {
					t.Fatal("the injected fault did not stop the backup")
				}
				if !errors.Is(err, blobtest.ErrInjected) {
					t.Fatalf("the backup failed with %v, not the injected fault", err)
				}
				r, err := repository.Open(ctx, st, "pw")
				if err != nil {
					t.Fatal(err)
				}
				if rep, err := r.Check(ctx, true, 0); err != nil {
					t.Fatalf("the repository does not check after the failure: %v (%+v)", err, rep)
				}
				id, err := backupOnce(ctx, st, src)
				if err != nil {
					t.Fatalf("the next backup: %v", err)
				}
				checkTable(ctx, t, st, id, emu)
			})
		}
	}
}

// checkTable checks snapshot id's objects against the emulator's.
func checkTable(ctx context.Context, t *testing.T, st pipeline.BlobStore, id repository.ID, emu *edgebasetest.Emulator) {
	t.Helper()
	r, err := repository.Open(ctx, st, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Check(ctx, true, 0); err != nil {
		t.Fatal(err)
	}
	s, err := r.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = r.ReadTable(ctx, s.Storage, func(e repository.StorageEntry) error {
		n++
		want, _, err := emu.ObjectContent(ctx, e.Key)
		if err != nil {
			return err
		}
		var got sliceWriter
		if err := r.LoadStream(ctx, e.Chunks, &got); err != nil {
			return err
		}
		if string(got) != string(want) {
			return fmt.Errorf("%s: the snapshot holds other bytes", e.Key)
		}
		return nil
	})
	if err != nil || n != 14 {
		t.Fatalf("%d objects, %v", n, err)
	}
}
