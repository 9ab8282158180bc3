package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Pieces exercising what must survive byte-for-byte (spec 3.3, checklist 21).
var (
	controlTables = `{"_meta":[{"key":"plugin_version:plugin-a","value":"1.2.0"}]}`
	authTables    = `{
  "_users": [
    {"id": "u1", "email": "a@b.com", "verified": 1, "deletedAt": null},
    {"id": "u2", "email": "ü@b.com", "verified": 0, "deletedAt": null}
  ],
  "_sessions": [],
  "_meta": []
}`
	sharedDump = `{"doName":"shared","doType":"database","schema":{"pösts":"CREATE TABLE \"pösts\" (\"id\" TEXT, \"タイトル\" TEXT)","empty":"CREATE TABLE empty (x)"},` +
		`"tables":{"pösts":[` +
		`{"id":"p1","タイトル":"こんにちは \ud83d\ude00 \u00e9 é \/ \"q\"","big":9007199254740993,"neg":-12345678901234567890,` +
		`"f1":1.0,"f2":1,"f3":1e5,"f4":1E+5,"f5":-0.0,"f6":1.5e-7,"n":null,"t":true,"z":0,"fa":false,"s":"",` +
		`"blob":{"__blob__":true,"data":"AAECAwQ="}},` +
		`{"id":"p2"},{}` +
		`],"empty":[],"_meta":[{"key":"doName","value":"shared"}]},"timestamp":"2026-03-07T10:00:01.000Z","extra":{"kept":[1,2]}}`
	legacyDump    = `{"doName":"db:workspaceId:ws-123:tasks","doType":"database","tables":{"tasks":[{"id":1}]},"timestamp":""}`
	shardDump     = `{"doName":"auth:shard-0","doType":"auth","tables":{},"timestamp":"2026-03-07T10:00:02.000Z"}`
	configRaw     = `{"databases":{"shared":{"tables":{}}},"serviceKeys":{"keys":[{"kid":"root","inlineSecret":"s3cr3t"}]},"n":1.50}`
	namespaceDump = `{"type":"data","namespace":"shared","tables":{"posts":[{"id":"p1","title":"Hi","avatar":null,"n":1.10}],"_meta":[]},"tableOrder":["posts"],"timestamp":"2026-03-07T10:00:04.000Z"}`
)

func writeFull(t *testing.T) ([]byte, map[string]ValueStats) {
	t.Helper()
	var out bytes.Buffer
	jw, err := NewJSONWriter(&out, Header{Timestamp: FormatTimestamp(testTime), Source: SourceDocker})
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]ValueStats{}
	add := func(ref ValueRef, vs ValueStats, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		stats[ref.String()] = vs
	}
	vs, err := jw.ControlD1(strings.NewReader(controlTables))
	add(ValueRef{Section: SectionControlD1}, vs, err)
	vs, err = jw.AuthD1(strings.NewReader("\n" + authTables + "\n"))
	add(ValueRef{Section: SectionAuthD1}, vs, err)
	vs, err = jw.AuthShard("auth:shard-0", strings.NewReader(shardDump))
	add(ValueRef{SectionAuthShard, "auth:shard-0"}, vs, err)
	vs, err = jw.Database("shared", strings.NewReader(sharedDump))
	add(ValueRef{SectionDatabase, "shared"}, vs, err)
	vs, err = jw.Database("db:workspaceId:ws-123:tasks", strings.NewReader(legacyDump))
	add(ValueRef{SectionDatabase, "db:workspaceId:ws-123:tasks"}, vs, err)
	vs, err = jw.Config(strings.NewReader(configRaw))
	add(ValueRef{Section: SectionConfig}, vs, err)
	vs, err = jw.DataNamespace("shared", strings.NewReader(namespaceDump))
	add(ValueRef{SectionDataNamespace, "shared"}, vs, err)
	vs, err = jw.Secrets(map[string]string{"SERVICE_KEY": "sk\n\"x\"", "JWT_USER_SECRET": "ü"})
	add(ValueRef{Section: SectionSecrets}, vs, err)
	for _, o := range []Object{
		{Key: "avatars/u1.jpg", Size: 3, ETag: "e1", ContentType: "image/jpeg", SHA256: strings.Repeat("ab", 32)},
		{Key: "../x", Size: 0, ETag: "", ContentType: "application/octet-stream"},
	} {
		if err := jw.StorageObject(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	if jw.Size() != int64(out.Len()) {
		t.Fatalf("Size %d, wrote %d", jw.Size(), out.Len())
	}
	return out.Bytes(), stats
}

func TestJSONWriterRoundTrip(t *testing.T) {
	data, wstats := writeFull(t)
	c, s := mustRead(t, data, JSON)

	// Every piece comes back byte-identical.
	want := map[string]string{
		"control.d1":                  controlTables,
		"auth.d1":                     authTables,
		`auth.shards["auth:shard-0"]`: shardDump,
		`databases["shared"]`:         sharedDump,
		`databases["db:workspaceId:ws-123:tasks"]`: legacyDump,
		"config":                   configRaw,
		`dataNamespaces["shared"]`: namespaceDump,
		"secrets":                  `{"JWT_USER_SECRET":"ü","SERVICE_KEY":"sk\n\"x\""}`,
	}
	for ref, w := range want {
		got, ok := c.raw[ref]
		if !ok || got.String() != w {
			t.Errorf("%s:\n got %s\nwant %s", ref, got, w)
		}
	}
	wantOrder := []string{"control.d1", "auth.d1", `auth.shards["auth:shard-0"]`, `databases["shared"]`,
		`databases["db:workspaceId:ws-123:tasks"]`, "config", `dataNamespaces["shared"]`, "secrets"}
	if !slices.Equal(c.order, wantOrder) {
		t.Errorf("value order %q", c.order)
	}
	// The writer's stats equal the reader's.
	for ref, ws := range wstats {
		if rs := c.stats[ref]; !reflect.DeepEqual(ws, rs) {
			t.Errorf("%s stats differ:\nwriter %+v\nreader %+v", ref, ws, rs)
		}
	}
	sh := c.stats[`databases["shared"]`]
	if sh.DoName != "shared" || sh.DoType != "database" || sh.Rows != 4 || sh.EmptyRows != 1 || len(sh.Tables) != 3 {
		t.Errorf("shared stats %+v", sh)
	}
	if p := sh.Tables[0]; p.Name != "pösts" || p.Rows != 3 || p.EmptyRows != 1 || !slices.Equal(p.Columns[:3], []string{"id", "タイトル", "big"}) || len(p.Columns) != 16 {
		t.Errorf("pösts stats %+v", p)
	}
	if sh.Schema["pösts"] != `CREATE TABLE "pösts" ("id" TEXT, "タイトル" TEXT)` {
		t.Errorf("schema %q", sh.Schema)
	}
	if ns := c.stats[`dataNamespaces["shared"]`]; !slices.Equal(ns.TableOrder, []string{"posts"}) || ns.Namespace != "shared" {
		t.Errorf("namespace stats %+v", ns)
	}
	if cfg := c.stats["config"]; cfg.Keys != 3 || cfg.InlineSecrets != 1 {
		t.Errorf("config stats %+v", cfg)
	}
	if c.header != (Header{Version: "1.1", Timestamp: "2026-03-07T10:00:05.123Z", Source: "docker"}) || c.headers != 1 {
		t.Errorf("header %+v (%d calls)", c.header, c.headers)
	}
	wantObjects := []Object{
		{Key: "avatars/u1.jpg", Size: 3, ETag: "e1", ContentType: "image/jpeg", SHA256: strings.Repeat("ab", 32)},
		{Key: "../x", Size: 0, ContentType: "application/octet-stream", Path: "storage/.edgevault-escaped/%2E%2E%2Fx="},
	}
	if !reflect.DeepEqual(c.objects, wantObjects) {
		t.Errorf("objects %+v", c.objects)
	}
	if s.Users != 2 || s.DOs != 2 || s.AuthShards != 1 || s.DataNamespaces != 1 || s.Secrets != 2 || !s.Config ||
		s.Objects != 2 || s.StorageBytes != 3 || s.EscapedKeys != 1 || s.EmptyRows != 1 {
		t.Errorf("summary %+v", s)
	}

	// Key order and types as the official reader sees them.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	keys := topKeys(t, data)
	if !slices.Equal(keys, []string{"version", "timestamp", "source", "control", "auth", "databases", "config", "dataNamespaces", "secrets", "storage"}) {
		t.Errorf("top-level keys %q", keys)
	}
	if string(top["version"]) != `"1.1"` {
		t.Errorf("version %s", top["version"])
	}
}

func topKeys(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.Token()
	var keys []string
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return keys
}

func TestJSONWriterDeterministic(t *testing.T) {
	a, _ := writeFull(t)
	b, _ := writeFull(t)
	if !bytes.Equal(a, b) {
		t.Fatal("identical input gave different output")
	}
}

func TestJSONWriterMinimal(t *testing.T) {
	var out bytes.Buffer
	jw, err := NewJSONWriter(&out, Header{Timestamp: "2026-03-07T10:00:05.123Z", Source: SourceLocal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jw.ControlD1(strings.NewReader(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := jw.AuthD1(strings.NewReader(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"version":"1.1","timestamp":"2026-03-07T10:00:05.123Z","source":"local","control":{"d1":{}},"auth":{"d1":{},"shards":{}},"databases":{}}`
	if out.String() != want {
		t.Fatalf("got  %s\nwant %s", out.String(), want)
	}
	mustRead(t, out.Bytes(), JSON)
}

func TestJSONWriterSkipsToLaterSections(t *testing.T) {
	var out bytes.Buffer
	jw, _ := NewJSONWriter(&out, Header{Timestamp: "2026-03-07T10:00:05.123Z", Source: SourceCloudflareEdge})
	jw.ControlD1(strings.NewReader(`{}`))
	jw.AuthD1(strings.NewReader(`{}`))
	jw.Database("shared", strings.NewReader(emptyDump))
	if err := jw.StorageObject(Object{Key: "a/b", Size: 1, ETag: "e", ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"version":"1.1","timestamp":"2026-03-07T10:00:05.123Z","source":"cloudflare-edge","control":{"d1":{}},"auth":{"d1":{},"shards":{}},"databases":{"shared":` +
		emptyDump + `},"storage":{"objects":[{"key":"a/b","size":1,"etag":"e","contentType":"text/plain"}]}}`
	if out.String() != want {
		t.Fatalf("got  %s\nwant %s", out.String(), want)
	}
	mustRead(t, out.Bytes(), JSON)
}

func TestJSONWriterOrder(t *testing.T) {
	newW := func() *JSONWriter {
		jw, err := NewJSONWriter(&bytes.Buffer{}, Header{Timestamp: "2026-03-07T10:00:05.123Z", Source: SourceDocker})
		if err != nil {
			t.Fatal(err)
		}
		return jw
	}
	jw := newW()
	if _, err := jw.AuthD1(strings.NewReader(`{}`)); !errors.Is(err, ErrOrder) {
		t.Errorf("AuthD1 first: %v", err)
	}
	if _, err := jw.Database("shared", strings.NewReader(emptyDump)); !errors.Is(err, ErrOrder) || !strings.Contains(err.Error(), "before ControlD1") {
		t.Errorf("Database first: %v", err)
	}
	if err := jw.Close(); !errors.Is(err, ErrOrder) {
		t.Errorf("Close without sections: %v", err)
	}
	jw.ControlD1(strings.NewReader(`{}`))
	if _, err := jw.ControlD1(strings.NewReader(`{}`)); !errors.Is(err, ErrOrder) {
		t.Errorf("ControlD1 twice: %v", err)
	}
	if _, err := jw.Config(strings.NewReader(`{}`)); !errors.Is(err, ErrOrder) || !strings.Contains(err.Error(), "before AuthD1") {
		t.Errorf("Config before AuthD1: %v", err)
	}
	jw.AuthD1(strings.NewReader(`{}`))
	jw.Config(strings.NewReader(`{}`))
	if _, err := jw.Database("shared", strings.NewReader(emptyDump)); !errors.Is(err, ErrOrder) || !strings.Contains(err.Error(), "Database after Config") {
		t.Errorf("Database after Config: %v", err)
	}
	jw.Secrets(map[string]string{})
	if _, err := jw.DataNamespace("x", strings.NewReader(`{}`)); !errors.Is(err, ErrOrder) {
		t.Errorf("DataNamespace after Secrets: %v", err)
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := jw.StorageObject(Object{Key: "k", ContentType: "x"}); !errors.Is(err, ErrOrder) {
		t.Errorf("after Close: %v", err)
	}
}

func TestJSONWriterRejectsBadPieces(t *testing.T) {
	cases := []struct {
		name  string
		write func(jw *JSONWriter) error
		parts []string
	}{
		{"needsCreate", func(jw *JSONWriter) error {
			_, err := jw.Database("workspace:ws-1", strings.NewReader(`{"needsCreate":true,"namespace":"workspace","id":"ws-1"}`))
			return err
		}, []string{"needsCreate"}},
		{"doName mismatch", func(jw *JSONWriter) error {
			_, err := jw.Database("other", strings.NewReader(emptyDump))
			return err
		}, []string{`doName "shared" differs from its key "other"`}},
		{"auth stub without doType", func(jw *JSONWriter) error {
			_, err := jw.AuthShard("s", strings.NewReader(`{"doName":"s","tables":{},"users":[]}`))
			return err
		}, []string{"missing doType"}},
		{"bad doType", func(jw *JSONWriter) error {
			_, err := jw.Database("shared", strings.NewReader(`{"doName":"shared","doType":"x","tables":{},"timestamp":""}`))
			return err
		}, []string{`doType: is "x"`}},
		{"table not array", func(jw *JSONWriter) error {
			_, err := jw.Database("shared", strings.NewReader(`{"doName":"shared","doType":"database","tables":{"t":{}},"timestamp":""}`))
			return err
		}, []string{`databases["shared"].tables["t"]: is an object, want an array of rows`}},
		{"row not object", func(jw *JSONWriter) error {
			_, err := jw.Database("shared", strings.NewReader(`{"doName":"shared","doType":"database","tables":{"t":[{},1]},"timestamp":""}`))
			return err
		}, []string{`tables["t"][1]: row is a number`}},
		{"duplicate column", func(jw *JSONWriter) error {
			_, err := jw.Database("shared", strings.NewReader(`{"doName":"shared","doType":"database","tables":{"t":[{"a":1,"a":2}]},"timestamp":""}`))
			return err
		}, []string{`duplicate column "a"`}},
		{"schema not strings", func(jw *JSONWriter) error {
			_, err := jw.Database("shared", strings.NewReader(`{"doName":"shared","doType":"database","schema":{"t":1},"tables":{},"timestamp":""}`))
			return err
		}, []string{`schema["t"]: is a number, want a string`}},
		{"namespace type", func(jw *JSONWriter) error {
			_, err := jw.DataNamespace("shared", strings.NewReader(`{"type":"d1","namespace":"shared","tables":{},"timestamp":""}`))
			return err
		}, []string{`type: is "d1", want "data"`}},
		{"tableOrder not strings", func(jw *JSONWriter) error {
			_, err := jw.DataNamespace("shared", strings.NewReader(`{"type":"data","namespace":"shared","tables":{},"tableOrder":[1],"timestamp":""}`))
			return err
		}, []string{`tableOrder[0]: is a number`}},
		{"trailing data", func(jw *JSONWriter) error {
			_, err := jw.Database("shared", strings.NewReader(emptyDump+` {}`))
			return err
		}, []string{"after the top-level value"}},
		{"truncated", func(jw *JSONWriter) error {
			_, err := jw.Database("shared", strings.NewReader(emptyDump[:20]))
			return err
		}, []string{"truncated"}},
		{"config null", func(jw *JSONWriter) error {
			_, err := jw.Config(strings.NewReader(`null`))
			return err
		}, []string{"config: is null"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			jw, _ := NewJSONWriter(&bytes.Buffer{}, Header{Timestamp: "2026-03-07T10:00:05.123Z", Source: SourceDocker})
			jw.ControlD1(strings.NewReader(`{}`))
			jw.AuthD1(strings.NewReader(`{}`))
			err := c.write(jw)
			sentinel := ErrInvalid
			if c.name == "truncated" {
				sentinel = ErrTruncated
			}
			wantErr(t, err, sentinel, c.parts...)
			// The writer stays failed.
			if err2 := jw.Close(); err2 == nil {
				t.Fatal("Close after a failed piece succeeded")
			}
		})
	}
}

func TestJSONWriterHeaderValidation(t *testing.T) {
	for _, h := range []Header{
		{Timestamp: "2026-03-07T10:00:05Z", Source: SourceDocker},
		{Timestamp: "2026-03-07T10:00:05.123+01:00", Source: SourceDocker},
		{Timestamp: "2026-03-07T10:00:05.123Z", Source: "aws"},
		{Version: "1.0", Timestamp: "2026-03-07T10:00:05.123Z", Source: SourceDocker},
	} {
		if _, err := NewJSONWriter(&bytes.Buffer{}, h); err == nil {
			t.Errorf("%+v accepted", h)
		}
	}
}

func TestJSONWriterDuplicates(t *testing.T) {
	jw, _ := NewJSONWriter(&bytes.Buffer{}, Header{Timestamp: "2026-03-07T10:00:05.123Z", Source: SourceDocker})
	jw.ControlD1(strings.NewReader(`{}`))
	jw.AuthD1(strings.NewReader(`{}`))
	if _, err := jw.Database("shared", strings.NewReader(emptyDump)); err != nil {
		t.Fatal(err)
	}
	if _, err := jw.Database("shared", strings.NewReader(emptyDump)); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate DO: %v", err)
	}
	jw.StorageObject(Object{Key: "a", ContentType: "x"})
	if err := jw.StorageObject(Object{Key: "a", ContentType: "x"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate object: %v", err)
	}
	if err := jw.StorageObject(Object{Key: "b", ContentType: "x", SHA256: "ABC"}); err == nil {
		t.Fatal("bad sha256 accepted")
	}
}

func TestValidate(t *testing.T) {
	vs, err := Validate(SectionDatabase, "shared", strings.NewReader(sharedDump))
	if err != nil || vs.Rows != 4 || vs.Bytes != int64(len(sharedDump)) {
		t.Fatalf("%+v %v", vs, err)
	}
	_, err = Validate(SectionDatabase, "x", strings.NewReader(`{"needsCreate":true}`))
	wantErr(t, err, ErrInvalid, "needsCreate")
	_, err = Validate(SectionSecrets, "", strings.NewReader(`{"a":1}`))
	wantErr(t, err, ErrInvalid, `secrets["a"]: is a number, want a string`)
	if _, err := Validate(SectionControlD1, "", strings.NewReader(controlTables)); err != nil {
		t.Fatal(err)
	}
}

func TestJSONWriterRejectedObjectLeavesValidOutput(t *testing.T) {
	var out bytes.Buffer
	jw, _ := NewJSONWriter(&out, Header{Timestamp: "2026-03-07T10:00:05.123Z", Source: SourceDocker})
	jw.ControlD1(strings.NewReader(`{}`))
	jw.AuthD1(strings.NewReader(`{}`))
	if vs, err := jw.Secrets(nil); err != nil || vs.Keys != 0 {
		t.Fatal(vs, err)
	}
	if err := jw.StorageObject(Object{Key: "a", ETag: "\xff"}); err == nil {
		t.Fatal("invalid etag accepted")
	}
	if err := jw.StorageObject(Object{Key: "b", Size: -1}); err == nil {
		t.Fatal("negative size accepted")
	}
	if err := jw.StorageObject(Object{Key: "c", Size: 1, ContentType: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "secrets") || !strings.HasSuffix(out.String(), `"storage":{"objects":[{"key":"c","size":1,"etag":"","contentType":"x"}]}}`) {
		t.Fatalf("got %s", out.String())
	}
	mustRead(t, out.Bytes(), JSON)
}
