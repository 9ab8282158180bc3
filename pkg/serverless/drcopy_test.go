package serverless

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
)

// drcopy over directory stores (which cannot copy server-side: the
// archive streams through a hash into Create): event and reconcile
// payloads, repeated events, sources that do not match, objects in the
// way. The server-side copy runs against moto in test/e2e.
func TestDRCopyHandle(t *testing.T) {
	ctx := context.Background()
	src, _ := fs.New(t.TempDir())
	dst, _ := fs.New(t.TempDir())
	cfg := DefaultConfig(lambdaenv.DRCopy)
	cfg.Bucket, cfg.DRBucket = "backups-bucket", "dr-bucket"
	h, err := NewDRCopy(cfg, Runtime{Now: apiNow}, Deps{Store: src, DR: dst})
	if err != nil {
		t.Fatal(err)
	}
	put := func(name string, data []byte, corrupt bool) string {
		t.Helper()
		m := manifestOf(data, len(data)/3)
		m.Archive, m.Format = name, archive.TarGz
		var mb bytes.Buffer
		if err := archive.EncodeManifest(&mb, m); err != nil {
			t.Fatal(err)
		}
		if corrupt {
			data = append([]byte(nil), data...)
			data[len(data)/2] ^= 1
		}
		key := "backups/" + name
		if err := src.Put(ctx, key, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := src.Put(ctx, key+".manifest.json", &mb); err != nil {
			t.Fatal(err)
		}
		return key
	}
	event := func(key string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"Records":[{"eventSource":"aws:s3","s3":{"bucket":{"name":"backups-bucket"},"object":{"key":%q}}}]}`, key+".manifest.json"))
	}
	data := make([]byte, 300<<10)
	_, _ = rand.Read(data)
	a := put("edgebase-backup-2026-01-02T03-04-05.tar.gz", data, false)
	res, err := h.Handle(ctx, event(a))
	if err != nil || len(res.Copied) != 1 || res.Copied[0].Verified != "read-back" {
		t.Fatalf("copy: %+v %v", res, err)
	}
	rc, _ := dst.Get(ctx, a)
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("the copy differs")
	}
	if res, err := h.Handle(ctx, event(a)); err != nil || res.Copied[0].Verified != "already-copied" {
		t.Fatalf("repeated event: %+v %v", res, err)
	}

	b := put("edgebase-backup-2026-01-02T04-00-00.tar.gz", data, false)
	bad := put("edgebase-backup-2026-01-02T05-00-00.tar.gz", data, true)
	in := put("edgebase-backup-2026-01-02T06-00-00.tar.gz", data, false)
	if err := dst.Put(ctx, in, bytes.NewReader([]byte("someone else's object"))); err != nil {
		t.Fatal(err)
	}
	res, err = h.Handle(ctx, json.RawMessage(lambdaenv.ReconcileInput))
	rep := res.Reconcile
	if !errors.Is(err, ErrCopyMismatch) || rep == nil || *rep != (ReconcileReport{Archives: 4, AlreadyCopied: 1, Copied: 1, Failed: 2}) {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	if len(res.Copied) != 1 || res.Copied[0].Archive != b {
		t.Fatalf("reconcile copied %+v", res.Copied)
	}
	for _, k := range []string{bad, bad + ".manifest.json", in + ".manifest.json"} {
		if _, err := dst.Stat(ctx, k); !errors.Is(err, blob.ErrNotExist) {
			t.Fatalf("%s in the DR bucket (%v)", k, err)
		}
	}
	if rc, err := dst.Get(ctx, in); err == nil {
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != "someone else's object" {
			t.Fatal("an object in the way was replaced")
		}
	}
	for _, p := range []string{`[]`, `{}`, `{"Records":[]}`, `{"reconcile":false}`, `not json`} {
		if _, err := h.Handle(ctx, json.RawMessage(p)); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v", p, err)
		}
	}
}
