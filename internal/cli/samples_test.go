package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// samplesDir holds archives written by the official CLI against the peer,
// with the peer's fingerprint.sh output after seeding.
const samplesDir = "/work/shared/peer/samples"

// TestRestoreOfficialSamples: archives produced by the official CLI
// restore into the emulator (static profile) to the data the peer held:
// the users, table and storage lines of fingerprint.sh match. Ids and
// timestamps come from the archive, so they match too. The .json sample
// carries no storage, so only its users and table lines are comparable.
func TestRestoreOfficialSamples(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile(filepath.Join(samplesDir, "static-small.fingerprint.txt"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("official CLI samples missing under CI: %v", err)
		}
		t.Skipf("official CLI samples not available (%v); they come from the peer harness", err)
	}
	wantLines := strings.Split(strings.TrimSpace(string(want)), "\n")
	ctx := testContext(t)
	for _, tc := range []struct {
		file     string
		prefixes []string
	}{
		{"edgebase-backup-static-small.json", []string{"users ", "table "}},
		{"edgebase-backup-static-small.tar.gz", []string{"users ", "table ", "storage "}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			// The samples directory is read-only; a restore works next to
			// its archive.
			dir := t.TempDir()
			file := filepath.Join(dir, tc.file)
			copyFile(t, filepath.Join(samplesDir, tc.file), file)
			if r := cliRun(ctx, t, "backup", "verify", file); r.code != 0 {
				t.Errorf("verify of the official archive failed:\n%s", r)
			}
			cfg := edgebasetest.StaticConfig()
			dst := newEmulator(t, edgebasetest.Options{Config: &cfg})
			junkTarget := func() {
				if err := dst.AddRows(ctx, "shared", "posts", edgebasetest.Row{"title": "not in the archive"}); err != nil {
					t.Fatal(err)
				}
				if err := dst.AddObjects(ctx, edgebasetest.Object{Key: "uploads/f/1.txt", Data: []byte("other bytes")}); err != nil {
					t.Fatal(err)
				}
			}
			junkTarget()
			r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)...)
			if r.code != 0 {
				t.Fatalf("restore of the official archive failed:\n%s", r)
			}
			got := linesWith(fingerprint(ctx, t, dst), tc.prefixes...)
			sameLines(t, "fingerprint lines", linesWith(&edgebasetest.Fingerprint{Lines: wantLines}, tc.prefixes...), got)
		})
	}
}
