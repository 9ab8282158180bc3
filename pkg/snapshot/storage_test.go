package snapshot_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/sensitive"
	"github.com/edgevault/edgevault/pkg/snapshot"
)

func newRepo(t *testing.T) *repository.Repository {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := repository.Init(context.Background(), st, "pw", repository.Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1, MinChunk: 64 << 10, MaxChunk: 256 << 10, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newClient(t *testing.T, emu *edgebasetest.Emulator) *edgebase.Client {
	t.Helper()
	hc := &http.Client{Transport: edgebase.DefaultTransport()}
	t.Cleanup(hc.CloseIdleConnections)
	c, err := edgebase.New(edgebase.Options{BaseURL: emu.URL(), ServiceKey: sensitive.String(emu.ServiceKey()), HTTPClient: hc,
		Retry: edgebase.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seedObjects(t *testing.T, emu *edgebasetest.Emulator, n int, seed func(i int) string) {
	t.Helper()
	objs := make([]edgebasetest.Object, n)
	for i := range objs {
		objs[i] = edgebasetest.Object{Key: fmt.Sprintf("files/obj-%04d.bin", i), ContentType: "application/x-test", Size: int64(100 + 37*i), Seed: seed(i)}
	}
	if err := emu.AddObjects(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
}

// take stores the bucket as a snapshot's table and saves the snapshot.
func take(t *testing.T, repo *repository.Repository, parent *repository.Snapshot, src snapshot.Storage) (*repository.Snapshot, snapshot.StorageResult) {
	t.Helper()
	ctx := context.Background()
	res, err := snapshot.TakeStorage(ctx, repo, parent, src, 4)
	if err != nil {
		t.Fatal(err)
	}
	s := &repository.Snapshot{Storage: res.Table}
	if _, err := repo.SaveSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s, res
}

// A second snapshot reads only the objects that changed; the rest keep
// the parent's chunks, and every object's bytes, type and hash survive.
func TestUnchangedObjectsAreNotFetched(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "admin", true: "r2-direct"}[direct], func(t *testing.T) {
			ctx := context.Background()
			emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
			seedObjects(t, emu, 60, func(i int) string { return fmt.Sprint("v1-", i) })
			var src snapshot.Storage = snapshot.AdminStorage{Client: newClient(t, emu)}
			getEndpoint := "dump-storage:get"
			var stats *edgebasetest.S3Stats
			if direct {
				url, st, _ := emu.ServeS3(t)
				store, err := r2.New(r2.Config{Endpoint: url, Bucket: emu.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
					SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey)})
				if err != nil {
					t.Fatal(err)
				}
				src, stats = snapshot.DirectStorage{DirectStorage: store}, st
			}
			repo := newRepo(t)
			first, res := take(t, repo, nil, src)
			if res.Fetched != 60 || res.Reused != 0 || first.Storage.Objects != 60 {
				t.Fatalf("first: fetched %d reused %d objects %d", res.Fetched, res.Reused, first.Storage.Objects)
			}
			// Change three objects and add one.
			changed := map[int]bool{5: true, 17: true, 59: true}
			seedObjects(t, emu, 60, func(i int) string {
				if changed[i] {
					return fmt.Sprint("v2-", i)
				}
				return fmt.Sprint("v1-", i)
			})
			if err := emu.AddObjects(ctx, edgebasetest.Object{Key: "files/zz-new.txt", ContentType: "text/plain", Data: []byte("new")}); err != nil {
				t.Fatal(err)
			}
			emu.ResetRequests()
			s3gets := func() int64 { return 0 }
			if stats != nil {
				s3gets = func() int64 { return stats.Requests.Load() - stats.Lists.Load() }
			}
			getsBefore := s3gets()
			second, res := take(t, repo, first, src)
			if res.Fetched != 4 || res.Reused != 57 || second.Storage.Objects != 61 {
				t.Fatalf("second: fetched %d reused %d objects %d", res.Fetched, res.Reused, second.Storage.Objects)
			}
			if direct {
				if got := s3gets() - getsBefore; got != 4 {
					t.Errorf("%d S3 GETs, want 4", got)
				}
			} else {
				gets := emu.RequestsTo(getEndpoint)
				keys := map[string]bool{}
				for _, r := range gets {
					keys[r.Fields["key"]] = true
				}
				want := map[string]bool{"files/obj-0005.bin": true, "files/obj-0017.bin": true, "files/obj-0059.bin": true, "files/zz-new.txt": true}
				if len(gets) != 4 || fmt.Sprint(keys) != fmt.Sprint(want) {
					t.Errorf("storage gets %v, want exactly %v", keys, want)
				}
			}
			// Every entry of the second table holds the object's current bytes.
			err := repo.ReadTable(ctx, second.Storage, func(e repository.StorageEntry) error {
				want, ct, err := emu.ObjectContent(ctx, e.Key)
				if err != nil {
					return err
				}
				var got sliceWriter
				if err := repo.LoadStream(ctx, e.Chunks, &got); err != nil {
					return err
				}
				if string(got) != string(want) || e.Size != int64(len(want)) || e.ContentType != ct {
					return fmt.Errorf("%s: %d bytes %q, want %d %q", e.Key, len(got), e.ContentType, len(want), ct)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

type sliceWriter []byte

func (w *sliceWriter) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }
