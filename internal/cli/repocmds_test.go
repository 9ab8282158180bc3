package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	s3blob "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/repository"
)

const repoPass = "repository test passphrase"

// testRepo is a repository in a directory, with a passphrase file.
type testRepo struct {
	dir, passFile string
	store         pipeline.BlobStore
	r             *repository.Repository
}

// newTestRepo creates a repository (cheap scrypt, small chunks and
// packs) the commands open.
func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	store, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	r, err := repository.Init(context.Background(), store, repoPass, repository.Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1,
		MinChunk: 16 << 10, MaxChunk: 64 << 10, PackSize: 64 << 10}) // small packs: prune has some to itself
	if err != nil {
		t.Fatal(err)
	}
	pf := writeFile(t, t.TempDir(), "pass", []byte(repoPass+"\n"))
	return &testRepo{dir: dir, passFile: pf, store: store, r: r}
}

// importArchive imports file as a snapshot taken at tm.
func (tr *testRepo) importArchive(t *testing.T, file, source string, tm time.Time) repository.ID {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, _, err := tr.r.Import(context.Background(), f, archive.DetectFormat(file), repository.Snapshot{Time: tm, SourceURL: source, Tags: []string{"imported"}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (tr *testRepo) args(args ...string) []string {
	return append(args, "--repo", tr.dir, "--password-file", tr.passFile)
}

func (tr *testRepo) keys(t *testing.T) []string {
	t.Helper()
	var keys []string
	if err := tr.store.List(context.Background(), "", func(i blob.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

// TestRepoSnapshotsAndExport: snapshots lists what was imported; backup
// export writes each snapshot back out byte-identical to the archive it
// came from, with a manifest backup verify accepts; a wrong -o suffix, an
// unknown snapshot and a wrong passphrase are refused with nothing written.
func TestRepoSnapshotsAndExport(t *testing.T) {
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	tr := newTestRepo(t)
	src := sa.src.emu.URL()
	t1 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	jsonID := tr.importArchive(t, sa.json, src, t1)
	tarID := tr.importArchive(t, sa.tarball, src, t1.Add(time.Hour))

	r := cliRun(ctx, t, tr.args("snapshots", "--json")...)
	if r.code != 0 {
		t.Fatalf("snapshots:\n%s", r)
	}
	snaps, _ := r.jsonDoc(t)["snapshots"].([]any)
	if len(snaps) != 2 {
		t.Fatalf("snapshots listed %d, want 2:\n%s", len(snaps), r)
	}
	last := snaps[1].(map[string]any)
	if last["id"] != tarID.String() || last["short"] != tarID.String()[:8] || last["sourceURL"] != src ||
		last["objects"] != float64(sa.src.demo.Objects) || last["units"].(float64) == 0 || last["verified"] != false {
		t.Fatalf("newest snapshot listed as %v", last)
	}
	if h := cliRun(ctx, t, tr.args("snapshots")...); h.code != 0 || !strings.Contains(h.stdout, tarID.String()[:8]) || !strings.Contains(h.stdout, "2 snapshots") {
		t.Fatalf("snapshots (text):\n%s", h)
	} else {
		t.Logf("snapshots:\n%s", h.stdout)
	}

	for _, c := range []struct {
		ref  string
		id   repository.ID
		orig string
	}{{"latest", tarID, sa.tarball}, {jsonID.String()[:10], jsonID, sa.json}} {
		out := filepath.Join(t.TempDir(), "exports")
		e := cliRun(ctx, t, tr.args("backup", "export", c.ref, "-o", out+"/", "--json")...)
		if e.code != 0 {
			t.Fatalf("export %s:\n%s", c.ref, e)
		}
		doc := e.jsonDoc(t)
		file, _ := doc["file"].(string)
		if filepath.Base(file) != filepath.Base(c.orig) || doc["snapshot"] != c.id.String() {
			t.Fatalf("export %s wrote %v; want %s", c.ref, doc, filepath.Base(c.orig))
		}
		if !bytes.Equal(readFile(t, file), readFile(t, c.orig)) {
			t.Errorf("the export of %s is not byte-identical to %s", c.ref, c.orig)
		}
		v := cliRun(ctx, t, "backup", "verify", "--json", file)
		if v.code != 0 {
			t.Fatalf("verify of the export:\n%s", v)
		}
		if sum := v.jsonDoc(t)["summary"].(map[string]any); sum["manifest"] != "ok" {
			t.Errorf("verify of the export: manifest %v", sum["manifest"])
		}
		m, err := archive.ReadManifestFile(archive.ManifestName(file))
		if err != nil || m.SourceURL != src || m.Archive != filepath.Base(file) {
			t.Errorf("manifest of the export: %+v, %v", m, err)
		}
		if left, _ := filepath.Glob(filepath.Join(out, ".edgevault-export-*")); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	}

	// Refusals: nothing under the requested name.
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code string
		says string
	}{
		{[]string{"backup", "export", tarID.String(), "-o", filepath.Join(dir, "x.json")}, "invalid_arguments", "exports as a .tar.gz"},
		{[]string{"backup", "export", jsonID.String(), "-o", filepath.Join(dir, "x.tar.gz")}, "invalid_arguments", "exports as a .json"},
		{[]string{"backup", "export", jsonID.String(), "-o", filepath.Join(dir, "x.zip")}, "invalid_arguments", "name a .json or .tar.gz"},
		{[]string{"backup", "export", "ffff", "-o", dir}, "snapshot_not_found", "0 match"},
	} {
		e := cliRun(ctx, t, tr.args(append(c.args, "--json")...)...)
		doc := e.jsonDoc(t)
		if e.code == 0 || doc["code"] != c.code || !strings.Contains(doc["message"].(string), c.says) {
			t.Errorf("%v: want %s saying %q:\n%s", c.args, c.code, c.says, e)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused exports left %d files", len(entries))
	}

	before := tr.keys(t)
	wrong := writeFile(t, t.TempDir(), "wrong", []byte("not it\n"))
	for _, args := range [][]string{{"snapshots"}, {"forget", "--keep-last", "1", "--apply"}, {"prune", "--grace", "0s"}, {"backup", "verify", "--read-data"}} {
		e := cliRun(ctx, t, append(args, "--repo", tr.dir, "--password-file", wrong, "--json")...)
		if doc := e.jsonDoc(t); e.code == 0 || doc["code"] != "repository_wrong_password" {
			t.Errorf("%v with a wrong passphrase:\n%s", args, e)
		}
	}
	if after := tr.keys(t); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("commands with a wrong passphrase changed the repository")
	}
}

// TestRepoVerifyForgetPrune: verify --read-data records the snapshots as
// verified; forget is a dry run until --apply and keeps the newest
// verified snapshot whatever the policy; prune frees what only the
// forgotten snapshots used; a flipped byte fails verify --read-data with
// the problem listed.
func TestRepoVerifyForgetPrune(t *testing.T) {
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	tr := newTestRepo(t)
	src := sa.src.emu.URL()
	t1 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	ids := []repository.ID{
		tr.importArchive(t, sa.tarball, src, t1),
		tr.importArchive(t, sa.json, src, t1.Add(24*time.Hour)),
		tr.importArchive(t, sa.json, src, t1.Add(48*time.Hour)),
	}
	v := cliRun(ctx, t, tr.args("backup", "verify", "--read-data", "--json")...)
	if v.code != 0 {
		t.Fatalf("verify --repo --read-data:\n%s", v)
	}
	rep := v.jsonDoc(t)["report"].(map[string]any)
	if ver, _ := rep["verified"].([]any); len(ver) != 3 || rep["packsRead"] != rep["indexedPacks"] {
		t.Fatalf("verify report %v; want every pack read and 3 snapshots verified", rep)
	}
	ids = append(ids, tr.importArchive(t, sa.json, src, t1.Add(72*time.Hour))) // after the check: not verified

	if e := cliRun(ctx, t, tr.args("forget", "--json")...); e.code == 0 || !strings.Contains(e.stdout, "needs a policy") {
		t.Errorf("forget without a policy:\n%s", e)
	}
	dry := cliRun(ctx, t, tr.args("forget", "--keep-last", "1", "--json")...)
	if dry.code != 0 {
		t.Fatalf("forget (dry run):\n%s", dry)
	}
	doc := dry.jsonDoc(t)
	keep, _ := doc["keep"].([]any)
	remove, _ := doc["remove"].([]any)
	if doc["dryRun"] != true || len(keep) != 2 || len(remove) != 2 {
		t.Fatalf("forget dry run: %v", doc)
	}
	if k := keep[1].(map[string]any); k["id"] != ids[2].String() || !strings.Contains(strings.Join(stringsIn(k["reasons"]), ","), repository.ReasonVerified) {
		t.Fatalf("the newest verified snapshot is kept as %v", k)
	}
	if snaps, _ := tr.r.ListSnapshots(ctx); len(snaps) != 4 {
		t.Fatalf("the dry run removed snapshots: %d left", len(snaps))
	}
	text := cliRun(ctx, t, tr.args("forget", "--keep-last", "1")...)
	if text.code != 0 || !strings.Contains(text.stdout, "Dry run") || !strings.Contains(text.stdout, "newest verified") {
		t.Fatalf("forget (text):\n%s", text)
	}
	t.Logf("forget --keep-last 1:\n%s", text.stdout)
	if a := cliRun(ctx, t, tr.args("forget", "--keep-within", "1d", "--apply", "--json")...); a.code != 0 || len(a.jsonDoc(t)["remove"].([]any)) != 2 {
		t.Fatalf("forget --apply:\n%s", a)
	}
	if snaps, _ := tr.r.ListSnapshots(ctx); len(snaps) != 2 {
		t.Fatalf("%d snapshots after forget --apply, want 2", len(snaps))
	}

	// The tarball's objects were only in the first snapshot: the first
	// prune marks their packs, the second (past a zero grace) deletes them.
	p1 := cliRun(ctx, t, tr.args("prune", "--grace", "0s", "--json")...)
	p2 := cliRun(ctx, t, tr.args("prune", "--grace", "0s", "--json")...)
	if p1.code != 0 || p2.code != 0 {
		t.Fatalf("prune:\n%s\n%s", p1, p2)
	}
	d1, d2 := p1.jsonDoc(t), p2.jsonDoc(t)
	if d1["marked"].(float64) == 0 || d2["deleted"].(float64) == 0 || d2["freed"].(float64) == 0 {
		t.Fatalf("prune reports %v then %v; want packs marked, then deleted", d1, d2)
	}
	pt := cliRun(ctx, t, tr.args("prune")...)
	if pt.code != 0 || !strings.Contains(pt.stdout, "packs deleted") {
		t.Fatalf("prune (text):\n%s", pt)
	}
	t.Logf("prune:\n%s", pt.stdout)
	if v := cliRun(ctx, t, tr.args("backup", "verify", "--read-data")...); v.code != 0 || !strings.Contains(v.stdout, "re-hashed: ok") {
		t.Fatalf("verify after prune:\n%s", v)
	} else {
		t.Logf("backup verify --repo --read-data:\n%s", v.stdout)
	}

	// A flipped byte in a pack: the structure check passes, read-data
	// fails and names the pack.
	packs, _ := filepath.Glob(filepath.Join(tr.dir, "data", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no packs")
	}
	b := readFile(t, packs[0])
	b[len(b)/3] ^= 1
	writeFile(t, filepath.Dir(packs[0]), filepath.Base(packs[0]), b)
	if s := cliRun(ctx, t, tr.args("backup", "verify", "--json")...); s.code != 0 {
		t.Fatalf("structure check of a flipped data byte:\n%s", s)
	}
	bad := cliRun(ctx, t, tr.args("backup", "verify", "--read-data", "--json")...)
	bdoc := bad.jsonDoc(t)
	errs, _ := bdoc["errors"].([]any)
	if bad.code == 0 || bdoc["code"] != "repository_check_failed" || len(errs) == 0 || !strings.Contains(bad.stdout, filepath.Base(packs[0])) {
		t.Fatalf("verify --read-data of a flipped byte:\n%s", bad)
	}
	if badText := cliRun(ctx, t, tr.args("backup", "verify", "--read-data-subset", "100%")...); badText.code == 0 || !strings.Contains(badText.stderr, "problem(s)") {
		t.Fatalf("verify --read-data-subset 100%% of a flipped byte:\n%s", badText)
	} else {
		t.Logf("verify of a flipped byte:\n%s", badText.stderr)
	}

	// An export that fails part-way leaves nothing behind.
	for _, p := range packs {
		b := readFile(t, p)
		for i := 1; i < 64; i++ { // every blob of the pack, whatever its layout
			b[len(b)*i/64] ^= 1
		}
		writeFile(t, filepath.Dir(p), filepath.Base(p), b)
	}
	out := t.TempDir()
	if e := cliRun(ctx, t, tr.args("backup", "export", "latest", "-o", out, "--json")...); e.code == 0 || e.jsonDoc(t)["code"] != "backup_export_failed" {
		t.Fatalf("export from corrupt packs:\n%s", e)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("a failed export left %d files", len(entries))
	}
}

func TestParseWithin(t *testing.T) {
	for in, want := range map[string]time.Duration{"36h": 36 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1w3d12h": (10*24 + 12) * time.Hour} {
		if got, err := parseWithin(in); err != nil || got != want {
			t.Errorf("parseWithin(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "3 days", "0h", "-1h"} {
		if _, err := parseWithin(in); err == nil {
			t.Errorf("parseWithin(%q) accepted", in)
		}
	}
}

// TestRepoCommandsS3: the commands work on an s3:// repository (moto).
func TestRepoCommandsS3(t *testing.T) {
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	env, bucket, client := s3Env(t)
	store, err := s3blob.New(client, bucket, "nightly/repo/", s3blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repository.Init(ctx, store, repoPass, repository.Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRepo{dir: "s3://" + bucket + "/nightly/repo", passFile: writeFile(t, t.TempDir(), "pass", []byte(repoPass)), store: store, r: r}
	id := tr.importArchive(t, sa.tarball, sa.src.emu.URL(), time.Now().UTC())

	run := func(args ...string) map[string]any {
		t.Helper()
		res := cliRunEnv(ctx, t, env, tr.args(append(args, "--json")...)...)
		if res.code != 0 {
			t.Fatalf("%v:\n%s", args, res)
		}
		return res.jsonDoc(t)
	}
	if snaps := run("snapshots")["snapshots"].([]any); len(snaps) != 1 || snaps[0].(map[string]any)["id"] != id.String() {
		t.Fatalf("snapshots on s3: %v", snaps)
	}
	if ver := run("backup", "verify", "--read-data")["report"].(map[string]any)["verified"].([]any); len(ver) != 1 {
		t.Fatalf("verify on s3: %v", ver)
	}
	file := run("backup", "export", "latest", "-o", t.TempDir())["file"].(string)
	if !bytes.Equal(readFile(t, file), readFile(t, sa.tarball)) {
		t.Error("the export from s3 is not byte-identical to the archive imported")
	}
	if d := run("forget", "--keep-last", "1", "--apply"); len(d["keep"].([]any)) != 1 {
		t.Fatalf("forget on s3: %v", d)
	}
	if d := run("prune"); d["deleted"] != float64(0) {
		t.Fatalf("prune on s3 deleted packs every snapshot needs: %v", d)
	}
}
