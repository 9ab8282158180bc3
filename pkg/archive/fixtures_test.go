package archive

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the JSON fixtures in testdata")

// The JSON forms of Summary and Manifest are contracts (CLI --json output,
// manifests beside archives): they are frozen as fixtures.
func TestJSONFixtures(t *testing.T) {
	data, _ := writeFull(t)
	_, s := mustRead(t, data, JSON)
	m := NewManifest(s, testTime, "job-1")
	m.SHA256 = "0000000000000000000000000000000000000000000000000000000000000000"
	m.Archive = "edgebase-backup-2026-03-07T10-00-05.json"
	// A manifest from a newer server's backup: what it observed.
	ms := m
	ms.Observe().ContentTypesMasked = 3
	ms.Observe().ConfigRedacted = true
	ms.Observe().InternalKeysSkipped = 2
	if m.Server != nil {
		t.Fatal("Observe on a copy changed the original")
	}
	for name, v := range map[string]any{"summary.json": s, "manifest.json": m, "manifest-server.json": ms} {
		got, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("testdata", name)
		if *update {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create the fixture)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s changed:\n%s", name, got)
		}
	}
	for name, m := range map[string]Manifest{"manifest.json": m, "manifest-server.json": ms} {
		want, _ := os.ReadFile(filepath.Join("testdata", name))
		if back, err := DecodeManifest(bytes.NewReader(want)); err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("%s does not decode to the same value: %+v %v", name, back, err)
		}
	}
}

// The server observations are optional: manifests written before them
// decode with Server nil, and zero counts are written, not omitted.
func TestManifestServerObservations(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(old, []byte(`"server"`)) {
		t.Fatal("the old fixture must stay without a server object")
	}
	m, err := DecodeManifest(bytes.NewReader(old))
	if err != nil || m.Server != nil {
		t.Fatalf("old manifest: %+v %v", m.Server, err)
	}
	var buf bytes.Buffer
	if err := EncodeManifest(&buf, m); err != nil || !bytes.Equal(buf.Bytes(), old) {
		t.Fatalf("an old manifest does not re-encode identically:\n%s", buf.Bytes())
	}

	m.Observe()
	buf.Reset()
	if err := EncodeManifest(&buf, m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"server": {
    "contentTypesMasked": 0,
    "configRedacted": false,
    "internalKeysSkipped": 0
  }`)) {
		t.Fatalf("zero observations not written:\n%s", buf.Bytes())
	}
	back, err := DecodeManifest(&buf)
	if err != nil || back.Server == nil || *back.Server != (ServerObservations{}) {
		t.Fatalf("round trip: %+v %v", back.Server, err)
	}

	m.Observe().InternalKeysSkipped = -1
	buf.Reset()
	_ = EncodeManifest(&buf, m)
	if _, err := DecodeManifest(&buf); err == nil {
		t.Fatal("negative counts accepted")
	}
	// Unknown members inside server (from a newer writer) are ignored.
	in := bytes.Replace(old, []byte(`"secrets": true`), []byte(`"secrets": true, "server": {"contentTypesMasked": 1, "futureField": [1]}`), 1)
	if back, err := DecodeManifest(bytes.NewReader(in)); err != nil || back.Server == nil || back.Server.ContentTypesMasked != 1 {
		t.Fatalf("forward-compatible decode: %+v %v", back.Server, err)
	}
}
