package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := CreateFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyWithManifest(t *testing.T) {
	dir := t.TempDir()
	data, _ := writeArchive(t, testObjects()[:3])
	p := writeFile(t, dir, FileName(testTime, true), data, 0o600)
	s, err := Verify(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Manifest != "absent" || s.Bytes != int64(len(data)) || s.Mode != "0600" || s.Format != TarGz {
		t.Fatalf("summary %+v", s)
	}
	size, sha, err := HashFile(p)
	if err != nil || size != s.Bytes || sha != s.SHA256 {
		t.Fatalf("HashFile %d %s %v, Verify %d %s", size, sha, err, s.Bytes, s.SHA256)
	}
	m := NewManifest(s, testTime, "job-1")
	if err := WriteManifestFile(ManifestName(p), m); err != nil {
		t.Fatal(err)
	}
	back, err := ReadManifestFile(ManifestName(p))
	if err != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("manifest round trip: %+v %v", back, err)
	}
	if back.Archive != filepath.Base(p) || back.Objects != 3 || back.Job != "job-1" {
		t.Fatalf("manifest %+v", back)
	}
	if s, err = Verify(context.Background(), p); err != nil || s.Manifest != "ok" {
		t.Fatalf("with manifest: %v %+v", err, s)
	}
	if _, err := CheckManifestFile(p); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	s.WriteText(&text)
	for _, w := range []string{"tar.gz", "3 objects", "3 checked by sha256", "manifest: ok"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text lacks %q:\n%s", w, text.String())
		}
	}
	js, _ := json.Marshal(s)
	if !strings.Contains(string(js), `"format":"tar.gz"`) || !strings.Contains(string(js), `"manifest":"ok"`) {
		t.Errorf("JSON summary %s", js)
	}

	// A valid archive that is not the one the manifest describes.
	other, _ := writeArchive(t, testObjects()[:2])
	os.Remove(p)
	writeFile(t, dir, filepath.Base(p), other, 0o600)
	s, err = Verify(context.Background(), p)
	if !errors.Is(err, ErrManifestMismatch) || s.Manifest != "mismatch" {
		t.Fatalf("mismatch: %v %+v", err, s)
	}
	if _, err := CheckManifestFile(p); !errors.Is(err, ErrManifestMismatch) {
		t.Fatalf("CheckManifestFile: %v", err)
	}
	os.WriteFile(ManifestName(p), []byte(`{"version":1}`), 0o600)
	if _, err := Verify(context.Background(), p); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("broken manifest: %v", err)
	}
}

func TestVerifySecretsMode(t *testing.T) {
	dir := t.TempDir()
	data := doc(`"secrets":{"SERVICE_KEY":"k"}`)
	p := writeFile(t, dir, "a.json", data, 0o644)
	s, err := Verify(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(s.Warnings, "\n"), "holds secrets but its mode is 0644") {
		t.Fatalf("warnings %q", s.Warnings)
	}
	p = writeFile(t, dir, "b.json", data, 0o600)
	if s, _ := Verify(context.Background(), p); len(s.Warnings) != 0 {
		t.Fatalf("warnings %q", s.Warnings)
	}
}

func TestVerifyNamesMissingObjects(t *testing.T) {
	bj := storageDoc(obj("a/present", 1) + "," + obj("a/gone", 2) + "," + obj("b/gone too", 3))
	data := buildTarGz(t, []tarEntry{reg("backup.json", bj), reg("storage/a/present", "x")}, true)
	p := writeFile(t, t.TempDir(), "x.tar.gz", data, 0o600)
	_, err := Verify(context.Background(), p)
	wantErr(t, err, ErrInvalid, "2 storage.objects entries have no storage/ member", `"a/gone"`, `"b/gone too"`)
}

func TestVerifyTruncatedFile(t *testing.T) {
	data, _ := writeArchive(t, testObjects())
	p := writeFile(t, t.TempDir(), "x.tgz", data[:len(data)/2], 0o600)
	_, err := Verify(context.Background(), p)
	wantErr(t, err, ErrTruncated, "truncated")
	if _, err := Verify(context.Background(), filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Fatal("missing file verified")
	}
}
