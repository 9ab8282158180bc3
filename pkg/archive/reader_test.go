package archive

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestReadMinimalAndUnknownFields(t *testing.T) {
	c, s := mustRead(t, doc(`"futureField":{"x":[1,2]},"comment":"hi"`), JSON)
	if s.Version != "1.1" || s.Timestamp != "2026-03-07T10:00:05.123Z" || s.Source != "docker" || c.headers != 1 {
		t.Fatalf("summary %+v", s)
	}
	if got := strings.Join(s.Sections, ","); got != "version,timestamp,source,control,auth,databases,futureField,comment" {
		t.Fatalf("sections %s", got)
	}
}

func TestReadAnyKeyOrder(t *testing.T) {
	// Keys sorted alphabetically, as jq -S would write them.
	data := `{"auth":{"d1":{},"shards":{}},"control":{"d1":{}},"databases":{"shared":` + emptyDump + `},` +
		`"source":"local","timestamp":"2026-03-07T10:00:05.123Z","version":"1.1"}`
	c, s := mustRead(t, []byte(data), JSON)
	if s.DOs != 1 || s.Version != "1.1" || c.headers != 1 {
		t.Fatalf("summary %+v", s)
	}
}

func TestReadLegacyNames(t *testing.T) {
	data := doc("")
	data = []byte(strings.Replace(string(data), `"databases":{}`, `"databases":{`+
		`"db:posts":{"doName":"db:posts","doType":"database","tables":{"posts":[]},"timestamp":""},`+
		`"db:_system":{"doName":"db:_system","doType":"database","tables":{},"timestamp":""},`+
		`"db:workspaceId:ws-123:tasks":`+legacyDump+`}`, 1))
	data = []byte(strings.Replace(string(data), `"shards":{}`, `"shards":{"auth:shard-0":`+shardDump+`}`, 1))
	_, s := mustRead(t, data, JSON)
	if s.DOs != 3 || s.AuthShards != 1 {
		t.Fatalf("summary %+v", s)
	}
}

func TestReadRejections(t *testing.T) {
	replace := func(old, new string) []byte {
		return []byte(strings.Replace(string(doc("")), old, new, 1))
	}
	cases := []struct {
		name     string
		data     []byte
		sentinel error
		parts    []string
	}{
		{"root array", []byte(`[]`), ErrInvalid, []string{"Backup file must be a JSON object."}},
		{"wrong version", replace(`"version":"1.1"`, `"version":"1.0"`), ErrUnsupportedVersion, []string{"Unsupported backup version: 1.0"}},
		{"numeric version", replace(`"version":"1.1"`, `"version":1.1`), ErrUnsupportedVersion, []string{"Unsupported backup version: 1.1", "a number"}},
		{"null version", replace(`"version":"1.1"`, `"version":null`), ErrUnsupportedVersion, []string{"Unsupported backup version: unknown"}},
		{"missing version", replace(`"version":"1.1",`, ``), ErrUnsupportedVersion, []string{"Unsupported backup version: unknown", "missing"}},
		{"empty timestamp", replace(`"timestamp":"2026-03-07T10:00:05.123Z"`, `"timestamp":""`), ErrInvalid, []string{"Backup file is missing timestamp.", "is empty"}},
		{"numeric source", replace(`"source":"docker"`, `"source":1`), ErrInvalid, []string{"Backup file is missing source."}},
		{"missing control.d1", replace(`"control":{"d1":{"_meta":[]}}`, `"control":{}`), ErrInvalid, []string{"Backup file is missing control.d1."}},
		{"missing control", replace(`"control":{"d1":{"_meta":[]}},`, ``), ErrInvalid, []string{"Backup file is missing control metadata."}},
		{"control.d1 table not array", replace(`"_meta":[]`, `"_meta":{}`), ErrInvalid, []string{"Backup file is missing control.d1.", `control.d1["_meta"]`}},
		{"missing auth.shards", replace(`,"shards":{}`, ``), ErrInvalid, []string{"Backup file is missing auth.shards."}},
		{"missing auth.d1", replace(`"d1":{"_users":[]},`, ``), ErrInvalid, []string{"Backup file is missing auth.d1."}},
		{"missing databases", replace(`,"databases":{}`, ``), ErrInvalid, []string{"Backup file is missing databases."}},
		{"databases null", replace(`"databases":{}`, `"databases":null`), ErrInvalid, []string{"Backup file is missing databases.", "is null"}},
		{"DO key mismatch", replace(`"databases":{}`, `"databases":{"other":`+emptyDump+`}`), ErrInvalid, []string{"Backup file is missing databases.", `differs from its key "other"`}},
		{"needsCreate DO", replace(`"databases":{}`, `"databases":{"ws":{"needsCreate":true,"namespace":"ws"}}`), ErrInvalid, []string{"needsCreate"}},
		{"duplicate DO", replace(`"databases":{}`, `"databases":{"shared":`+emptyDump+`,"shared":`+emptyDump+`}`), ErrInvalid, []string{`databases["shared"]`, "twice"}},
		{"secrets null", doc(`"secrets":null`), ErrInvalid, []string{"Backup file has invalid secrets metadata.", "is null"}},
		{"non-string secret", doc(`"secrets":{"SERVICE_KEY":"x","JWT_USER_SECRET":42}`), ErrInvalid, []string{"Backup file has invalid secrets metadata.", `secrets["JWT_USER_SECRET"]: is a number, want a string`}},
		{"config null", doc(`"config":null`), ErrInvalid, []string{"Backup file has invalid config metadata.", "is null"}},
		{"config array", doc(`"config":[]`), ErrInvalid, []string{"Backup file has invalid config metadata."}},
		{"dataNamespaces null", doc(`"dataNamespaces":null`), ErrInvalid, []string{"Backup file has invalid data namespace dumps.", "is null"}},
		{"storage null", doc(`"storage":null`), ErrInvalid, []string{"Backup file has invalid storage metadata.", "is null"}},
		{"storage without objects", doc(`"storage":{}`), ErrInvalid, []string{"Backup file has invalid storage metadata.", "missing objects"}},
		{"object without etag", doc(`"storage":{"objects":[{"key":"a","size":1,"contentType":"x"}]}`), ErrInvalid, []string{"storage.objects[0]: missing etag"}},
		{"object fractional size", doc(`"storage":{"objects":[{"key":"a","size":1.5,"etag":"","contentType":"x"}]}`), ErrInvalid, []string{"storage.objects[0].size: is 1.5"}},
		{"object duplicate key", doc(`"storage":{"objects":[{"key":"a","size":1,"etag":"","contentType":"x"},{"key":"a","size":1,"etag":"","contentType":"x"}]}`), ErrInvalid, []string{`key "a" is listed twice`}},
		{"object wrong path", doc(`"storage":{"objects":[{"key":"a","size":1,"etag":"","contentType":"x","path":"storage/b"}]}`), ErrInvalid, []string{"storage.objects[0].path"}},
		{"duplicate top-level", doc(`"version":"1.1"`), ErrInvalid, []string{"duplicate top-level field"}},
		{"truncated", doc("")[:40], ErrTruncated, []string{"backup JSON is truncated", "offset 40"}},
		{"trailing garbage", append(doc(""), " x"...), ErrInvalid, []string{"not valid JSON", "after the top-level value"}},
		{"two documents", append(doc(""), doc("")...), ErrInvalid, []string{"after the top-level value"}},
		{"invalid UTF-8", doc("\"x\":\"\xff\""), ErrInvalid, []string{"invalid UTF-8"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readBytes(t, c.data, JSON)
			wantErr(t, err, c.sentinel, c.parts...)
			if c.sentinel == ErrTruncated && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("truncation does not wrap io.ErrUnexpectedEOF: %v", err)
			}
		})
	}
}

func TestReadJSONWithStorageIsValid(t *testing.T) {
	_, s := mustRead(t, doc(`"storage":{"objects":[{"key":"a/b.jpg","size":10,"etag":"e","contentType":"image/jpeg"}]}`), JSON)
	if s.Objects != 1 || s.StorageBytes != 10 || !strings.Contains(strings.Join(s.Warnings, "\n"), "no object bytes") {
		t.Fatalf("summary %+v", s)
	}
}

func TestReadWarnings(t *testing.T) {
	data := doc(`"storage":{"objects":[]}`)
	data = []byte(strings.Replace(string(data), `"databases":{}`, `"databases":{"shared":{"doName":"shared","doType":"database",`+
		`"schema":{"posts_fts":"CREATE VIRTUAL TABLE posts_fts USING fts5(title)"},"tables":{"posts":[{}],"posts_fts":[]},"timestamp":""}}`, 1))
	_, s := mustRead(t, data, JSON)
	all := strings.Join(s.Warnings, "\n")
	for _, w := range []string{"1 empty {} rows", "FTS5", "storage.objects is empty"} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings lack %q:\n%s", w, all)
		}
	}
}

func TestReadVisitorErrorStops(t *testing.T) {
	boom := errors.New("boom")
	_, err := Read(context.Background(), strings.NewReader(string(doc(""))), JSON, failingVisitor{boom})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

type failingVisitor struct {
	err error
}

func (f failingVisitor) Header(context.Context, Header) error { return nil }
func (f failingVisitor) BeginValue(context.Context, ValueRef) (io.Writer, error) {
	return nil, f.err
}
func (f failingVisitor) EndValue(context.Context, ValueRef, ValueStats) error   { return nil }
func (f failingVisitor) StorageObject(context.Context, Object) error            { return nil }
func (f failingVisitor) StorageMember(context.Context, Member, io.Reader) error { return nil }

func TestReadCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Read(ctx, strings.NewReader(string(doc(""))), JSON, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// Tar layout rules.

func storageDoc(objects string) string {
	return string(doc(`"storage":{"objects":[` + objects + `]}`))
}

func obj(key string, size int) string {
	return `{"key":"` + key + `","size":` + itoa(size) + `,"etag":"e","contentType":"application/octet-stream"}`
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestReadTarGz(t *testing.T) {
	bj := storageDoc(obj("avatars/u1.jpg", 3) + "," + obj("uploads/é ü/+%#?.txt", 5))
	entries := []tarEntry{
		{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "x"}}},
		reg("./backup.json", bj),
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "storage/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "storage/avatars/", Mode: 0o755}},
		reg("storage/avatars/u1.jpg", "abc"),
		reg("storage/avatars/._u1.jpg", "apple"),
		reg("._backup.json", "apple"),
		reg("storage/uploads/é ü/+%#?.txt", "hello"),
	}
	c, s := mustRead(t, buildTarGz(t, entries, true), TarGz)
	if string(c.members["avatars/u1.jpg"]) != "abc" || string(c.members["uploads/é ü/+%#?.txt"]) != "hello" || len(c.members) != 2 {
		t.Fatalf("members %q", c.members)
	}
	if s.Members != 2 || s.MemberBytes != 8 || s.Objects != 2 {
		t.Fatalf("summary %+v", s)
	}
}

func TestReadTarGzMembersBeforeBackupJSON(t *testing.T) {
	bj := storageDoc(obj("a/1", 3) + "," + obj("a/2", 2))
	entries := []tarEntry{reg("storage/a/2", "xy"), reg("backup.json", bj), reg("storage/a/1", "abc")}
	c, _ := mustRead(t, buildTarGz(t, entries, true), TarGz)
	if len(c.members) != 2 {
		t.Fatalf("members %q", c.members)
	}
	// A member before backup.json with the wrong size is still caught.
	entries[0] = reg("storage/a/2", "xyz")
	_, _, err := readBytes(t, buildTarGz(t, entries, true), TarGz)
	wantErr(t, err, ErrInvalid, `member for "a/2" has 3 bytes, storage.objects says 2`)
	// And an unlisted one.
	entries[0] = reg("storage/a/3", "xy")
	_, _, err = readBytes(t, buildTarGz(t, entries, true), TarGz)
	wantErr(t, err, ErrInvalid, "not in storage.objects")
}

func TestReadTarGzRejections(t *testing.T) {
	bj := storageDoc(obj("a/b", 3))
	ok := []tarEntry{reg("backup.json", bj), reg("storage/a/b", "abc")}
	with := func(extra ...tarEntry) []tarEntry { return append(append([]tarEntry{}, ok...), extra...) }
	cases := []struct {
		name    string
		entries []tarEntry
		parts   []string
	}{
		{"dot-dot", with(reg("storage/../x", "1")), []string{"unsafe archive member", "storage/../x", "'..'"}},
		{"dot-dot at root", with(reg("../x", "1")), []string{"'..'"}},
		{"absolute", with(reg("/etc/passwd", "1")), []string{"/etc/passwd", "absolute"}},
		{"symlink", with(tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "storage/l", Linkname: "/etc/passwd"}}), []string{"storage/l", "symbolic links"}},
		{"hardlink", with(tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "storage/h", Linkname: "backup.json"}}), []string{"storage/h", "hard links"}},
		{"char device", with(tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "storage/c", Devmajor: 1, Devminor: 3}}), []string{"device files"}},
		{"block device", with(tarEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "storage/d"}}), []string{"device files"}},
		{"fifo", with(tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "storage/f"}}), []string{"FIFOs"}},
		{"duplicate member", with(reg("storage/a/b", "abc")), []string{"duplicate archive member", "storage/a/b"}},
		{"duplicate via ./", with(reg("./storage/a/b", "abc")), []string{"duplicate archive member"}},
		{"duplicate backup.json", with(reg("backup.json", bj)), []string{"backup.json appears twice"}},
		{"outside storage", with(reg("notes.txt", "1")), []string{"notes.txt", "must be under storage/"}},
		{"extra member", with(reg("storage/a/c", "1")), []string{"not listed in storage.objects", `key "a/c"`}},
		{"size mismatch", []tarEntry{reg("backup.json", bj), reg("storage/a/b", "abcd")}, []string{"size differs", "member has 4 bytes, storage.objects says 3"}},
		{"missing member", []tarEntry{reg("backup.json", storageDoc(obj("a/b", 3)+","+obj("a/c", 1))), reg("storage/a/b", "abc")}, []string{"storage objects missing from the archive", "1 storage.objects entries"}},
		{"members without storage section", []tarEntry{reg("backup.json", string(doc(""))), reg("storage/a/b", "abc")}, []string{"not listed in storage.objects"}},
		{"backup.json missing", []tarEntry{reg("storage/a/b", "abc")}, []string{"backup.json not found in archive."}},
		{"backup.json in a directory", []tarEntry{reg("x/backup.json", bj)}, []string{"must be under storage/"}},
		{"empty segment", with(reg("storage/a//c", "1")), []string{"empty or '.'"}},
		{"bad escaped name", with(reg("storage/.edgevault-escaped/zz", "1")), []string{"invalid storage member name"}},
		{"invalid backup.json", []tarEntry{reg("backup.json", `{"version":"2"}`)}, []string{"Unsupported backup version: 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readBytes(t, buildTarGz(t, c.entries, true), TarGz)
			wantErr(t, err, ErrInvalid, c.parts...)
		})
	}
}

func TestReadTarGzSHA256(t *testing.T) {
	sum := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // sha256("abc")
	o := `{"key":"a/b","size":3,"etag":"e","contentType":"x","sha256":"` + sum + `"}`
	good := []tarEntry{reg("backup.json", storageDoc(o)), reg("storage/a/b", "abc")}
	_, s := mustRead(t, buildTarGz(t, good, true), TarGz)
	if s.VerifiedObjects != 1 {
		t.Fatalf("verified %d", s.VerifiedObjects)
	}
	bad := []tarEntry{reg("backup.json", storageDoc(o)), reg("storage/a/b", "abd")}
	_, _, err := readBytes(t, buildTarGz(t, bad, true), TarGz)
	wantErr(t, err, ErrInvalid, "content differs", `sha256 of key "a/b"`)
	// Same when the member comes first.
	bad[0], bad[1] = bad[1], bad[0]
	_, _, err = readBytes(t, buildTarGz(t, bad, true), TarGz)
	wantErr(t, err, ErrInvalid, "content differs")
}

func TestReadTarGzTruncation(t *testing.T) {
	var objs []string
	entries := []tarEntry{{}}
	for i := range 20 {
		key := "k/" + itoa(i)
		objs = append(objs, obj(key, 1000))
		entries = append(entries, reg("storage/"+key, strings.Repeat(string(rune('a'+i)), 1000)))
	}
	entries[0] = reg("backup.json", storageDoc(strings.Join(objs, ",")))
	full := buildTarGz(t, entries, true)
	mustRead(t, full, TarGz)
	for _, cut := range []int{0, 5, 10, 20, 100, len(full) / 3, len(full) / 2, len(full) - 9, len(full) - 1} {
		_, _, err := readBytes(t, full[:cut], TarGz)
		wantErr(t, err, ErrTruncated, "truncated")
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut %d: %v does not wrap io.ErrUnexpectedEOF", cut, err)
		}
	}
	// Complete gzip, but the tar lacks its end-of-archive blocks.
	_, _, err := readBytes(t, buildTarGz(t, entries, false), TarGz)
	wantErr(t, err, ErrTruncated, "end-of-archive")
}

func TestReadTarGzTrailingData(t *testing.T) {
	full := buildTarGz(t, []tarEntry{reg("backup.json", string(doc("")))}, true)
	_, _, err := readBytes(t, append(full, "garbage"...), TarGz)
	wantErr(t, err, ErrInvalid, "after the end of the gzip stream")
	_, _, err = readBytes(t, []byte("not gzip at all"), TarGz)
	wantErr(t, err, ErrInvalid, "corrupt")
	// Bytes after the tar end inside the gzip stream.
	var entries []tarEntry
	entries = append(entries, reg("backup.json", string(doc(""))))
	withJunk := buildTarGzRaw(t, entries, []byte("junk"))
	_, _, err = readBytes(t, withJunk, TarGz)
	wantErr(t, err, ErrInvalid, "after the end of the tar archive")
	// A truncated backup.json inside a complete tar.
	_, _, err = readBytes(t, buildTarGz(t, []tarEntry{reg("backup.json", string(doc(""))[:30])}, true), TarGz)
	wantErr(t, err, ErrTruncated, "backup JSON is truncated")
}
