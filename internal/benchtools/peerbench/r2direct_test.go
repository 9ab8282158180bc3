package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/cli"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// The R2-direct row's wiring, without the peer: the stand-in holds
// seed-bench.sh's objects, the floor reads them all, and edgevault with
// the row's flags and environment backs them up from the stand-in while
// the database parts come from EdgeBase (an emulator here).
func TestR2DirectRowWiring(t *testing.T) {
	ctx := context.Background()
	const m = 30
	mirror, err := startR2Mirror()
	if err != nil {
		t.Fatal(err)
	}
	defer mirror.close()
	if err := mirror.fill(1, m); err != nil {
		t.Fatal(err)
	}
	var want int64
	for i := 1; i <= m; i++ {
		want += edgebasetest.BenchObject(i).Size
	}
	secs, n, total, err := mirror.floor(ctx, 20)
	if err != nil || n != m || total != want || secs <= 0 {
		t.Fatalf("floor: %d objects, %d bytes (want %d), %.3f s: %v", n, total, want, secs, err)
	}

	emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	flags, env := mirror.args()
	vals := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := append([]string{"--json", "backup", "create", "--url", emu.URL(), "--service-key", emu.ServiceKey(), "--state-dir", emu.StateDir(), "--output", out, "--include-storage"}, flags...)
	code := cli.Run(ctx, args, cli.Env{Getenv: func(k string) string { return vals[k] }, WorkDir: t.TempDir(), Stdout: &stdout, Stderr: &stderr})
	if code != 0 {
		t.Fatalf("edgevault-r2: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), `"objects": 30`) && !strings.Contains(stdout.String(), `"objects":30`) {
		t.Errorf("edgevault-r2 did not back up %d objects:\n%s", m, stdout.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, "edgebase-backup-*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("archives %v", files)
	}
	if n := len(emu.RequestsTo("dump-storage")); n != 0 {
		t.Errorf("%d dump-storage requests", n)
	}

	// The restore row: the same archive into another EdgeBase with storage
	// into an empty stand-in for its bucket, which then holds the source's
	// objects (sha256 and type).
	dstMirror, err := startR2Mirror()
	if err != nil {
		t.Fatal(err)
	}
	defer dstMirror.close()
	dst := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	dflags, _ := dstMirror.args()
	stdout.Reset()
	stderr.Reset()
	args = append([]string{"--json", "backup", "restore", "--from", files[0], "--yes", "--url", dst.URL(), "--service-key", dst.ServiceKey(),
		"--state-dir", dst.StateDir(), "--full-storage-restore"}, dflags...)
	code = cli.Run(ctx, args, cli.Env{Getenv: func(k string) string { return vals[k] }, WorkDir: t.TempDir(), Stdout: &stdout, Stderr: &stderr})
	if code != 0 {
		t.Fatalf("edgevault-r2 restore: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	wantObjs, err := mirror.objectLines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dstMirror.objectLines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(wantObjs) != m || strings.Join(got, "\n") != strings.Join(wantObjs, "\n") {
		t.Errorf("the target's stand-in holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantObjs, "\n"))
	}
	if n := len(dst.RequestsTo("restore-storage:put")) + len(dst.RequestsTo("restore-storage:wipe")); n != 0 {
		t.Errorf("%d storage requests to the target's Worker", n)
	}

	// The report renders the row.
	var md bytes.Buffer
	rows := []row{}
	for _, tool := range []string{"official", "edgevault", "edgevault-r2", "r2-floor"} {
		rows = append(rows, row{Suite: "peer", Scenario: "N=500 M=2000", Op: "create-storage", Tool: tool, Rep: 1, Wall: 3, RSSKiB: 20 << 10})
	}
	for _, tool := range []string{"official", "edgevault", "edgevault-r2"} {
		rows = append(rows, row{Suite: "peer", Scenario: "N=500 M=2000", Op: "restore", Tool: tool, Rep: 1, Wall: 4, RSSKiB: 20 << 10, Verified: "yes"})
	}
	writeMarkdown(&md, rows, nil, "")
	if !strings.Contains(md.String(), "## Storage through R2 direct") || !strings.Contains(md.String(), "| N=500 M=2000 |") {
		t.Errorf("no R2-direct table:\n%s", md.String())
	}
	if !strings.Contains(md.String(), "| scenario | official | edgevault (Worker) | edgevault-r2 | r2/official |") {
		t.Errorf("no R2-direct restore table:\n%s", md.String())
	}
}
