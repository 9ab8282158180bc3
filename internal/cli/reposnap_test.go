package cli

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// repoArgs are the repository flags of a test repository.
func repoArgs(t *testing.T, dir, pass string) []string {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pw, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--repo", dir, "--password-file", pw}
}

func snapshotOf(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, repo []string) map[string]any {
	t.Helper()
	args := append(append([]string{"backup", "create", "--json", "--include-storage"}, conn(e)...), repo...)
	r := cliRun(ctx, t, args...)
	if r.code != 0 {
		t.Fatalf("backup create --repo failed:\n%s", r)
	}
	return r.jsonDoc(t)
}

// Snapshots of a deployment: the second reads only the object that
// changed; restoring it reproduces the source; the restore took an undo
// snapshot, and restoring that brings the target's earlier state back.
func TestSnapshotBackupRestoreAndUndo(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	repo := repoArgs(t, filepath.Join(t.TempDir(), "repo"), "correct horse")

	first := snapshotOf(ctx, t, src.emu, repo)
	objects := first["objects"].(float64)
	if objects == 0 || first["fetched"] != objects || first["reused"] != 0.0 {
		t.Fatalf("first snapshot: %v", first)
	}
	if err := src.emu.AddObjects(ctx, edgebasetest.Object{Key: "avatars/files/002.dat", ContentType: "text/html", Data: []byte("changed")}); err != nil {
		t.Fatal(err)
	}
	want := fingerprint(ctx, t, src.emu, src.demo.Instances...)
	src.emu.ResetRequests()
	second := snapshotOf(ctx, t, src.emu, repo)
	if second["fetched"] != 1.0 || second["reused"] != objects-1 || second["parent"] != first["snapshot"] {
		t.Fatalf("second snapshot: %v (first %v)", second, first["snapshot"])
	}
	if gets := src.emu.RequestsTo("dump-storage:get"); len(gets) != 1 || gets[0].Fields["key"] != "avatars/files/002.dat" {
		t.Errorf("storage gets %v, want only the changed object", gets)
	}

	// Other data in the target, in instances the snapshot also holds: a
	// dynamic instance wiped by a restore cannot be created again while
	// the server keeps it warm (the peer's in-memory schema flag).
	dst := newEmulator(t, edgebasetest.Options{ServiceKey: "target-key"})
	for _, err := range []error{
		dst.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"id": "other", "title": "other deployment"}),
		dst.AddRows(ctx, "shared", "posts", edgebasetest.Row{"id": "post-999", "title": "other"}),
		dst.AddObjects(ctx, edgebasetest.Object{Key: "uploads/other.txt", ContentType: "text/plain", Data: []byte("other")}),
		dst.AddUsers(ctx, edgebasetest.User{Email: "other@example.test", DisplayName: "Other"}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	before := fingerprint(ctx, t, dst, src.demo.Instances...)
	args := append(append([]string{"backup", "restore", "--from-snapshot", "latest", "--yes", "--json"}, conn(dst)...), repo...)
	r := cliRun(ctx, t, args...)
	if r.code != 0 {
		t.Fatalf("restore --from-snapshot failed:\n%s", r)
	}
	doc := r.jsonDoc(t)
	undo, _ := doc["undoSnapshot"].(string)
	if undo == "" {
		t.Fatalf("no undo snapshot named: %v", doc)
	}
	if d := edgebasetest.Diff(want, fingerprint(ctx, t, dst, src.demo.Instances...)); d != "" {
		t.Errorf("target differs from the snapshot's source:\n%s", d)
	}

	args = append(append([]string{"backup", "restore", "--from-snapshot", undo[:12], "--yes", "--no-undo-snapshot", "--json"}, conn(dst)...), repo...)
	if r := cliRun(ctx, t, args...); r.code != 0 {
		t.Fatalf("restoring the undo snapshot failed:\n%s", r)
	}
	if d := edgebasetest.Diff(before, fingerprint(ctx, t, dst, src.demo.Instances...)); d != "" {
		t.Errorf("the undo snapshot did not bring the target back:\n%s", d)
	}
}

// A wrong passphrase fails before anything is read or written.
func TestSnapshotWrongPassphrase(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	dir := filepath.Join(t.TempDir(), "repo")
	snapshotOf(ctx, t, src.emu, repoArgs(t, dir, "right"))
	src.emu.ResetRequests()
	args := append(append([]string{"backup", "create", "--json"}, conn(src.emu)...), repoArgs(t, dir, "wrong")...)
	r := cliRun(ctx, t, args...)
	if r.code == 0 || r.jsonDoc(t)["code"] != "repository_wrong_password" {
		t.Fatalf("want repository_wrong_password:\n%s", r)
	}
	if n := len(src.emu.Requests()); n != 0 {
		t.Errorf("%d requests to the deployment after a wrong passphrase", n)
	}
	dst := newEmulator(t, edgebasetest.Options{})
	args = append(append([]string{"backup", "restore", "--from-snapshot", "latest", "--yes", "--json"}, conn(dst)...), repoArgs(t, dir, "wrong")...)
	if r := cliRun(ctx, t, args...); r.code == 0 || len(dst.Requests()) != 0 {
		t.Fatalf("restore with a wrong passphrase: code %d, %d requests to the target\n%s", r.code, len(dst.Requests()), r)
	}
}

// A flipped byte in a pack fails a restore from the snapshot before any
// write to the target, with the repository named as the cause.
func TestSnapshotRestoreRefusesACorruptPack(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	dir := filepath.Join(t.TempDir(), "repo")
	repo := repoArgs(t, dir, "pw")
	snap := snapshotOf(ctx, t, src.emu, repo)["snapshot"].(string) // not "latest": an undo snapshot may be newer
	packs, err := filepath.Glob(filepath.Join(dir, "data", "*", "*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no packs: %v", err)
	}
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x40
	if err := os.WriteFile(packs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	// With an undo snapshot, it is taken while the snapshot is validated:
	// the validation failing stops it, and still nothing is written.
	for _, undo := range [][]string{{"--no-undo-snapshot"}, nil} {
		dst := newEmulator(t, edgebasetest.Options{})
		args := append(append(append([]string{"backup", "restore", "--from-snapshot", snap, "--yes", "--json"}, undo...), conn(dst)...), repo...)
		r := cliRun(ctx, t, args...)
		if r.code == 0 {
			t.Fatalf("a restore %v from a corrupt repository succeeded:\n%s", undo, r)
		}
		if msg, _ := r.jsonDoc(t)["message"].(string); !strings.Contains(msg, "corrupt") {
			t.Errorf("%v: the error does not say the repository is corrupt: %s", undo, msg)
		}
		for _, q := range dst.Requests() {
			if strings.HasPrefix(q.Endpoint, "restore") || strings.HasPrefix(q.Endpoint, "wipe") {
				t.Errorf("%v: the target got a write: %s %s", undo, q.Endpoint, q.Path)
			}
		}
	}
}

// A rollback into the source itself sends restore-do only for the DO that
// changed since the snapshot: the undo snapshot shows the others already
// hold the snapshot's content. --full-restore sends every one again.
func TestSnapshotRollbackSkipsUnchangedDOs(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	repo := repoArgs(t, filepath.Join(t.TempDir(), "repo"), "correct horse")
	want := fingerprint(ctx, t, src.emu, src.demo.Instances...)
	snap := snapshotOf(ctx, t, src.emu, repo)["snapshot"].(string)
	if err := src.emu.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"id": "task-new", "title": "after the snapshot"}); err != nil {
		t.Fatal(err)
	}

	restoreDOs := func(extra ...string) (map[string]any, []string) {
		t.Helper()
		src.emu.ResetRequests()
		// Not "latest": each restore's undo snapshot is newer.
		args := append(append(append([]string{"backup", "restore", "--from-snapshot", snap, "--yes", "--json"}, extra...), conn(src.emu)...), repo...)
		r := cliRun(ctx, t, args...)
		if r.code != 0 {
			t.Fatalf("restore %v failed:\n%s", extra, r)
		}
		var names []string
		for _, q := range src.emu.RequestsTo("restore-do") {
			names = append(names, q.Fields["doName"])
		}
		if d := edgebasetest.Diff(want, fingerprint(ctx, t, src.emu, src.demo.Instances...)); d != "" {
			t.Errorf("restore %v: the source differs from its snapshot:\n%s", extra, d)
		}
		return r.jsonDoc(t), names
	}
	// Nothing but the DO changed: the D1 databases and the data namespace
	// are not restored either (nor the users resync that follows AUTH_DB).
	others := []string{"restore-control-d1", "restore-d1", "restore-data", "resync-users-public"}
	doc, names := restoreDOs()
	dos := doc["dos"].(float64)
	if dos < 2 || len(names) != 1 || names[0] != "workspace:ws-1" || doc["unchangedDOs"] != dos-1 {
		t.Fatalf("rollback: restore-do sent for %v, report %v (want only workspace:ws-1, %v-1 unchanged)", names, doc, dos)
	}
	for _, ep := range others {
		if n := len(src.emu.RequestsTo(ep)); n != 0 {
			t.Errorf("rollback: %d %s requests for unchanged units", n, ep)
		}
	}
	if units := slices.Sorted(slices.Values(stringsIn(doc["unchangedUnits"]))); !slices.Equal(units, []string{"auth.d1", "control.d1", "dataNamespaces:shared"}) {
		t.Errorf("rollback: unchanged units %v", units)
	}
	if err := src.emu.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"id": "task-new", "title": "after the snapshot"}); err != nil {
		t.Fatal(err)
	}
	doc, names = restoreDOs("--full-restore")
	if float64(len(names)) != dos || doc["unchangedDOs"] != 0.0 {
		t.Fatalf("--full-restore: restore-do sent for %v, report %v (want all %v)", names, doc, dos)
	}
	for _, ep := range others {
		if len(src.emu.RequestsTo(ep)) == 0 {
			t.Errorf("--full-restore: no %s request", ep)
		}
	}
}
