package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// --estimate counts what a backup would read without downloading it.
func TestEstimate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	out := t.TempDir()
	r := cliRun(ctx, t, append([]string{"backup", "create", "--estimate", "--include-storage", "--json", "--output", out}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("estimate failed:\n%s", r)
	}
	raw, _ := json.Marshal(r.jsonDoc(t)["estimate"])
	var e backupEstimate
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	if e.DOs != 6 || e.DataNamespaces != 1 || e.Objects != int64(src.demo.Objects) || e.Bytes != src.demo.Bytes || e.StorageRanges != 1 {
		t.Fatalf("estimate %+v; want the demo's 6 DOs, 1 namespace, %d objects of %d bytes", e, src.demo.Objects, src.demo.Bytes)
	}
	if e.Requests < int64(e.Objects) || e.SecondsMin <= 0 || e.SecondsMax < e.SecondsMin || e.CostPerBackup <= 0 || e.CostPerMonth < 30*e.CostPerBackup {
		t.Fatalf("estimate figures %+v", e)
	}
	for _, ep := range []string{"dump-do", "dump-storage:get"} {
		if n := len(src.emu.RequestsTo(ep)); n != 0 {
			t.Errorf("the estimate sent %d %s requests; it must download nothing", n, ep)
		}
	}
	if archives(t, out) != nil {
		t.Errorf("the estimate wrote %v", archives(t, out))
	}
	txt := cliRun(ctx, t, append([]string{"backup", "create", "--estimate", "--output", out}, conn(src.emu)...)...)
	if txt.code != 0 || !strings.Contains(txt.stdout, "nothing was downloaded") || !strings.Contains(txt.stdout, "per month") {
		t.Errorf("text estimate:\n%s", txt)
	}
}
