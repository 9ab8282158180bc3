package archive

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileName(t *testing.T) {
	start := time.Date(2026, 3, 7, 11, 0, 0, 999e6, time.FixedZone("CET", 3600))
	if got := FileName(start, false); got != "edgebase-backup-2026-03-07T10-00-00.json" {
		t.Errorf("json: %s", got)
	}
	if got := FileName(start, true); got != "edgebase-backup-2026-03-07T10-00-00.tar.gz" {
		t.Errorf("tar.gz: %s", got)
	}
	for name, want := range map[string]bool{
		"edgebase-backup-2026-03-07T10-00-00.json":          true,
		"/x/y/edgebase-backup-2026-03-07T10-00-00.tar.gz":   true,
		"edgebase-backup-2026-03-07T10-00-00.tgz":           true,
		"edgebase-backup-2026-03-07T10-00-00Z.json":         false,
		"edgebase-backup-2026-03-07T10-00-00.123.json":      false,
		"edgebase-backup-2026-03-07T10:00:00.json":          false,
		"edgebase-backup-2026-03-07T10-00-00.TAR.GZ":        false,
		"edgebase-backup-2026-03-07T10-00-00.json.manifest": false,
	} {
		if IsArchiveName(name) != want {
			t.Errorf("IsArchiveName(%q) != %v", name, want)
		}
	}
	if ManifestName("d/edgebase-backup-2026-03-07T10-00-00.tar.gz") != "d/edgebase-backup-2026-03-07T10-00-00.tar.gz.manifest.json" {
		t.Error("ManifestName")
	}
	if FormatTimestamp(time.Date(2026, 3, 7, 10, 0, 5, 0, time.UTC)) != "2026-03-07T10:00:05.000Z" {
		t.Error("FormatTimestamp")
	}
}

func TestDetectFormat(t *testing.T) {
	for name, want := range map[string]Format{
		"a.tar.gz": TarGz, "a.tgz": TarGz, "a.json": JSON, "a.TAR.GZ": JSON, "a.TGZ": JSON, "a": JSON, "a.gz": JSON,
	} {
		if got := DetectFormat(name); got != want {
			t.Errorf("%s: %v", name, got)
		}
	}
	var f Format
	if err := f.UnmarshalText([]byte("tar.gz")); err != nil || f != TarGz {
		t.Error("UnmarshalText")
	}
}

func TestCreateFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.json")
	f, err := CreateFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if _, err := CreateFile(p); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create: %v", err)
	}
}

func TestObjectPath(t *testing.T) {
	safe := []string{"a", "avatars/u1.jpg", "é/ü +%#?&=.txt", "a/.hidden", "a/..b", "a/b..", "._x", "x/" + strings.Repeat("s", 255)}
	for _, k := range safe {
		if name, esc := ObjectPath(k); esc || name != "storage/"+k {
			t.Errorf("%q: %q %v", k, name, esc)
		}
	}
	unsafe := []string{"", "/a", "a/", "a//b", "./a", "a/./b", "..", "../x", "a/../b", "a\x00b", `a\b`, "\xff",
		".edgevault-escaped", ".edgevault-escaped/x", "x/" + strings.Repeat("s", 256), strings.Repeat("%/.", 400)}
	names := map[string]string{}
	for _, k := range unsafe {
		name, esc := ObjectPath(k)
		if !esc || !strings.HasPrefix(name, "storage/.edgevault-escaped/") {
			t.Errorf("%q: %q %v", k, name, esc)
			continue
		}
		if prev, dup := names[name]; dup {
			t.Errorf("%q and %q map to %q", prev, k, name)
		}
		names[name] = k
		// Escaped names are safe relative paths with short segments.
		if _, err := cleanMemberName(name); err != nil {
			t.Errorf("%q: escaped name %q is unsafe: %v", k, name, err)
		}
		for seg := range strings.SplitSeq(name, "/") {
			if len(seg) > 255 {
				t.Errorf("%q: segment of %d bytes", k, len(seg))
			}
		}
		if k == "\xff" || k == "a\x00b" {
			continue // not JSON strings; no round trip needed
		}
		back, esc2, err := KeyFromPath(name)
		if err != nil || back != k || !esc2 {
			t.Errorf("%q: KeyFromPath(%q) = %q %v %v", k, name, back, esc2, err)
		}
	}
	// No escaped file is another escaped key's directory.
	a, _ := ObjectPath("/" + strings.Repeat("x", 199)) // 202 bytes encoded: two components
	b, _ := ObjectPath("/" + strings.Repeat("x", 197)) // exactly 200 bytes encoded
	if strings.Count(a, "/") != strings.Count(b, "/")+1 || path.Dir(a) == b || strings.HasPrefix(a, b+"/") {
		t.Errorf("%q collides with the directory of %q", b, a)
	}
	for _, bad := range []string{"storage/.edgevault-escaped/a", "storage/.edgevault-escaped/%2e=", "storage/.edgevault-escaped/abc=",
		"storage/.edgevault-escaped/%2", "storage/.edgevault-escaped", "backup.json"} {
		if _, _, err := KeyFromPath(bad); err == nil {
			t.Errorf("KeyFromPath(%q) accepted", bad)
		}
	}
}
