package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// linesWith returns the fingerprint lines starting with any prefix.
func linesWith(fp *edgebasetest.Fingerprint, prefixes ...string) []string {
	var out []string
	for _, l := range fp.Lines {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

func sameLines(t *testing.T, what string, want, got []string) {
	t.Helper()
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("%s differ:\nwant:\n  %s\ngot:\n  %s", what, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
}

// TestRestoreCreatesMissingInstances: restore-do answers needsCreate for an
// instance the target never had. A full restore knows the target's DOs and
// creates missing instances through the public API before restoring them;
// a selective one (no listing) meets needsCreate, creates the instance and
// restores again. Neither counts the no-op as success (9.7).
func TestRestoreCreatesMissingInstances(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"full restore", nil, "create,restore-do"},
		{"selective restore", []string{"--only", "db:workspace"}, "restore-do,create,restore-do"},
	} {
		dst := newEmulator(t, edgebasetest.Options{})
		args := append([]string{"backup", "restore", "--from", sa.json, "--yes"}, tc.extra...)
		r := cliRun(ctx, t, append(args, conn(dst)...)...)
		if r.code != 0 {
			t.Fatalf("%s failed:\n%s", tc.name, r)
		}
		log := dst.Requests()
		want := fingerprint(ctx, t, sa.src.emu, sa.src.demo.Instances...)
		got := fingerprint(ctx, t, dst, sa.src.demo.Instances...)
		sameLines(t, tc.name+": instance tables", linesWith(want, "table workspace:"), linesWith(got, "table workspace:"))
		for _, inst := range sa.src.demo.Instances {
			_, id, _ := strings.Cut(inst, ":")
			var calls []string
			for _, q := range log {
				switch {
				case q.Endpoint == "restore-do" && q.Fields["doName"] == inst:
					calls = append(calls, "restore-do")
				case q.Endpoint == "api:db:list" && strings.HasPrefix(q.Path, "/api/db/workspace/"+id+"/"):
					calls = append(calls, "create")
				}
			}
			if strings.Join(calls, ",") != tc.want {
				t.Errorf("%s: %s: calls %v; want %s", tc.name, inst, calls, tc.want)
			}
		}
	}
}

// TestRestoreRetriesColdInstances: the server refuses restore-do for a
// while on an instance DO just woken from cold (DIFFERENCES.md, 2.6); the
// restore retries it and succeeds.
func TestRestoreRetriesColdInstances(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	dst := newEmulator(t, edgebasetest.Options{Quirks: edgebasetest.Quirks{ColdRestoreLocked: 3}})
	junkTarget(ctx, t, dst) // seeds workspace:ws-1 (cold, with data)
	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.json, "--yes"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("restore failed:\n%s", r)
	}
	failed := 0
	for _, q := range dst.RequestsTo("restore-do") {
		if q.Status == 500 {
			failed++
		}
	}
	if failed == 0 {
		t.Error("the cold-instance quirk never fired; the test proves nothing")
	}
	want := fingerprint(ctx, t, sa.src.emu, sa.src.demo.Instances...)
	sameLines(t, "instance tables", linesWith(want, "table "), linesWith(fingerprint(ctx, t, dst, sa.src.demo.Instances...), "table "))
}

// TestRestoreSchemaDrift: a target whose config lacks an archived table or
// column is refused with every loss named, unless --allow-schema-drift.
func TestRestoreSchemaDrift(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	cfg := edgebasetest.DefaultConfig()
	shared := cfg.Database("shared")
	shared.Tables = shared.Tables[:1] // no "tags"
	posts := &shared.Tables[0]
	posts.Schema = posts.Schema[:1] // no "body" column
	dst := newEmulator(t, edgebasetest.Options{Config: &cfg})
	before := fingerprint(ctx, t, dst)

	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.json, "--yes", "--json"}, conn(dst)...)...)
	if r.code == 0 {
		t.Fatalf("restore into a drifted schema succeeded:\n%s", r)
	}
	doc := r.jsonDoc(t)
	drift, _ := doc["drift"].([]any)
	text := strings.Join(func() []string {
		var s []string
		for _, d := range drift {
			s = append(s, d.(string))
		}
		return s
	}(), "\n")
	if doc["code"] != "backup_schema_drift" || !strings.Contains(text, `table "tags"`) || !strings.Contains(text, `column "body" of table "posts"`) {
		t.Errorf("drift report %v; want the missing table tags and column posts.body named", doc)
	}
	assertUntouched(ctx, t, dst, before)

	// Allowing drift does not make rows with an unknown column acceptable
	// to the server (the D1 namespace fails as a whole, as the drift report
	// warned); the restore is attempted and the failure names the unit.
	r = cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.json, "--yes", "--json", "--allow-schema-drift"}, conn(dst)...)...)
	doc = r.jsonDoc(t)
	if msg, _ := doc["message"].(string); r.code != ExitError || !strings.Contains(msg, "namespace shared") || strings.Contains(msg, "..") {
		t.Errorf("restore with --allow-schema-drift: want a failure naming namespace shared:\n%s", r)
	}
}

// TestRestoreSchemaDriftAllowed: a dropped table only is restorable with
// --allow-schema-drift, and the rest of the data arrives.
func TestRestoreSchemaDriftAllowed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	cfg := edgebasetest.DefaultConfig()
	ledger := cfg.Database("ledger")
	ledger.Tables = append(ledger.Tables, edgebasetest.Table{Name: "unused", Schema: []edgebasetest.Field{{Name: "x", Type: "string"}}})
	shared := cfg.Database("shared")
	shared.Tables = shared.Tables[:1] // no "tags"
	dst := newEmulator(t, edgebasetest.Options{Config: &cfg})
	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.json, "--yes"}, conn(dst)...)...)
	if r.code == 0 || !strings.Contains(r.stderr, `table "tags" (4 rows) is not in the target's schema`) {
		t.Fatalf("want a refusal naming tags:\n%s", r)
	}
	r = cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.json, "--yes", "--allow-schema-drift"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("restore with --allow-schema-drift failed:\n%s", r)
	}
	if !strings.Contains(r.stderr, "schema drift (allowed)") {
		t.Errorf("no drift warning:\n%s", r)
	}
	want := fingerprint(ctx, t, sa.src.emu, sa.src.demo.Instances...)
	got := fingerprint(ctx, t, dst, sa.src.demo.Instances...)
	sameLines(t, "users and kept tables", linesWith(want, "users ", "table shared.posts", "table ledger.entries", "table workspace:"),
		linesWith(got, "users ", "table shared.posts", "table ledger.entries", "table workspace:"))
}

// TestRestoreSelective: --only restores just the chosen units, without
// the global wipes, and leaves everything else as it was.
func TestRestoreSelective(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	insts := append(append([]string(nil), sa.src.demo.Instances...), junkOrphans...)
	want := fingerprint(ctx, t, sa.src.emu, sa.src.demo.Instances...)
	globalWipes := []string{"restore-control-d1", "wipe-do", "restore-storage:wipe"}

	cases := []struct {
		only     string
		changed  []string // fingerprint prefixes that must equal the source's
		kept     []string // prefixes that must equal the target's before
		allowed  []string // write endpoints the restore may call
		objectOK func(key string) bool
	}{
		{only: "db:workspace", changed: []string{"table workspace:ws-1", "table workspace:ws-2", "table workspace:ws-3", "table workspace:ws-4"},
			kept: []string{"users ", "table shared.", "table ledger.", "table workspace:ws-junk", "storage ", "object "}, allowed: []string{"restore-do"}},
		{only: "db:shared", changed: []string{"table shared."},
			kept: []string{"users ", "table ledger.", "table workspace:", "storage ", "object "}, allowed: []string{"restore-do", "restore-data"}},
		{only: "auth", changed: []string{"users "},
			kept: []string{"table ", "storage ", "object "}, allowed: []string{"restore-d1", "resync-users-public"}},
		{only: "storage:uploads/", kept: []string{"users ", "table ", "storage avatars", `object "avatars/`},
			allowed: []string{"restore-storage:put"}, objectOK: func(k string) bool { return strings.HasPrefix(k, "uploads/") }},
	}
	for _, tc := range cases {
		t.Run(tc.only, func(t *testing.T) {
			t.Parallel()
			dst := newEmulator(t, edgebasetest.Options{})
			junkTarget(ctx, t, dst)
			before := fingerprint(ctx, t, dst, insts...)
			dst.ResetRequests()
			r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.tarball, "--yes", "--only", tc.only}, conn(dst)...)...)
			if r.code != 0 {
				t.Fatalf("restore --only %s failed:\n%s", tc.only, r)
			}
			for _, ep := range restoreWrites {
				for _, q := range dst.RequestsTo(ep) {
					if !contains(tc.allowed, q.Endpoint) {
						t.Errorf("--only %s called %s %v", tc.only, q.Endpoint, q.Fields)
					}
				}
			}
			for _, ep := range globalWipes {
				if n := len(dst.RequestsTo(ep)); n > 0 {
					t.Errorf("--only %s made %d global %s calls", tc.only, n, ep)
				}
			}
			got := fingerprint(ctx, t, dst, insts...)
			sameLines(t, "restored units", linesWith(want, tc.changed...), linesWith(got, tc.changed...))
			sameLines(t, "units left alone", linesWith(before, tc.kept...), linesWith(got, tc.kept...))
			if tc.objectOK != nil {
				gotObjects := map[string]bool{}
				for _, l := range linesWith(got, "object ") {
					gotObjects[l] = true
				}
				for _, l := range linesWith(want, "object ") {
					key := strings.SplitN(strings.TrimPrefix(l, `object "`), `"`, 2)[0]
					if tc.objectOK(key) && !gotObjects[l] {
						t.Errorf("selected object missing or different: %s", l)
					}
				}
				if !contains(linesWith(got, "object "), `object "uploads/junk.txt" 4 `+sha256Hex("junk")+` "text/plain"`) {
					t.Errorf("an object the archive does not have was deleted by a selective restore")
				}
			}
		})
	}
}

// TestRestoreConcurrencyBounds: restore-do calls in flight never exceed
// --concurrency, nor puts --storage-concurrency (spec 9.32). Every call is
// slowed down by a fixed latency: all calls starting within one latency
// after a call's start overlap with it, so their count bounds the peak
// from below.
func TestRestoreConcurrencyBounds(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	dst := newEmulator(t, edgebasetest.Options{})
	const latency = 60 * time.Millisecond
	dst.SetFault("restore-do", edgebasetest.Fault{Latency: latency})
	// 15 objects are slowed down: enough to fill 3 slots several times.
	slowPut := func(r edgebasetest.Request) bool {
		k := r.Fields["key"]
		return strings.HasPrefix(k, "uploads/files/00") || strings.HasPrefix(k, "uploads/files/01") || strings.HasPrefix(k, "uploads/files/02")
	}
	dst.SetFault("restore-storage:put", edgebasetest.Fault{Latency: latency, Match: slowPut})
	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.tarball, "--yes", "--concurrency", "2", "--storage-concurrency", "3"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("restore failed:\n%s", r)
	}
	check := func(endpoint string, limit int, match func(edgebasetest.Request) bool) {
		var starts []time.Time
		for _, q := range dst.RequestsTo(endpoint) {
			if match == nil || match(q) {
				starts = append(starts, q.Time)
			}
		}
		sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
		peak := 0
		for i := range starts {
			n := 0
			for j := i; j < len(starts) && starts[j].Sub(starts[i]) < latency; j++ {
				n++
			}
			peak = max(peak, n)
		}
		t.Logf("%s: %d calls, at least %d in flight at once (limit %d)", endpoint, len(starts), peak, limit)
		if peak > limit {
			t.Errorf("%s: %d calls in flight at once; the limit is %d", endpoint, peak, limit)
		}
		if peak < 2 {
			t.Errorf("%s: never more than one call in flight; the bound was not exercised", endpoint)
		}
	}
	check("restore-do", 2, nil)
	check("restore-storage:put", 3, slowPut)
}

// TestRestoreInterrupted: Ctrl-C during a restore exits non-zero, says the
// restore was interrupted and what state the target is in, and removes the
// work directory next to the archive.
func TestRestoreInterrupted(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	dir := t.TempDir()
	file := filepath.Join(dir, filepath.Base(sa.tarball))
	copyFile(t, sa.tarball, file)
	dst := newEmulator(t, edgebasetest.Options{})
	dst.SetFault("restore-data", edgebasetest.Fault{Latency: time.Minute})

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		done <- cliRun(runCtx, t, append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)...)
	}()
	waitFor(t, "restore-data to start", func() bool { return len(dst.RequestsTo("restore-data")) > 0 })
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the CLI did not return after its context was cancelled")
	}
	if r.code == 0 || !strings.Contains(r.stderr, "interrupted") || !strings.Contains(r.stderr, "partially done (stopped here): data namespaces") {
		t.Fatalf("interrupted restore: want a non-zero exit naming the state:\n%s", r)
	}
	if n := len(dst.RequestsTo("restore-storage")); n > 0 {
		t.Errorf("%d storage calls after the interruption", n)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".edgevault-restore-*"))
	if len(left) > 0 {
		t.Errorf("work directory left next to the archive: %v", left)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreStorageCounts: the restore report says how many objects were
// uploaded, kept unchanged and deleted: a first restore into an empty
// target uploads every object, a second finds them all unchanged, an
// extra object through the admin API means a wipe and every upload, and
// --full-storage-restore uploads everything again.
func TestRestoreStorageCounts(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	dst := newEmulator(t, edgebasetest.Options{})
	n := float64(len(edgebasetest.DemoObjects()))
	restoreJSON := func(want map[string]float64, extra ...string) {
		t.Helper()
		dst.ResetRequests()
		r := cliRun(ctx, t, append(append([]string{"--json", "backup", "restore", "--from", sa.tarball, "--yes"}, extra...), conn(dst)...)...)
		if r.code != 0 {
			t.Fatalf("restore %v failed:\n%s", extra, r)
		}
		st, _ := r.jsonDoc(t)["storage"].(map[string]any)
		for k, v := range want {
			if st[k] != v {
				t.Errorf("restore %v: storage %v, want %v", extra, st, want)
				break
			}
		}
		if puts := float64(len(dst.RequestsTo("restore-storage:put"))); puts != want["uploaded"] {
			t.Errorf("restore %v: %v puts, want %v", extra, puts, want["uploaded"])
		}
	}
	restoreJSON(map[string]float64{"uploaded": n, "skipped": 0, "deleted": 0})
	restoreJSON(map[string]float64{"uploaded": 0, "skipped": n, "deleted": 0})
	if err := dst.AddObjects(ctx, edgebasetest.Object{Key: "extra.txt", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	restoreJSON(map[string]float64{"uploaded": n, "skipped": 0, "deleted": n + 1})
	restoreJSON(map[string]float64{"uploaded": n, "skipped": 0, "deleted": n}, "--full-storage-restore")

	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.tarball, "--yes"}, conn(dst)...)...)
	if r.code != 0 || !strings.Contains(r.stderr+r.stdout, fmt.Sprintf("storage: 0 objects uploaded, %d unchanged and kept (not uploaded again), 0 deleted", int(n))) {
		t.Errorf("human report:\n%s", r)
	}
}
