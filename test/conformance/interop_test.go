package conformance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/peer"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestOfficialInterop is the interop matrix with the official CLI on the
// static profile (the official create aborts on instance blocks):
//
//	official create (.json, .tar.gz)  → edgevault verify + restore
//	edgevault create (.json, .tar.gz) → official restore
//	edgevault create (.json, .tar.gz) → edgevault restore
//
// plus the official CLI's own sample archives → edgevault restore, and
// storage through R2 direct both ways (r2DirectInterop):
//
//	edgevault create (.tar.gz, storage through R2 direct) → official restore
//	edgevault create (.tar.gz) → edgevault restore, storage through R2 direct
//
// The
// target is dirtied before every cell (extra user, row, ledger entry and
// object), so each restore has to replace data, not find it in place.
// Expected fingerprints per direction:
//   - a .tar.gz restore: the source's, except that objects restored from an
//     official archive are application/octet-stream (the official create
//     records that type for every object); the official restore of an
//     edgevault archive keeps the real types (it sends the archive's);
//   - a .json restore: the source's users and tables, and R2 exactly as it
//     was before the restore (no storage in the archive: R2 untouched).
func TestOfficialInterop(t *testing.T) {
	requirePeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	srv := startServers(t, []string{"static-src", "static-dst"}, []peer.Profile{peer.ProfileStatic, peer.ProfileStatic})
	src, dst := srv[0], srv[1]

	src.seedBase(ctx, t, 5, 0, 10)
	src.seedValues(ctx, t)
	if err := src.uploadAll(ctx, portableObjects); err != nil {
		t.Fatal(err)
	}
	want := src.fingerprint(ctx, t, nil)
	nObjects := 10 + len(portableObjects)

	offJSON := src.officialCreate(ctx, t, false)
	offTGZ := src.officialCreate(ctx, t, true)
	evJSON := src.create(ctx, t, false, false)
	evTGZ := src.create(ctx, t, true, false)

	t.Run("official-create/edgevault-verify", func(t *testing.T) {
		for _, c := range []struct {
			file    string
			objects int64
		}{{offJSON, 0}, {offTGZ, int64(nObjects)}} {
			sum, _ := verify(ctx, t, c.file)["summary"].(map[string]any)
			// Official archives carry no per-object checksums, so verify
			// can only match tar members against storage.objects.
			if number(sum, "users") != 5 || number(sum, "objects") != c.objects || number(sum, "members") != c.objects {
				t.Errorf("%s: verify summary users=%d objects=%d members=%d, want 5, %d, %d", filepath.Base(c.file),
					number(sum, "users"), number(sum, "objects"), number(sum, "members"), c.objects, c.objects)
			}
		}
	})

	// restoreTGZ and restoreJSON run one cell: dirty the target, restore,
	// compare with the expectation.
	restoreTGZ := func(t *testing.T, tag string, expect *edgebasetest.Fingerprint, restore func(t *testing.T)) {
		dst.dirty(ctx, t, tag, false)
		restore(t)
		assertSameFP(t, "target after restore", expect, dst.fingerprint(ctx, t, nil))
	}
	restoreJSON := func(t *testing.T, tag string, restore func(t *testing.T)) {
		dst.dirty(ctx, t, tag, false)
		before := dst.fingerprint(ctx, t, nil)
		restore(t)
		assertSameFP(t, "target after restore (storage must be untouched)", compose(want, before), dst.fingerprint(ctx, t, nil))
	}

	t.Run("official-create-tgz/edgevault-restore", func(t *testing.T) {
		restoreTGZ(t, "c1", octetStream(want), func(t *testing.T) { dst.restore(ctx, t, offTGZ, false) })
	})
	t.Run("official-create-json/edgevault-restore", func(t *testing.T) {
		restoreJSON(t, "c2", func(t *testing.T) { dst.restore(ctx, t, offJSON, false) })
	})
	t.Run("edgevault-create-tgz/official-restore", func(t *testing.T) {
		restoreTGZ(t, "c3", want, func(t *testing.T) { dst.officialRestore(ctx, t, evTGZ) })
	})
	t.Run("edgevault-create-json/official-restore", func(t *testing.T) {
		restoreJSON(t, "c4", func(t *testing.T) { dst.officialRestore(ctx, t, evJSON) })
	})
	t.Run("edgevault-create-tgz/edgevault-restore", func(t *testing.T) {
		restoreTGZ(t, "c5", want, func(t *testing.T) { dst.restore(ctx, t, evTGZ, false) })
	})
	t.Run("edgevault-create-json/edgevault-restore", func(t *testing.T) {
		restoreJSON(t, "c6", func(t *testing.T) { dst.restore(ctx, t, evJSON, false) })
	})
	t.Run("official-sample-archives/edgevault-restore", func(t *testing.T) {
		dir, err := peer.Dir()
		if err != nil {
			t.Fatal(err)
		}
		wantLines, err := os.ReadFile(filepath.Join(dir, "samples", "static-small.fingerprint.txt"))
		if err != nil {
			t.Skipf("no official samples: %v", err)
		}
		sample := &edgebasetest.Fingerprint{Lines: strings.Split(strings.TrimSpace(string(wantLines)), "\n")}
		// The sample's fingerprint is fingerprint.sh's: users, tables and a
		// line per bucket, no per-object lines.
		summary := func(fp *edgebasetest.Fingerprint) *edgebasetest.Fingerprint {
			out := &edgebasetest.Fingerprint{}
			for _, l := range fp.Lines {
				if !strings.HasPrefix(l, "object ") {
					out.Lines = append(out.Lines, l)
				}
			}
			return out
		}
		for _, name := range []string{"edgebase-backup-static-small.tar.gz", "edgebase-backup-static-small.json"} {
			// The samples directory is read-only and a restore unpacks next
			// to the archive: work on a copy.
			b, err := os.ReadFile(filepath.Join(dir, "samples", name))
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
			dst.dirty(ctx, t, "sample", false)
			before := dst.fingerprint(ctx, t, nil)
			dst.restore(ctx, t, file, false)
			expect := sample
			if strings.HasSuffix(name, ".json") {
				expect = compose(sample, summary(before))
			}
			assertSameFP(t, name+" restored, against the sample's fingerprint", expect, summary(dst.fingerprint(ctx, t, nil)))
		}
	})
	r2DirectInterop(ctx, t, src, dst, want)
}
