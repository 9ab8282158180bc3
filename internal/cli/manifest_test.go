package cli

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// The manifest written while assembling agrees with what verify reads back.
func TestManifestCountsMatchTheArchive(t *testing.T) {
	ctx := context.Background()
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	if _, err := e.SeedDemo(ctx); err != nil {
		t.Fatal(err)
	}
	for _, storage := range []bool{false, true} {
		out := t.TempDir()
		args := []string{"backup", "create", "--url", e.URL(), "--service-key", e.ServiceKey(), "--state-dir", e.StateDir(), "--output", out}
		if storage {
			args = append(args, "--include-storage")
		}
		if _, errs, code := runCLI(t, args...); code != 0 {
			t.Fatalf("create: %s", errs)
		}
		files, _ := filepath.Glob(filepath.Join(out, "edgebase-backup-*"))
		var path string
		for _, f := range files {
			if archive.IsArchiveName(filepath.Base(f)) {
				path = f
			}
		}
		s, err := archive.Verify(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := archive.ReadManifestFile(archive.ManifestName(path))
		if err != nil {
			t.Fatal(err)
		}
		want := archive.NewManifest(s, m.CreatedAt, m.Job)
		want.Parts = m.Parts
		if want.SHA256 == "" || m.SHA256 != want.SHA256 || m.Size != want.Size {
			t.Errorf("storage=%v: manifest size/sha %d %s, file %d %s", storage, m.Size, m.SHA256, want.Size, want.SHA256)
		}
		if m.DOs != want.DOs || m.DataNamespaces != want.DataNamespaces || m.Tables != want.Tables || m.Rows != want.Rows ||
			m.Users != want.Users || m.Objects != want.Objects || m.StorageBytes != want.StorageBytes ||
			m.BackupTimestamp != want.BackupTimestamp || m.Source != want.Source || m.Format != want.Format || m.Rows == 0 || m.Users == 0 {
			t.Errorf("storage=%v: manifest\n%+v\nverify says\n%+v", storage, m, want)
		}
	}
}
