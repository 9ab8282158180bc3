package backup_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	pl "github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
)

// storageObjects reads storage.objects of an archive.
type storageObjects struct {
	archive.NopVisitor
	objs []archive.Object
}

func (s *storageObjects) StorageObject(_ context.Context, o archive.Object) error {
	s.objs = append(s.objs, o)
	return nil
}

// backupWithSpool runs one backup of emu with a small spool (objects over
// budget bytes are streamed straight into the member) and returns the
// finished job, its manifest and its storage.objects.
func backupWithSpool(ctx context.Context, t *testing.T, emu *edgebasetest.Emulator, budget int64) (*events.Job, archive.Manifest, []archive.Object) {
	t.Helper()
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	client := newClient(t, emu)
	q := mem.New(mem.Options{VisibilityTimeout: time.Hour})
	engine, err := edgevault.New(edgevault.Deps{Store: store, Staging: "staging/", Archives: "archives/", Tasks: q,
		Client: client, Enum: &discovery.Enumerator{Client: client, StateDir: emu.StateDir()}, Source: "docker", Now: fixedNow,
		Engine: pl.Options{MaxAttempts: 3, Backoff: pl.Backoff{Base: time.Millisecond}},
		Backup: edgevault.BackupOptions{Concurrency: 4, RangeKeys: 3, ComposeAbove: -1,
			Spool: backup.NewSpool(t.TempDir(), budget, 1<<10)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Start(ctx, events.StartRequest{JobID: "job-1", Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}}); err != nil {
		t.Fatal(err)
	}
	job, err := (&pl.Runner{Engine: engine, Queue: q, Depth: q.Len, Concurrency: 4}).Run(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	man, err := backup.ReadManifest(ctx, store, job.Archive)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := store.Get(ctx, job.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var v storageObjects
	if _, err := archive.Read(ctx, rc, archive.DetectFormat(job.Archive), &v); err != nil {
		t.Fatal(err)
	}
	return job, man, v.objs
}

func warningsWith(ws []string, s string) []string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w, s) {
			out = append(out, w)
		}
	}
	return out
}

// TestNewerServerObservations: against a 0.4+ server (Profile05) the
// backup detects masked types per object (spooled and streamed alike),
// records application/octet-stream for them, never the served type as a
// real one, counts them in the manifest and ends with one warning; the
// types a passive reply shows are kept; the redacted config snapshot is
// recorded. Against 0.2.8 holding grant markers, the markers are left out
// and counted.
func TestNewerServerObservations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := bytes.Repeat([]byte("<p>large</p>"), 2000) // over the spool budget: streamed
	objects := []edgebasetest.Object{
		{Key: "uploads/page.html", ContentType: "text/html; charset=utf-8", Data: []byte("<p>hi</p>")},
		{Key: "uploads/big.html", ContentType: "TEXT/HTML", Data: big},
		{Key: "uploads/logo.svg", ContentType: "image/svg+xml", Data: []byte("<svg/>")},
		{Key: "uploads/data.json", ContentType: "application/json", Data: []byte(`{"a":1}`)},
		{Key: "avatars/a.png", ContentType: "Image/PNG", Data: []byte("\x89PNG")},
		{Key: "avatars/notes.txt", ContentType: "text/plain; charset=UTF-8", Data: []byte("notes")},
	}
	t.Run("0.5", func(t *testing.T) {
		emu := edgebasetest.NewTest(t, edgebasetest.Options{Now: fixedNow, StateDir: t.TempDir(), Profile: edgebasetest.Profile05})
		if err := emu.AddObjects(ctx, objects...); err != nil {
			t.Fatal(err)
		}
		if _, err := emu.AddUploadGrants(ctx, 2); err != nil {
			t.Fatal(err)
		}
		job, man, objs := backupWithSpool(ctx, t, emu, 8<<10)
		want := map[string]string{
			"uploads/page.html": edgebase.DefaultContentType, "uploads/big.html": edgebase.DefaultContentType,
			"uploads/logo.svg": edgebase.DefaultContentType, "uploads/data.json": edgebase.DefaultContentType,
			"avatars/a.png": "image/png", "avatars/notes.txt": "text/plain",
		}
		if len(objs) != len(want) {
			t.Errorf("archive holds %d objects, want %d: %v", len(objs), len(want), objs)
		}
		for _, o := range objs {
			if w, ok := want[o.Key]; !ok || o.ContentType != w {
				t.Errorf("object %s recorded as %q, want %q", o.Key, o.ContentType, w)
			}
		}
		if man.Server == nil || *man.Server != (archive.ServerObservations{ContentTypesMasked: 4, ConfigRedacted: true}) {
			t.Errorf("manifest server observations %+v; want 4 masked, config redacted, no internal keys (the server hides them)", man.Server)
		}
		if ws := warningsWith(job.Warnings, "masked content type"); len(ws) != 1 || !strings.HasPrefix(ws[0], "4 storage objects") || !strings.Contains(ws[0], "S3 API") {
			t.Errorf("warnings %q; want exactly one naming 4 masked objects and R2's S3 API", job.Warnings)
		}
	})
	t.Run("0.2.8 holding grant markers", func(t *testing.T) {
		emu := edgebasetest.NewTest(t, edgebasetest.Options{Now: fixedNow, StateDir: t.TempDir()})
		if err := emu.AddObjects(ctx, objects...); err != nil {
			t.Fatal(err)
		}
		if _, err := emu.AddUploadGrants(ctx, 3); err != nil {
			t.Fatal(err)
		}
		job, man, objs := backupWithSpool(ctx, t, emu, 8<<10)
		if len(objs) != len(objects) {
			t.Errorf("archive holds %d objects, want %d", len(objs), len(objects))
		}
		for i, o := range objs {
			if edgebase.IsInternalKey(o.Key) {
				t.Errorf("internal key %s was backed up", o.Key)
			}
			for _, in := range objects {
				if in.Key == o.Key && o.ContentType != in.ContentType {
					t.Errorf("object %d %s recorded as %q, want the exact %q", i, o.Key, o.ContentType, in.ContentType)
				}
			}
		}
		if man.Server == nil || *man.Server != (archive.ServerObservations{InternalKeysSkipped: 3}) {
			t.Errorf("manifest server observations %+v; want 3 internal keys skipped, nothing masked or redacted", man.Server)
		}
		if ws := warningsWith(job.Warnings, "server-internal storage keys"); len(ws) != 1 || !strings.HasPrefix(ws[0], "3 ") {
			t.Errorf("warnings %q; want one notice about 3 internal keys", job.Warnings)
		}
		if ws := warningsWith(job.Warnings, "masked"); len(ws) != 0 {
			t.Errorf("a 0.2.8 backup warned about masked types: %q", ws)
		}
	})
}
