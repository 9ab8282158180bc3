package cli

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestReportsAgree: create, verify, the restore plan and the restore name
// the same row categories with the same numbers, in text and in --json.
func TestReportsAgree(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	out := t.TempDir()

	r := cliRun(ctx, t, append([]string{"backup", "create", "--include-storage", "--output", out}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("create failed:\n%s", r)
	}
	files, _ := filepath.Glob(filepath.Join(out, "edgebase-backup-*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("create wrote %v", files)
	}
	file := files[0]
	man, err := archive.ReadManifestFile(archive.ManifestName(file))
	if err != nil {
		t.Fatal(err)
	}
	if man.RowsBy == nil || man.RowsBy.Auth == 0 || man.RowsBy.Control == 0 || man.RowsBy.DOs == 0 || man.RowsBy.DataNamespaces == 0 {
		t.Fatalf("manifest rowsBy %+v; want every category counted", man.RowsBy)
	}
	if man.RowsBy.Total() != man.Rows {
		t.Fatalf("manifest rowsBy %+v sums to %d, rows %d", man.RowsBy, man.RowsBy.Total(), man.Rows)
	}
	want := man.RowsBy.String()
	if !strings.Contains(r.stdout, want) {
		t.Errorf("create report lacks %q:\n%s", want, r)
	}

	v := cliRun(ctx, t, "backup", "verify", file)
	if v.code != 0 || !strings.Contains(v.stdout, want) {
		t.Errorf("verify report lacks %q:\n%s", want, v)
	}
	vj := cliRun(ctx, t, "backup", "verify", "--json", file)
	var vsum struct {
		Summary struct {
			RowsBy archive.RowCounts `json:"rowsBy"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(vj.stdout), &vsum); err != nil || vsum.Summary.RowsBy != *man.RowsBy {
		t.Errorf("verify --json rowsBy %+v (%v); want %+v\n%s", vsum.Summary.RowsBy, err, *man.RowsBy, vj)
	}

	dst := newEmulator(t, edgebasetest.Options{ServiceKey: "target-key"})
	plan := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--dry-run"}, conn(dst)...)...)
	if plan.code != 0 || !strings.Contains(plan.stdout, want) {
		t.Errorf("restore plan lacks %q:\n%s", want, plan)
	}
	rj := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)...)
	if rj.code != 0 {
		t.Fatalf("restore failed:\n%s", rj)
	}
	doc := rj.jsonDoc(t)
	raw, _ := json.Marshal(doc["rowsBy"])
	var got archive.RowCounts
	if err := json.Unmarshal(raw, &got); err != nil || !reflect.DeepEqual(got, *man.RowsBy) || doc["rows"] != float64(man.Rows) {
		t.Errorf("restore --json rows %v rowsBy %+v; want %d and %+v", doc["rows"], got, man.Rows, *man.RowsBy)
	}
	rt := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)...)
	if rt.code != 0 || !strings.Contains(rt.stdout, "Restore complete: ") || !strings.Contains(rt.stdout, want) {
		t.Errorf("restore report lacks %q:\n%s", want, rt)
	}

	// A selective restore says which categories it leaves out with zeros.
	only := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--only", "auth", "--yes", "--json"}, conn(dst)...)...)
	if only.code != 0 {
		t.Fatalf("restore --only auth failed:\n%s", only)
	}
	raw, _ = json.Marshal(only.jsonDoc(t)["rowsBy"])
	got = archive.RowCounts{}
	_ = json.Unmarshal(raw, &got)
	if (got != archive.RowCounts{Auth: man.RowsBy.Auth}) {
		t.Errorf("restore --only auth rowsBy %+v; want only auth %d", got, man.RowsBy.Auth)
	}
}
