package archive

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestCopyTables(t *testing.T) {
	src := `{
  "posts": [
    {"id": "p1", "n": 1.0, "big": 9007199254740993},
    {},
    { },
    {"id": "p2", "blob": {"__blob__": true, "data": "AAE="}}
  ],
  "posts_fts": [{"rowid": 1}],
  "tags": []
}`
	var out bytes.Buffer
	stats, err := CopyTables(&out, strings.NewReader(src), func(t string) bool { return t != "posts_fts" }, true)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"posts":[{"id": "p1", "n": 1.0, "big": 9007199254740993},{"id": "p2", "blob": {"__blob__": true, "data": "AAE="}}],"tags":[]}`
	if out.String() != want {
		t.Fatalf("got  %s\nwant %s", out.String(), want)
	}
	if len(stats) != 2 || stats[0].Name != "posts" || stats[0].Rows != 2 || stats[0].EmptyRows != 2 || stats[1].Rows != 0 {
		t.Fatalf("stats %+v", stats)
	}
	// Keeping empty rows copies them verbatim.
	out.Reset()
	stats, err = CopyTables(&out, strings.NewReader(src), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(out.Bytes()) || !strings.Contains(out.String(), `,{},{ },`) || stats[0].Rows != 4 || stats[0].EmptyRows != 2 || len(stats) != 3 {
		t.Fatalf("got %s %+v", out.String(), stats)
	}
}

func TestCopyTablesKeepsKeyBytes(t *testing.T) {
	var out bytes.Buffer
	if _, err := CopyTables(&out, strings.NewReader(`{"p\u00f6sts":[{"a":1}]}`), nil, true); err != nil {
		t.Fatal(err)
	}
	if out.String() != `{"p\u00f6sts":[{"a":1}]}` {
		t.Fatalf("got %s", out.String())
	}
}

func TestCopyTablesRejects(t *testing.T) {
	for src, part := range map[string]string{
		`{"t":[1]}`:             "row is a number",
		`{"t":{}}`:              "want an array of rows",
		`{"t":[],"t":[]}`:       "duplicate table",
		`{"t":[{"a":1,"a":1}]}`: "duplicate column",
		`{"t":[{}]} x`:          "after the top-level value",
		`null`:                  "is null",
	} {
		_, err := CopyTables(&bytes.Buffer{}, strings.NewReader(src), nil, true)
		wantErr(t, err, ErrInvalid, part)
	}
	_, err := CopyTables(&bytes.Buffer{}, strings.NewReader(`{"t":[{"a":`), nil, true)
	wantErr(t, err, ErrTruncated, "truncated")
}

func TestCopyDumpTables(t *testing.T) {
	var out bytes.Buffer
	stats, err := CopyDumpTables(&out, strings.NewReader(sharedDump), func(t string) bool { return t != "_meta" }, true)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(out.Bytes()) || strings.Contains(out.String(), "_meta") || strings.Contains(out.String(), "{}") || len(stats) != 2 {
		t.Fatalf("got %s %+v", out.String(), stats)
	}
	var tables map[string][]map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &tables); err != nil {
		t.Fatal(err)
	}
	if string(tables["pösts"][0]["big"]) != "9007199254740993" || string(tables["pösts"][0]["f1"]) != "1.0" {
		t.Fatalf("values changed: %s", out.String())
	}
	_, err = CopyDumpTables(&bytes.Buffer{}, strings.NewReader(`{"doName":"x"}`), nil, true)
	wantErr(t, err, ErrInvalid, "missing tables")
}
