package archive

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type testObject struct {
	key  string
	data []byte
}

func testObjects() []testObject {
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	return []testObject{
		{"avatars/u1.jpg", data(1000)},
		{"uploads/é ü/+%#?&=.txt", []byte("unicode and URL-ish characters")},
		{"uploads/" + strings.Repeat("long-directory-name/", 12) + "file.bin", data(513)}, // > 255 bytes: PAX
		{"uploads/empty", nil},
		{"../escape", []byte("escaped 1")},
		{"/abs", []byte("escaped 2")},
		{"a//b", []byte("escaped 3")},
		{"dir/", []byte("escaped 4")},
		{`back\slash`, []byte("escaped 5")},
		{"big/one", data(300 << 10)},
	}
}

// writeArchive builds head + two storage members + trailer, the way the
// assembler concatenates parts written independently.
func writeArchive(t *testing.T, objs []testObject) ([]byte, []Entry) {
	t.Helper()
	var parts [2]bytes.Buffer
	var entries []Entry
	members := [2]*StorageMember{NewStorageMember(&parts[0], testTime), NewStorageMember(&parts[1], testTime)}
	for i, o := range objs {
		e, err := members[i%2].Add(o.key, int64(len(o.data)), bytes.NewReader(o.data))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	for _, m := range members {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var js bytes.Buffer
	jw, _ := NewJSONWriter(&js, Header{Timestamp: FormatTimestamp(testTime), Source: SourceDocker})
	jw.ControlD1(strings.NewReader(`{}`))
	jw.AuthD1(strings.NewReader(`{}`))
	for _, e := range entries {
		if err := jw.StorageObject(Object{Key: e.Key, Size: e.Size, ETag: "etag", ContentType: "application/octet-stream", SHA256: e.SHA256}); err != nil {
			t.Fatal(err)
		}
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteHeadMember(&out, bytes.NewReader(js.Bytes()), int64(js.Len()), testTime); err != nil {
		t.Fatal(err)
	}
	out.Write(parts[0].Bytes())
	out.Write(parts[1].Bytes())
	if err := WriteTrailerMember(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), entries
}

func TestMultiMemberArchiveRoundTrip(t *testing.T) {
	objs := testObjects()
	data, entries := writeArchive(t, objs)
	c, s := mustRead(t, data, TarGz)
	for i, o := range objs {
		if got, ok := c.members[o.key]; !ok || !bytes.Equal(got, o.data) {
			t.Errorf("%q: member bytes differ (%v)", o.key, ok)
		}
		sum := sha256.Sum256(o.data)
		if entries[i].SHA256 != hex.EncodeToString(sum[:]) || entries[i].Size != int64(len(o.data)) {
			t.Errorf("%q: entry %+v", o.key, entries[i])
		}
		name, escaped := ObjectPath(o.key)
		if m := c.mnames[o.key]; m.Name != name || m.Escaped != escaped || entries[i].Name != name || entries[i].Escaped != escaped {
			t.Errorf("%q: member %+v entry %+v", o.key, m, entries[i])
		}
	}
	if s.VerifiedObjects != int64(len(objs)) || s.EscapedKeys != 5 || s.Members != int64(len(objs)) {
		t.Errorf("summary %+v", s)
	}
	// Deterministic: the same input gives the same bytes.
	again, _ := writeArchive(t, objs)
	if !bytes.Equal(data, again) {
		t.Error("archive output is not deterministic")
	}
}

// The system tar (what the official restore runs) and Node's zlib read the
// multi-member archive and give the exact bytes.
func TestMultiMemberArchiveExternalReaders(t *testing.T) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tar not found")
		}
		t.Skip("tar not found")
	}
	objs := testObjects()
	data, _ := writeArchive(t, objs)
	dir := t.TempDir()
	archive := filepath.Join(dir, "edgebase-backup-2026-03-07T10-00-05.tar.gz")
	if err := os.WriteFile(archive, data, 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(tarBin, "-tzf", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tzf: %v\n%s", err, list)
	}
	names := strings.Split(strings.TrimSpace(string(list)), "\n")
	want := []string{"backup.json", "storage/"}
	for part := range 2 { // members alternate between the two parts
		for i := part; i < len(objs); i += 2 {
			n, _ := ObjectPath(objs[i].key)
			want = append(want, n)
		}
	}
	if !slices.Equal(names, want) {
		t.Fatalf("tar -tzf lists\n%q\nwant\n%q", names, want)
	}
	out := filepath.Join(dir, "x")
	os.Mkdir(out, 0o700)
	if msg, err := exec.Command(tarBin, "-xzf", archive, "-C", out).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, msg)
	}
	for _, o := range objs {
		n, _ := ObjectPath(o.key)
		got, err := os.ReadFile(filepath.Join(out, n))
		if err != nil || !bytes.Equal(got, o.data) {
			t.Errorf("extracted %s: %v (equal %v)", n, err, bytes.Equal(got, o.data))
		}
	}
	if st, err := os.Stat(filepath.Join(out, "backup.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup.json extracted with %v %v", st.Mode(), err)
	}
	// Nothing escaped the extraction directory.
	if _, err := os.Stat(filepath.Join(dir, "escape")); err == nil {
		t.Error("an object escaped the extraction directory")
	}

	node, err := exec.LookPath("node")
	if err != nil {
		t.Log("node not found; skipping the Node zlib check")
		return
	}
	script := `const fs=require('fs'),zlib=require('zlib'),crypto=require('crypto');` +
		`const b=zlib.gunzipSync(fs.readFileSync(process.argv[1]));` +
		`console.log(b.length+' '+crypto.createHash('sha256').update(b).digest('hex'))`
	got, err := exec.Command(node, "-e", script, archive).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	plain := gunzipAll(t, data)
	sum := sha256.Sum256(plain)
	if w := fmt.Sprintf("%d %x", len(plain), sum); strings.TrimSpace(string(got)) != w {
		t.Fatalf("node gunzip: %s, Go: %s", got, w)
	}
}

// gunzipAll decompresses every gzip member with Go's multistream reader.
func gunzipAll(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStorageMemberSizeChecks(t *testing.T) {
	m := NewStorageMember(&bytes.Buffer{}, testTime)
	if _, err := m.Add("a", 5, strings.NewReader("abc")); err == nil || !strings.Contains(err.Error(), "short object") {
		t.Fatalf("short: %v", err)
	}
	if _, err := m.Add("b", 1, strings.NewReader("x")); err == nil {
		t.Fatal("member usable after an error")
	}
	m = NewStorageMember(&bytes.Buffer{}, testTime)
	if _, err := m.Add("a", 2, strings.NewReader("abc")); err == nil || !strings.Contains(err.Error(), "longer than its size") {
		t.Fatalf("long: %v", err)
	}
	if err := WriteHeadMember(&bytes.Buffer{}, strings.NewReader("{}"), 5, testTime); err == nil {
		t.Fatal("short backup.json accepted")
	}
	if err := WriteHeadMember(&bytes.Buffer{}, strings.NewReader("{}xxxx"), 2, testTime); err == nil {
		t.Fatal("long backup.json accepted")
	}
}

func TestTarGzWriter(t *testing.T) {
	js := doc(`"storage":{"objects":[` + obj("a/b", 3) + `]}`)
	var out bytes.Buffer
	tw := NewTarGzWriter(&out, testTime)
	if _, err := tw.AddObject("a/b", 3, strings.NewReader("abc")); err == nil {
		t.Fatal("AddObject before backup.json accepted")
	}
	tw = NewTarGzWriter(&out, testTime)
	if err := tw.WriteBackupJSON(bytes.NewReader(js), int64(len(js))); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.AddObject("a/b", 3, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	c, _ := mustRead(t, out.Bytes(), TarGz)
	if string(c.members["a/b"]) != "abc" {
		t.Fatalf("members %q", c.members)
	}
}
