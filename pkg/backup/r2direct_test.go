package backup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	pl "github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// sizedQueue records the largest message body sent.
type sizedQueue struct {
	*mem.Queue
	mu      sync.Mutex
	largest int
}

func (q *sizedQueue) Send(ctx context.Context, msgs ...pl.Message) error {
	q.mu.Lock()
	for _, m := range msgs {
		b, _ := json.Marshal(m)
		q.largest = max(q.largest, len(b))
	}
	q.mu.Unlock()
	return q.Queue.Send(ctx, msgs...)
}

// A bucket backs up through R2 direct with no request, message or
// planning file holding more than one page of keys. go test (and make
// test) runs 5,000 objects in pages of 100; EDGEVAULT_SCALE=1 runs
// 200,000 objects in pages of 1,000 (about 4 minutes on 2 cores).
func TestR2DirectBucketPagesOnly(t *testing.T) {
	objects, page := 5000, 100
	if os.Getenv("EDGEVAULT_SCALE") != "" {
		objects, page = 200000, 1000
	}
	ctx := context.Background()
	emu := edgebasetest.NewTest(t, edgebasetest.Options{Now: fixedNow, StateDir: t.TempDir()})
	batch := make([]edgebasetest.Object, 0, 1000)
	for i := range objects {
		batch = append(batch, edgebasetest.Object{Key: fmt.Sprintf("files/%07d", i), Size: 16, Seed: fmt.Sprint(i)})
		if len(batch) == cap(batch) || i == objects-1 {
			if err := emu.AddObjects(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	url, stats, _ := emu.ServeS3(t)
	store, err := r2.New(r2.Config{Endpoint: url, Bucket: emu.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
		SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fsStore, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsStore.Close() })
	client := newClient(t, emu)
	q := &sizedQueue{Queue: mem.New(mem.Options{VisibilityTimeout: time.Hour})}
	engine, err := edgevault.New(edgevault.Deps{Store: fsStore, Staging: "staging/", Archives: "archives/", Tasks: q,
		Client: client, Enum: &discovery.Enumerator{Client: client, StateDir: emu.StateDir()}, Source: "docker", Now: fixedNow,
		R2:     store,
		Engine: pl.Options{MaxAttempts: 3, Backoff: pl.Backoff{Base: time.Millisecond}},
		Backup: edgevault.BackupOptions{Concurrency: 8, RangeKeys: page, ComposeAbove: -1, Spool: backup.NewSpool(t.TempDir(), 0, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Start(ctx, events.StartRequest{JobID: "big", Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}}); err != nil {
		t.Fatal(err)
	}
	job, err := (&pl.Runner{Engine: engine, Queue: q, Depth: q.Len, Concurrency: 4}).Run(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if job.State != events.StateDone {
		t.Fatalf("job %s: %+v", job.State, job.Errors)
	}
	if job.Summary.Objects != int64(objects) {
		t.Errorf("%d objects backed up, want %d", job.Summary.Objects, objects)
	}
	if n := len(emu.RequestsTo("dump-storage")); n != 0 {
		t.Errorf("%d dump-storage requests, want none", n)
	}
	if m := stats.MaxListKeys.Load(); m > int64(page) {
		t.Errorf("one list reply held %d keys, page size %d", m, page)
	}
	// A task message names its range; it never carries keys.
	if q.largest > 2048 {
		t.Errorf("largest queue message %d bytes", q.largest)
	}
	// Planning files hold range bounds, never a listing.
	err = filepath.WalkDir(filepath.Join(dir, "staging"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(p, "/plan/") {
			return err
		}
		if strings.HasSuffix(p, ".ndjson") && strings.Contains(filepath.Base(p), "storage-") {
			t.Errorf("a storage listing was stored: %s", p)
		}
		if st, _ := d.Info(); st.Size() > 64<<10 {
			t.Errorf("planning file %s has %d bytes", p, st.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
