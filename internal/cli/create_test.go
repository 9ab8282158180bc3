package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestCreateFailsClosed: a unit that fails after every retry fails the
// whole backup, names the unit, and leaves no archive under a final name
// (spec 9.37, 9.38).
func TestCreateFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	cases := []struct {
		name     string
		endpoint string
		fault    edgebasetest.Fault
		extra    []string
		unit     string // must appear in the message
	}{
		{
			name: "DO dump", endpoint: "dump-do", unit: "DO workspace:ws-2",
			fault: edgebasetest.Fault{Status: 500, Match: func(r edgebasetest.Request) bool { return r.Fields["doName"] == "workspace:ws-2" }},
		},
		{
			name: "storage object", endpoint: "dump-storage:get", extra: []string{"--include-storage"}, unit: `"uploads/with space.txt"`,
			fault: edgebasetest.Fault{Status: 500, Match: func(r edgebasetest.Request) bool { return r.Fields["key"] == "uploads/with space.txt" }},
		},
		{
			name: "truncated object", endpoint: "dump-storage:get", extra: []string{"--include-storage"}, unit: `"avatars/big.bin"`,
			fault: edgebasetest.Fault{Truncate: true, TruncateAfter: 1000, Match: func(r edgebasetest.Request) bool { return r.Fields["key"] == "avatars/big.bin" }},
		},
		{
			name: "config", endpoint: "config", unit: "config",
			fault: edgebasetest.Fault{Status: 500},
		},
		{
			name: "data namespace", endpoint: "dump-data", unit: "namespace shared",
			fault: edgebasetest.Fault{Status: 503},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newSource(t, edgebasetest.Options{})
			src.emu.SetFault(tc.endpoint, tc.fault)
			out := t.TempDir()
			args := append([]string{"backup", "create", "--output", out}, conn(src.emu)...)
			r := cliRun(ctx, t, append(args, tc.extra...)...)
			if r.code == 0 {
				t.Fatalf("backup succeeded despite a failing %s:\n%s", tc.endpoint, r)
			}
			if !strings.Contains(r.stderr, tc.unit) {
				t.Errorf("message does not name the unit %s:\n%s", tc.unit, r)
			}
			if a := archives(t, out); len(a) > 0 {
				t.Errorf("archive files left after a failed backup: %v", a)
			}

			// The same failure with --json: one error document naming it.
			r = cliRun(ctx, t, append(append([]string{"backup", "create", "--json", "--output", out}, conn(src.emu)...), tc.extra...)...)
			doc := r.jsonDoc(t)
			if r.code != ExitError || doc["status"] != "error" || doc["code"] != "backup_create_failed" {
				t.Errorf("--json failure: exit %d, %v", r.code, doc)
			}
			if msg, _ := doc["message"].(string); !strings.Contains(msg, tc.unit) {
				t.Errorf("--json message %q does not name %s", msg, tc.unit)
			}
			if a := archives(t, out); len(a) > 0 {
				t.Errorf("archive files left after a failed backup: %v", a)
			}
		})
	}
}

// TestCreateSkipsNameOnlyDOFiles: a request for a DO that does not exist
// (answered needsCreate) leaves a local file holding only its name; state
// dir discovery must not turn it into a DO whose dump fails the backup.
func TestCreateSkipsNameOnlyDOFiles(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, src.emu.URL()+"/admin/api/backup/dump-do", strings.NewReader(`{"doName":"workspace:ghost","type":"database"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-EdgeBase-Service-Key", src.emu.ServiceKey())
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "needsCreate") {
		t.Fatalf("probe of a missing instance answered %s", b)
	}
	r := cliRun(ctx, t, append([]string{"backup", "create", "--json", "--output", t.TempDir()}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("backup failed:\n%s", r)
	}
	if !strings.Contains(r.stderr, `"workspace:ghost" stores nothing`) {
		t.Errorf("no warning about the skipped file:\n%s", r)
	}
	file, _ := r.jsonDoc(t)["file"].(string)
	names, _ := archiveDOs(t, file)
	if contains(names, "workspace:ghost") || !contains(names, "workspace:ws-4") {
		t.Errorf("archive DOs %v", names)
	}
}

// TestCreateEmptyBucket: --include-storage on an empty bucket writes a
// .json without "storage", which restores without extra flags (8.8, 9.42).
func TestCreateEmptyBucket(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newEmulator(t, edgebasetest.Options{})
	if err := src.AddRows(ctx, "shared", "posts", edgebasetest.Row{"title": "only row"}); err != nil {
		t.Fatal(err)
	}
	file := backupTo(ctx, t, src, "--include-storage")
	if !strings.HasSuffix(file, ".json") {
		t.Fatalf("archive %s; want a .json for an empty bucket", file)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(readFile(t, file), &top); err != nil {
		t.Fatal(err)
	}
	if _, ok := top["storage"]; ok {
		t.Errorf("the archive of an empty bucket has a storage section")
	}
	dst := newEmulator(t, edgebasetest.Options{})
	if r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)...); r.code != 0 {
		t.Fatalf("restore failed:\n%s", r)
	}
	sameLines(t, "tables", linesWith(fingerprint(ctx, t, src), "table "), linesWith(fingerprint(ctx, t, dst), "table "))
}

// TestCreateResumeAfterFailure: the failure hint says to run again with
// --resume; doing so after the cause is fixed finishes the job and only
// redoes the failed unit.
func TestCreateResumeAfterFailure(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	src.emu.SetFault("dump-do", edgebasetest.Fault{Status: 500, Match: func(r edgebasetest.Request) bool { return r.Fields["doName"] == "ledger" }})
	out := t.TempDir()
	if r := cliRun(ctx, t, append([]string{"backup", "create", "--output", out, "--include-storage"}, conn(src.emu)...)...); r.code == 0 || !strings.Contains(r.stderr, "--resume") {
		t.Fatalf("want a failure suggesting --resume:\n%s", r)
	}
	// The job fails as soon as ledger has failed for good; units still
	// running then are cut short. What counts is what was stored.
	finished := doneUnits(t, out)
	src.emu.ClearFaults()
	before := dumpsOf(src.emu)
	gets := len(src.emu.RequestsTo("dump-storage:get"))
	r := cliRun(ctx, t, append([]string{"backup", "create", "--json", "--output", out, "--resume"}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("resume failed:\n%s", r)
	}
	after := dumpsOf(src.emu)
	for name, n := range after {
		if finished["DO "+name] && n != before[name] {
			t.Errorf("DO %s was stored before the failure but dumped again on resume", name)
		}
	}
	if after["ledger"] != before["ledger"]+1 {
		t.Errorf("ledger dumped %d times on resume; want 1", after["ledger"]-before["ledger"])
	}
	storageDone := false
	for u := range finished {
		storageDone = storageDone || strings.HasPrefix(u, "storage range")
	}
	if n := len(src.emu.RequestsTo("dump-storage:get")) - gets; storageDone && n != 0 {
		t.Errorf("resume downloaded %d objects of a stored range again", n)
	}
	file, _ := r.jsonDoc(t)["file"].(string)
	if v := cliRun(ctx, t, "backup", "verify", file); v.code != 0 {
		t.Errorf("verify:\n%s", v)
	}
}

// doneUnits reads the units recorded as done in the only job staged
// under out.
func doneUnits(t *testing.T, out string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(out, ".edgevault", "jobs", "*", "status", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	for _, f := range files {
		var st struct{ Unit, State string }
		if err := json.Unmarshal(readFile(t, f), &st); err != nil {
			t.Fatal(err)
		}
		if st.State == "done" {
			done[st.Unit] = true
		}
	}
	return done
}

// TestCreateTwiceInOneSecond: archive names have one-second resolution;
// back-to-back backups into one directory all succeed under distinct
// names (spec A.9) instead of the later ones failing after their work.
func TestCreateTwiceInOneSecond(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newEmulator(t, edgebasetest.Options{})
	out := t.TempDir()
	seen := map[string]bool{}
	for range 3 {
		r := cliRun(ctx, t, append([]string{"backup", "create", "--json", "--output", out}, conn(src)...)...)
		if r.code != 0 {
			t.Fatalf("backup failed:\n%s", r)
		}
		file, _ := r.jsonDoc(t)["file"].(string)
		if seen[file] {
			t.Fatalf("two backups reported the same file %s", file)
		}
		seen[file] = true
		if v := cliRun(ctx, t, "backup", "verify", file); v.code != 0 {
			t.Errorf("verify %s:\n%s", file, v)
		}
	}
}
