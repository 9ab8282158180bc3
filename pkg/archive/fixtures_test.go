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
	for name, v := range map[string]any{"summary.json": s, "manifest.json": m} {
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
	want, _ := os.ReadFile(filepath.Join("testdata", "manifest.json"))
	if back, err := DecodeManifest(bytes.NewReader(want)); err != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("manifest fixture does not decode to the same value: %+v %v", back, err)
	}
}
