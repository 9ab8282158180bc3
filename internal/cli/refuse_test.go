package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// sourceArchives is a SeedDemo emulator backed up once as .json and once
// as .tar.gz (with storage), each with its manifest. Tests only read it:
// they restore from the archives and fingerprint the source.
type sourceArchives struct {
	src           source
	json, tarball string
}

// shared is the one sourceArchives of the package, built on first use and
// removed by TestMain: building it for every test would cost a seeded
// emulator and two backups each.
var shared struct {
	once sync.Once
	sa   sourceArchives
	err  error
	dir  string
}

func newSourceArchives(ctx context.Context, t *testing.T) sourceArchives {
	t.Helper()
	shared.once.Do(func() {
		shared.err = errors.New("building the shared source archives failed in another test")
		dir, err := os.MkdirTemp("", "edgevault-cli-test-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		emu, err := edgebasetest.New(edgebasetest.Options{StateDir: filepath.Join(dir, "state")})
		if err != nil {
			shared.err = err
			return
		}
		shared.sa.src.emu = emu
		if shared.sa.src.demo, err = emu.SeedDemo(ctx); err != nil {
			shared.err = err
			return
		}
		out := filepath.Join(dir, "backups")
		shared.sa.json = backupInto(ctx, t, emu, out)
		shared.sa.tarball = backupInto(ctx, t, emu, out, "--include-storage")
		shared.err = nil
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.sa
}

func TestMain(m *testing.M) {
	code := m.Run()
	if e := shared.sa.src.emu; e != nil {
		if err := e.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the shared emulator:", err)
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tarMember is one entry of a hand-made archive.
type tarMember struct {
	hdr  tar.Header
	data []byte
}

func makeTarGz(t *testing.T, members ...tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, m := range members {
		h := m.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(m.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// eachMember calls fn with every member of a .tar.gz and its bytes, in
// order, until fn returns false.
func eachMember(t *testing.T, tarball string, fn func(h *tar.Header, data []byte) bool) {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !fn(h, data) {
			return
		}
	}
}

// repack rewrites a .tar.gz member by member: edit may change a member's
// bytes or drop it (nil keeps everything); extra members are appended.
func repack(t *testing.T, tarball string, edit func(name string, data []byte) ([]byte, bool), extra ...tarMember) []byte {
	t.Helper()
	var members []tarMember
	eachMember(t, tarball, func(h *tar.Header, data []byte) bool {
		keep := true
		if edit != nil {
			data, keep = edit(h.Name, data)
		}
		if keep {
			members = append(members, tarMember{hdr: tar.Header{Name: h.Name, Typeflag: h.Typeflag, Mode: h.Mode}, data: data})
		}
		return true
	})
	return makeTarGz(t, append(members, extra...)...)
}

// backupJSONOf extracts backup.json from a .tar.gz.
func backupJSONOf(t *testing.T, tarball string) []byte {
	t.Helper()
	var doc []byte
	eachMember(t, tarball, func(h *tar.Header, data []byte) bool {
		if h.Name == "backup.json" {
			doc = data
		}
		return doc == nil
	})
	if doc == nil {
		t.Fatalf("backup.json not found in %s", tarball)
	}
	return doc
}

var versionRE = regexp.MustCompile(`"version":\s*"1\.1"`)

// TestRestoreRefusesBadArchives: every malformed archive is refused with a
// clear message before the target sees a single write (spec 9.22-9.27).
func TestRestoreRefusesBadArchives(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	dst := newEmulator(t, edgebasetest.Options{})
	junkTarget(ctx, t, dst)
	before := fingerprint(ctx, t, dst, "workspace:ws-1")
	dir := t.TempDir()

	good := readFile(t, sa.json)
	if !versionRE.Match(good) {
		t.Fatalf("no version field in %.200s", good)
	}
	if !bytes.Contains(good, []byte(`"doName":"workspace:ws-2"`)) {
		t.Fatalf("test data: no doName workspace:ws-2 in %.300s", good)
	}
	withStorage := backupJSONOf(t, sa.tarball)
	tgz := readFile(t, sa.tarball)
	// Member-level cases rewrite a small archive: the refusal comes only
	// after every member was read, and 240 objects make that slow.
	small := newEmulator(t, edgebasetest.Options{})
	if err := small.AddObjects(ctx,
		edgebasetest.Object{Key: "uploads/one.bin", Data: []byte{0x7f}},
		edgebasetest.Object{Key: "uploads/bytes.bin", ContentType: "application/octet-stream", Data: []byte("0123456789")},
		edgebasetest.Object{Key: "avatars/x.png", ContentType: "image/png", Data: []byte("png")}); err != nil {
		t.Fatal(err)
	}
	smallTar := backupTo(ctx, t, small, "--include-storage")
	flipped := bytes.Replace(good, []byte(`"Post 7"`), []byte(`"Post 8"`), 1)
	if bytes.Equal(flipped, good) {
		t.Fatal("test data: no \"Post 7\" in the archive")
	}

	cases := []struct {
		name    string
		file    string   // archive to restore
		extra   []string // flags
		message string   // part of the refusal
	}{
		{name: "corrupt JSON", file: writeFile(t, dir, "corrupt.json", []byte(`{"version":"1.1","timestamp":`)), message: "truncated"},
		{name: "malformed JSON", file: writeFile(t, dir, "malformed.json", []byte(`{"version":"1.1" "timestamp":"x"}`)), message: "archive: "},
		{name: "not an object", file: writeFile(t, dir, "array.json", []byte(`[]`)), message: "Backup file must be a JSON object."},
		{name: "truncated tar.gz", file: writeFile(t, dir, "truncated.tar.gz", tgz[:len(tgz)/2]), message: "truncated"},
		{name: "version 1.0", file: writeFile(t, dir, "v10.json", versionRE.ReplaceAll(good, []byte(`"version":"1.0"`))), message: "Unsupported backup version: 1.0"},
		{name: "numeric version", file: writeFile(t, dir, "v11num.json", versionRE.ReplaceAll(good, []byte(`"version":1.1`))), message: "Unsupported backup version"},
		{name: "path traversal member", message: "../x", file: writeFile(t, dir, "traversal.tar.gz", makeTarGz(t,
			tarMember{hdr: tar.Header{Name: "backup.json"}, data: withStorage},
			tarMember{hdr: tar.Header{Name: "../x"}, data: []byte("escape")}))},
		{name: "traversal under storage", message: "..", file: writeFile(t, dir, "traversal2.tar.gz", makeTarGz(t,
			tarMember{hdr: tar.Header{Name: "backup.json"}, data: withStorage},
			tarMember{hdr: tar.Header{Name: "storage/uploads/../../../x"}, data: []byte("escape")}))},
		{name: "symlink member", message: "link", file: writeFile(t, dir, "symlink.tar.gz", makeTarGz(t,
			tarMember{hdr: tar.Header{Name: "backup.json"}, data: withStorage},
			tarMember{hdr: tar.Header{Name: "storage/uploads/one.bin", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}))},
		{name: "absolute member", message: "/etc/x", file: writeFile(t, dir, "abs.tar.gz", makeTarGz(t,
			tarMember{hdr: tar.Header{Name: "backup.json"}, data: withStorage},
			tarMember{hdr: tar.Header{Name: "/etc/x"}, data: []byte("x")}))},
		{name: "no backup.json", message: "backup.json", file: writeFile(t, dir, "nojson.tar.gz", makeTarGz(t,
			tarMember{hdr: tar.Header{Name: "storage/uploads/one.bin"}, data: []byte{0x7f}}))},
		{name: "json with storage", file: writeFile(t, dir, "storage.json", withStorage), message: archiveNeedsTarGz},
		{name: "listed object missing", message: "storage objects missing from the archive", file: writeFile(t, dir, "missing.tar.gz", repack(t, smallTar, func(name string, data []byte) ([]byte, bool) {
			return data, name != "storage/uploads/one.bin"
		}))},
		{name: "unlisted member", message: "uploads/extra.bin", file: writeFile(t, dir, "extra.tar.gz", repack(t, smallTar, nil,
			tarMember{hdr: tar.Header{Name: "storage/uploads/extra.bin"}, data: []byte("not listed")}))},
		{name: "object bytes changed", message: "sha256", file: writeFile(t, dir, "changed.tar.gz", repack(t, smallTar, func(name string, data []byte) ([]byte, bool) {
			if name == "storage/uploads/bytes.bin" {
				data = append([]byte(nil), data...)
				data[7] ^= 1
			}
			return data, true
		}))},
		{name: "DO key differs from its doName", file: writeFile(t, dir, "renamed.json", bytes.Replace(good, []byte(`"doName":"workspace:ws-2"`), []byte(`"doName":"workspace:ws-9"`), 1)), message: `doName "workspace:ws-9" differs from its key "workspace:ws-2"`},
		{name: "manifest mismatch", file: writeManifested(t, dir, "flipped.json", sa.json, flipped), message: "manifest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst.ResetRequests()
			args := append([]string{"backup", "restore", "--from", tc.file, "--yes"}, conn(dst)...)
			r := cliRun(ctx, t, append(args, tc.extra...)...)
			if r.code == 0 {
				t.Fatalf("restore of a bad archive succeeded:\n%s", r)
			}
			if !strings.Contains(r.stderr, tc.message) {
				t.Errorf("refusal does not say %q:\n%s", tc.message, r)
			}
			if !strings.Contains(r.stderr, "nothing was written to the target") {
				t.Errorf("refusal does not say the target is untouched:\n%s", r)
			}
			assertUntouched(ctx, t, dst, nil)
		})
	}
	if d := edgebasetest.Diff(before, fingerprint(ctx, t, dst, "workspace:ws-1")); d != "" {
		t.Errorf("the target changed:\n%s", d)
	}
	// The archives' directory only ever gets our temporary work dirs, and
	// they are removed again.
	left, _ := filepath.Glob(filepath.Join(dir, ".edgevault-restore-*"))
	if len(left) > 0 {
		t.Errorf("work directories left behind: %v", left)
	}
}

const archiveNeedsTarGz = "Backup includes storage metadata but no extracted storage files were found"

// writeManifested writes data under name next to the manifest of the
// archive orig, so the manifest describes other bytes.
func writeManifested(t *testing.T, dir, name, orig string, data []byte) string {
	t.Helper()
	m, err := archive.ReadManifestFile(archive.ManifestName(orig))
	if err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, dir, name, data)
	m.Archive = name
	if err := archive.WriteManifestFile(archive.ManifestName(p), m); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRestoreJSONWithStorageSkipStorage: with --skip-storage a .json that
// lists objects restores everything else and leaves R2 alone (9.27).
func TestRestoreJSONWithStorageSkipStorage(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	file := writeFile(t, t.TempDir(), "edgebase-backup-2026-01-01T00-00-00.json", backupJSONOf(t, sa.tarball))
	dst := newEmulator(t, edgebasetest.Options{})
	junkTarget(ctx, t, dst)
	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes", "--skip-storage"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("restore --skip-storage failed:\n%s", r)
	}
	if n := len(dst.RequestsTo("restore-storage")); n != 0 {
		t.Errorf("%d restore-storage calls with --skip-storage; want none", n)
	}
	if b, _, err := dst.ObjectContent(ctx, "uploads/junk.txt"); err != nil || string(b) != "junk" {
		t.Errorf("R2 was touched: uploads/junk.txt = %q, %v", b, err)
	}
	want := fingerprint(ctx, t, sa.src.emu, sa.src.demo.Instances...)
	got := fingerprint(ctx, t, dst, sa.src.demo.Instances...)
	for i, l := range want.Lines {
		if strings.HasPrefix(l, "table ") || strings.HasPrefix(l, "users ") {
			if i >= len(got.Lines) || got.Lines[i] != l {
				t.Errorf("after restore %q is missing", l)
			}
		}
	}
}
