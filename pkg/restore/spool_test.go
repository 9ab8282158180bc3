package restore_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/restore"
)

// reorder rewrites a .tar.gz so that its storage members follow the
// listing for the first keep members and come in reverse order after
// that, like an archive whose members were written in another order.
func reorder(t *testing.T, src, dst string, keep int) (members int) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var doc []byte
	type member struct {
		key  string
		data []byte
	}
	var ms []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Name == "backup.json":
			doc = b
		case h.Typeflag == tar.TypeReg:
			key, _, err := archive.KeyFromPath(h.Name)
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, member{key, b})
		}
	}
	slices.Reverse(ms[keep:])
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w := archive.NewTarGzWriter(out, time.Unix(0, 0))
	if err := w.WriteBackupJSON(bytes.NewReader(doc), int64(len(doc))); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if _, err := w.AddObject(m.key, int64(len(m.data)), bytes.NewReader(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

// Members staged in spools while they follow the listing, one by one
// after the order breaks: every object arrives once, with its bytes and
// content type, whichever way an archive orders its members.
func TestSpooledAndUnorderedMembers(t *testing.T) {
	ctx := testContext(t)
	src := seeded(t)
	orig := backupOf(ctx, t, src)
	want := fingerprint(ctx, t, src)
	for _, keep := range []int{1 << 30, 70, 0} {
		name := fmt.Sprintf("members in order for the first %d", keep)
		path := orig
		if keep < 1<<30 {
			path = filepath.Join(t.TempDir(), "reordered.tar.gz")
			if n := reorder(t, orig, path, keep); n <= keep+2 {
				t.Fatalf("only %d members", n)
			}
		}
		dst := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
		r := newRestorer(t, dst, path, 25, restore.Concurrency{})
		if _, err := r.engine.Start(ctx, events.StartRequest{JobID: "restore", Kind: events.KindRestore, Options: events.Options{Archive: path}}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := r.run(ctx, "restore", 4); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := fingerprint(ctx, t, dst)
		var wl, gl []string
		for _, l := range want.Lines {
			if strings.HasPrefix(l, "object ") || strings.HasPrefix(l, "storage ") {
				wl = append(wl, l)
			}
		}
		for _, l := range got.Lines {
			if strings.HasPrefix(l, "object ") || strings.HasPrefix(l, "storage ") {
				gl = append(gl, l)
			}
		}
		if len(wl) == 0 || !slices.Equal(wl, gl) {
			t.Errorf("%s: objects differ:\n%s", name, edgebasetest.Diff(want, got))
		}
	}
}
