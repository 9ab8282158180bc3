package miniflare_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/miniflare"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

func TestListNamesInstancesAndGhosts(t *testing.T) {
	ctx := context.Background()
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	if _, err := e.SeedDemo(ctx); err != nil {
		t.Fatal(err)
	}
	// A restore-do of a never-created instance is answered needsCreate and
	// leaves a file that holds only the name.
	req, _ := http.NewRequest(http.MethodPost, e.URL()+"/admin/api/backup/restore-do",
		strings.NewReader(`{"doName":"workspace:ghost","type":"database","tables":{}}`))
	req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	got, err := miniflare.List(ctx, e.StateDir(), "DatabaseDO")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]miniflare.Instance{}
	for _, in := range got {
		byName[in.Name] = in
	}
	for _, n := range []string{"ledger", "workspace:ws-1", "workspace:ws-4"} {
		if in, ok := byName[n]; !ok || !in.HasData || len(in.HexID) != 64 {
			t.Errorf("%s: %+v (found %v)", n, in, ok)
		}
	}
	if g, ok := byName["workspace:ghost"]; ok && g.HasData {
		t.Errorf("the needsCreate ghost counts as holding data: %+v", g)
	}
	want, err := e.DOInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if w.Name != "" && byName[w.Name].HexID != w.HexID {
			t.Errorf("%s: hex %s, emulator says %s", w.Name, byName[w.Name].HexID, w.HexID)
		}
	}
}

func TestNotAStateDirectory(t *testing.T) {
	if _, err := miniflare.List(context.Background(), t.TempDir(), "DatabaseDO"); err == nil {
		t.Fatal("an empty directory was accepted as dev server state")
	}
}
