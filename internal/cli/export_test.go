package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, WorkDir: t.TempDir()})
	return out.String(), errb.String(), code
}

func TestExportIsTheServersBytes(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	if _, err := e.SeedDemo(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, "export", "posts", "--url", e.URL(), "--service-key", e.ServiceKey())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	req, _ := http.NewRequest(http.MethodGet, e.URL()+"/admin/api/backup/export/posts?format=json", nil)
	req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if out != string(want) {
		t.Fatalf("export differs from the endpoint's bytes:\n%.300s\n---\n%.300s", out, want)
	}
}

func TestExportMergesDynamicInstances(t *testing.T) {
	ctx := context.Background()
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	if _, err := e.SeedDemo(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tasks.json")
	out, errs, code := runCLI(t, "--json", "export", "tasks", "--url", e.URL(), "--service-key", e.ServiceKey(),
		"--state-dir", e.StateDir(), "--output", path)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	var res struct {
		Status  string `json:"status"`
		Records int    `json:"records"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Status != "success" {
		t.Fatalf("result %q: %v", out, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != res.Records || len(rows) == 0 {
		t.Fatalf("%d rows in the file, %d reported", len(rows), res.Records)
	}
	// Every instance's rows, in instance-name order, each instance's rows
	// in dump order.
	insts, err := e.DOInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range insts {
		if strings.HasPrefix(in.Name, "workspace:") {
			names = append(names, in.Name)
		}
	}
	sort.Strings(names)
	var want []any
	for _, n := range names {
		req, _ := http.NewRequest(http.MethodPost, e.URL()+"/admin/api/backup/dump-do", strings.NewReader(`{"doName":"`+n+`","type":"database"}`))
		req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var dump struct {
			Tables map[string][]map[string]any `json:"tables"`
		}
		err = json.NewDecoder(resp.Body).Decode(&dump)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range dump.Tables["tasks"] {
			want = append(want, r["id"])
		}
	}
	var got []any
	for _, r := range rows {
		got = append(got, r["id"])
	}
	if len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("merged ids %v, want %v", got, want)
	}
	// The layout is the server's: JSON.stringify(rows, null, 2).
	var canon bytes.Buffer
	if err := json.Indent(&canon, b, "", "  "); err != nil || canon.String() != string(b) {
		t.Errorf("merged export is not laid out with two-space indentation")
	}
}

func TestExportUnknownTable(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	out, _, code := runCLI(t, "--json", "export", "nope", "--url", e.URL(), "--service-key", e.ServiceKey(), "-o", filepath.Join(t.TempDir(), "x.json"))
	if code != ExitError || !strings.Contains(out, `"code":"export_table_not_found"`) {
		t.Fatalf("exit %d, %s", code, out)
	}
}
