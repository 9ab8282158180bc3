package cli

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// junkTarget fills a target with data a restore must replace or remove:
// an orphan instance DO, altered rows of archived units, extra objects in
// both buckets and extra users.
func junkTarget(ctx context.Context, t *testing.T, e *edgebasetest.Emulator) {
	t.Helper()
	steps := []error{
		e.AddRows(ctx, "workspace:ws-junk", "tasks", edgebasetest.Row{"id": "junk-1", "title": "orphan"}),
		e.AddRows(ctx, "workspace:ws-junk-2", "tasks", edgebasetest.Row{"id": "junk-2", "title": "orphan 2"}),
		e.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"id": "ws-1-task-1", "title": "ALTERED"}, edgebasetest.Row{"id": "extra", "title": "extra"}),
		e.AddRows(ctx, "shared", "posts", edgebasetest.Row{"id": "post-001", "title": "ALTERED"}, edgebasetest.Row{"id": "post-999", "title": "extra"}),
		e.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"id": "e-01", "amount": 99.0, "memo": "ALTERED"}),
		e.AddObjects(ctx,
			edgebasetest.Object{Key: "uploads/junk.txt", ContentType: "text/plain", Data: []byte("junk")},
			edgebasetest.Object{Key: "avatars/files/002.dat", ContentType: "text/html", Data: []byte("altered bytes")},
		),
		e.AddUsers(ctx, edgebasetest.User{Email: "intruder@example.test", DisplayName: "Intruder"}),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTripAcrossEmulators(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	want := fingerprint(ctx, t, src.emu, src.demo.Instances...)

	file := backupTo(ctx, t, src.emu, "--include-storage")
	if !strings.HasSuffix(file, ".tar.gz") {
		t.Fatalf("with storage the archive is %s, want a .tar.gz", file)
	}
	if r := cliRun(ctx, t, "backup", "verify", file); r.code != 0 {
		t.Fatalf("verify failed:\n%s", r)
	}
	for _, f := range []string{file, file + ".manifest.json"} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v); want 0600", f, st.Mode(), err)
		}
	}

	t.Run("into a target holding other data", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{ServiceKey: "another-deployment-key"})
		junkTarget(ctx, t, dst)
		args := append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)
		r := cliRun(ctx, t, args...)
		if r.code != 0 {
			t.Fatalf("restore failed:\n%s", r)
		}
		doc := r.jsonDoc(t)
		if doc["status"] != "success" || doc["orphansWiped"] != float64(len(junkOrphans)) {
			t.Errorf("restore result %v; want success with %d orphans wiped", doc, len(junkOrphans))
		}
		got := fingerprint(ctx, t, dst, src.demo.Instances...)
		if d := edgebasetest.Diff(want, got); d != "" {
			t.Errorf("target differs from source after restore:\n%s", d)
		}
		for _, o := range junkOrphans {
			assertWiped(ctx, t, dst, o)
		}
		assertCallOrder(t, dst)
	})

	t.Run("into a never-used target", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{ServiceKey: "fresh-key"})
		args := append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)
		if r := cliRun(ctx, t, args...); r.code != 0 {
			t.Fatalf("restore failed:\n%s", r)
		}
		if d := edgebasetest.Diff(want, fingerprint(ctx, t, dst, src.demo.Instances...)); d != "" {
			t.Errorf("target differs from source after restore:\n%s", d)
		}
	})
}

// junkOrphans are the instance DOs junkTarget creates that no archive has.
var junkOrphans = []string{"workspace:ws-junk", "workspace:ws-junk-2"}

// callPhase orders the endpoints that write, as spec 9.28 lists them.
var callPhase = map[string]int{
	"restore-control-d1": 1, "restore-d1": 2, "wipe-do": 3, "restore-do": 4, "restore-data": 5,
	"restore-storage:wipe": 6, "restore-storage:put": 7, "resync-users-public": 8,
}

// assertCallOrder checks the target's request log: every write step starts
// only after the previous one (spec 9.28); the DO listing that finds the
// orphans happens before the first write; every orphan gets exactly one
// wipe-do of type database (9.29).
func assertCallOrder(t *testing.T, e *edgebasetest.Emulator) {
	t.Helper()
	last, lastEP := 0, ""
	firstWrite := 0
	seen := map[int]bool{}
	for _, r := range e.Requests() {
		p, ok := callPhase[r.Endpoint]
		if !ok {
			if r.Endpoint == "list-dos" && firstWrite > 0 {
				t.Errorf("list-dos (#%d) after the first write (#%d): orphans must be known before anything is written", r.Seq, firstWrite)
			}
			continue
		}
		if firstWrite == 0 {
			firstWrite = r.Seq
		}
		if p < last {
			t.Errorf("%s (#%d) after %s: out of the restore order", r.Endpoint, r.Seq, lastEP)
		}
		last, lastEP = p, r.Endpoint
		seen[p] = true
	}
	for ep, p := range callPhase {
		if !seen[p] {
			t.Errorf("no %s call", ep)
		}
	}
	wiped := map[string]int{}
	for _, r := range e.RequestsTo("wipe-do") {
		if r.Fields["type"] != "database" {
			t.Errorf("wipe-do of %s with type %q", r.Fields["doName"], r.Fields["type"])
		}
		wiped[r.Fields["doName"]]++
	}
	for _, o := range junkOrphans {
		if wiped[o] != 1 {
			t.Errorf("orphan %s got %d wipe-do calls; want exactly 1", o, wiped[o])
		}
		delete(wiped, o)
	}
	if len(wiped) > 0 {
		t.Errorf("wipe-do of DOs the archive has: %v", wiped)
	}
}

// assertWiped checks that the DO named name stores nothing any more.
func assertWiped(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, name string) {
	t.Helper()
	insts, err := e.DOInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		if in.HexID == e.DOID(name) && in.HasData {
			t.Errorf("DO %s still holds data after its orphan wipe", name)
		}
	}
}

// TestRoundTripAwkwardKeys: R2 keys that cannot be tar paths as they are
// (a trailing '/', '//', '.', '..', a key that is also a directory of
// another, case-only twins) survive backup and restore exactly, with
// their content types (spec 9.39, 9.40).
func TestRoundTripAwkwardKeys(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newEmulator(t, edgebasetest.Options{})
	keys := []string{"uploads/dir/", "uploads/a//b", "uploads/./dot", "uploads/x/../y", "uploads/a", "uploads/a/b", "uploads/A",
		"avatars//lead", "avatars/.edgevault-escaped/x", "avatars/%2F?#+ é"}
	for i, k := range keys {
		if err := src.AddObjects(ctx, edgebasetest.Object{Key: k, ContentType: "text/x-" + strconv.Itoa(i), Data: []byte("data of " + k)}); err != nil {
			t.Fatal(err)
		}
	}
	want := fingerprint(ctx, t, src)
	file := backupTo(ctx, t, src, "--include-storage")
	if r := cliRun(ctx, t, "backup", "verify", file); r.code != 0 {
		t.Fatalf("verify:\n%s", r)
	}
	dst := newEmulator(t, edgebasetest.Options{})
	if r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)...); r.code != 0 {
		t.Fatalf("restore failed:\n%s", r)
	}
	got := fingerprint(ctx, t, dst)
	if n := len(linesWith(got, "object ")); n != len(keys) {
		t.Errorf("%d objects after the restore, want %d", n, len(keys))
	}
	if d := edgebasetest.Diff(want, got); d != "" {
		t.Errorf("target differs from source:\n%s", d)
	}
}
