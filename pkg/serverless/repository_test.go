package serverless

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/repository"
	repokms "github.com/edgevault/edgevault/pkg/repository/kms"
	"github.com/edgevault/edgevault/pkg/serverless/lambdatest"
)

// repoBed is the testbed in repository mode: the repository in the
// bucket's directory under its prefix, its key wrapped by a KMS key (moto).
type repoBed struct {
	*testbed
	repo   *fs.Store
	key    repository.KeyWrapper
	keyARN string
}

const testRepoPrefix = "repository/"

func newRepoBed(t *testing.T) *repoBed {
	t.Helper()
	tb := newTestbed(t)
	repo, err := fs.New(filepath.Join(tb.dir, "repository"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	c := motoserver.Clients(t).KMS()
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecSymmetricDefault, KeyUsage: kmstypes.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out.KeyMetadata.Arn)
	key, err := repokms.New(c, arn)
	if err != nil {
		t.Fatal(err)
	}
	return &repoBed{testbed: tb, repo: repo, key: key, keyARN: arn}
}

// backup runs one backup through the three functions (every task message
// delivered twice), in repository mode unless archive, and returns the
// finished job.
func (rb *repoBed) backup(ctx context.Context, t *testing.T, id string, archiveMode bool) *events.Job {
	t.Helper()
	config := func(fn string) Config {
		c := rb.config(fn)
		if !archiveMode {
			c.RepositoryPrefix, c.RepositoryKMSKey = testRepoPrefix, rb.keyARN
		}
		return c
	}
	deps := func() Deps {
		d := rb.deps()
		if !archiveMode {
			d.Repository, d.RepositoryKey = rb.repo, rb.key
		}
		return d
	}
	wcfg := config(lambdaenv.Worker)
	wcfg.SpoolDir = t.TempDir()
	w, err := NewWorker(wcfg, rb.runtime(), deps())
	if err != nil {
		t.Fatal(err)
	}
	ad := deps()
	ad.EdgeBase, ad.Enum = nil, nil
	a, err := NewAssembler(config(lambdaenv.Assembler), rb.runtime(), ad)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewScheduler(config(lambdaenv.Scheduler), rb.runtime(), deps())
	if err != nil {
		t.Fatal(err)
	}
	rb.taskQ.Duplicate = true
	worker := &lambdatest.EventSource{Queue: rb.tasks, Handler: w.Handle, BatchSize: 10}
	assembler := &lambdatest.EventSource{Queue: rb.control, Handler: a.Handle, BatchSize: 1}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, src := range []*lambdatest.EventSource{worker, assembler} {
		wg.Go(func() {
			if err := src.Run(runCtx); err != nil {
				t.Error(err)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	payload, _ := json.Marshal(events.StartRequest{JobID: id, Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}})
	ictx, cancel := invocation(ctx, "start-"+id, time.Minute)
	defer cancel()
	if res, err := s.Handle(ictx, payload); err != nil || res.State != events.StateRunning {
		t.Fatalf("start %s: %+v %v", id, res, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		job := rb.job(ctx, t, id)
		if job.State == events.StateDone {
			return job
		}
		if job.State.Terminal() || time.Now().After(deadline) {
			t.Fatalf("backup %s: %s %v", id, job.State, job.Errors)
		}
	}
}

// documentOf is a backup.json as a value, its timestamps left out (the
// backups under comparison ran at different times).
func documentOf(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var strip func(any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "timestamp")
			for _, e := range x {
				strip(e)
			}
		case []any:
			for _, e := range x {
				strip(e)
			}
		}
	}
	strip(v)
	return v
}

// Repository mode end to end: the scheduler creates the repository (its
// key wrapped by KMS) and plans, the workers write packs and fragments
// (every message delivered twice), the assembler writes the index, the
// storage table and the snapshot. A second backup after a change reads
// only the new and the changed object, names the first as its parent,
// and exports to the document the archive mode writes for the same data.
func TestRepositoryModeThroughTheFunctions(t *testing.T) {
	ctx := testContext(t)
	rb := newRepoBed(t)

	first := rb.backup(ctx, t, "r1", false)
	if first.Snapshot == "" || first.Archive != "" || !first.Options.Repository {
		t.Fatalf("first backup: snapshot %q archive %q repository %v", first.Snapshot, first.Archive, first.Options.Repository)
	}
	changed := edgebasetest.DemoObjects()[2]
	if err := rb.emu.AddObjects(ctx, edgebasetest.Object{Key: changed.Key, ContentType: "text/plain", Data: []byte("changed")},
		edgebasetest.Object{Key: "uploads/zz-new.bin", ContentType: "application/zip", Size: 700 << 10}); err != nil {
		t.Fatal(err)
	}
	if err := rb.emu.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"id": "e2", "amount": 2.5, "memo": "second"}); err != nil {
		t.Fatal(err)
	}
	// The keys read (a task delivered twice at once may read one twice).
	gets := func(after int) map[string]bool {
		keys := map[string]bool{}
		for _, r := range rb.emu.Requests() {
			if r.Endpoint == "dump-storage:get" && r.Seq > after {
				keys[r.Fields["key"]] = true
			}
		}
		return keys
	}
	before := len(rb.emu.Requests())
	if rs := rb.emu.Requests(); before > 0 {
		before = rs[before-1].Seq
	}
	second := rb.backup(ctx, t, "r2", false)
	fetched := gets(before)
	arch := rb.backup(ctx, t, "a2", true)

	r, err := repository.OpenWith(ctx, rb.repo, repository.Credentials{Wrapper: rb.key})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(ctx, true, 100)
	if err != nil || len(rep.Errors) > 0 {
		t.Fatalf("check: %v %v", err, rep.Errors)
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("%d snapshots, %v; want 2", len(snaps), err)
	}
	if snaps[0].ID.String() != first.Snapshot || snaps[1].ID.String() != second.Snapshot || snaps[1].Parent != snaps[0].ID {
		t.Fatalf("snapshots %s, %s (parent %s); jobs say %s, %s", snaps[0].ID, snaps[1].ID, snaps[1].Parent, first.Snapshot, second.Snapshot)
	}
	if len(fetched) != 2 || !fetched[changed.Key] || !fetched["uploads/zz-new.bin"] || snaps[1].Storage.Objects != 6 {
		t.Errorf("the second backup read %v of %d objects; want the new and the changed one of 6", fetched, snaps[1].Storage.Objects)
	}
	var got bytes.Buffer
	if err := r.Export(ctx, snaps[1].Snapshot, &got, archive.JSON); err != nil {
		t.Fatal(err)
	}
	want := tarBackupJSON(ctx, t, rb, arch.Archive)
	if !reflect.DeepEqual(documentOf(t, got.Bytes()), documentOf(t, want)) {
		t.Fatalf("the snapshot's document differs from the archive's:\n%s\n%s", got.Bytes(), want)
	}
	if snaps[1].EdgevaultVersion == "" || snaps[1].SourceURL != rb.emu.URL() || snaps[1].Header.Source == "" {
		t.Errorf("snapshot metadata %+v", snaps[1].Snapshot)
	}
	b, err := newBase(rb.config(lambdaenv.API), rb.runtime(), Deps{Store: rb.store})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := readJobStatus(ctx, b, "r2"); err != nil || st.Snapshot != second.Snapshot || st.Archive != nil {
		t.Errorf("status: %+v %v; want snapshot %s", st, err, second.Snapshot)
	}
}

// tarBackupJSON is the backup.json of a .tar.gz archive in the bucket.
func tarBackupJSON(ctx context.Context, t *testing.T, rb *repoBed, key string) []byte {
	t.Helper()
	rc, err := rb.store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != "backup.json" {
		t.Fatalf("%v %v", h, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Repository mode without the repository's store or key refuses to start.
func TestRepositoryModeNeedsItsRepository(t *testing.T) {
	tb := newTestbed(t)
	c := tb.config(lambdaenv.Worker)
	c.RepositoryPrefix, c.RepositoryKMSKey = testRepoPrefix, "arn:aws:kms:eu-west-1:1:key/k"
	c.SpoolDir = t.TempDir()
	if _, err := NewWorker(c, tb.runtime(), tb.deps()); !errors.Is(err, ErrConfig) {
		t.Fatalf("worker without a repository store: %v, want ErrConfig", err)
	}
}
