package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/drill"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/provenance"
)

func drillArgs(file string, e *edgebasetest.Emulator, extra ...string) []string {
	return append(append([]string{"drill", "--from", file}, conn(e)...), extra...)
}

func TestDrillPassesAndProvesTheMarker(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	file := backupTo(ctx, t, src.emu, "--include-storage")
	dst := newEmulator(t, edgebasetest.Options{ServiceKey: "scratch-key"})
	key, pub := keygen(ctx, t)

	r := cliRun(ctx, t, drillArgs(file, dst, "--json", "--sign-key", key)...)
	if r.code != 0 {
		t.Fatalf("drill into a fresh emulator:\n%s", r)
	}
	rep, _ := r.jsonDoc(t)["report"].(map[string]any)
	if rep["passed"] != true {
		t.Fatalf("report not passed:\n%s", r)
	}
	for k, want := range map[string]float64{"users": float64(src.demo.Users), "objects": float64(src.demo.Objects)} {
		if rep[k] != want {
			t.Errorf("report %s = %v, want %v", k, rep[k], want)
		}
	}
	for _, k := range []string{"dos", "tables", "rows"} {
		if n, _ := rep[k].(float64); n <= 0 {
			t.Errorf("report %s = %v, want a count", k, rep[k])
		}
	}
	// The report is recorded beside the archive, signed.
	b, err := os.ReadFile(drill.ReportName(file))
	if err != nil {
		t.Fatal(err)
	}
	var recorded drill.Report
	if err := json.Unmarshal(b, &recorded); err != nil {
		t.Fatal(err)
	}
	trusted, err := provenance.ReadPublicKeyFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	sig := recorded.Signature
	recorded.Signature = nil
	if !recorded.Passed || recorded.ArchiveSHA256 == "" || provenance.VerifyReport("drill report", recorded, sig, trusted) != nil {
		t.Fatalf("recorded report: passed %v, archive sha256 %q, signature %v", recorded.Passed, recorded.ArchiveSHA256, provenance.VerifyReport("drill report", recorded, sig, trusted))
	}
	recorded.Rows++
	if provenance.VerifyReport("drill report", recorded, sig, trusted) == nil {
		t.Fatal("a changed drill report still verifies")
	}
	if _, ct, err := dst.ObjectContent(ctx, drill.MarkerKey); err != nil || ct != "application/json" {
		t.Fatalf("the scratch marker is not on the target after the drill: %v", err)
	}

	// The target now holds data, but carries the marker: a second drill
	// needs no confirmation; the human summary reports the counts.
	r = cliRun(ctx, t, drillArgs(file, dst)...)
	if r.code != 0 || !strings.Contains(r.stdout, "Drill PASSED") || !strings.Contains(r.stdout, "users") {
		t.Fatalf("second drill into the marked target:\n%s", r)
	}
}

func TestDrillNamesEachSabotagedDifference(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	file := backupTo(ctx, t, src.emu, "--include-storage")
	inv, err := drill.ReadArchive(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range inv.Objects {
		keys = append(keys, k)
	}
	if len(keys) < 2 {
		t.Fatalf("the demo archive has %d objects", len(keys))
	}
	changedObj, retyped := keys[0], keys[1]
	dst := newEmulator(t, edgebasetest.Options{ServiceKey: "scratch-key"})
	env := testEnv(t)
	env.drillRestored = func(ctx context.Context) error {
		if err := dst.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"id": "ws-1-task-1", "title": "SABOTAGED"}); err != nil {
			return err
		}
		data, ct, err := dst.ObjectContent(ctx, changedObj)
		if err != nil {
			return err
		}
		data = append([]byte(nil), data...)
		data[0] ^= 0x20
		if err := dst.AddObjects(ctx, edgebasetest.Object{Key: changedObj, ContentType: ct, Data: data}); err != nil {
			return err
		}
		data, _, err = dst.ObjectContent(ctx, retyped)
		if err != nil {
			return err
		}
		if err := dst.AddObjects(ctx, edgebasetest.Object{Key: retyped, ContentType: "text/x-sabotaged", Data: data}); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, dst.URL()+"/admin/api/backup/wipe-do",
			bytes.NewBufferString(`{"doName":"workspace:ws-2","type":"database"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-EdgeBase-Service-Key", dst.ServiceKey())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("wipe-do: %s", resp.Status)
		}
		return nil
	}
	r := cliRunEnv(ctx, t, env, drillArgs(file, dst)...)
	if r.code == 0 {
		t.Fatalf("a sabotaged restore passed the drill:\n%s", r)
	}
	for _, want := range []string{
		"Drill FAILED",
		"do workspace:ws-1 table tasks: 3 rows on both sides, but their content differs", // one row changed
		"object " + changedObj + ": its content differs",
		"object " + retyped + ": content type \"text/x-sabotaged\"",
		"do workspace:ws-2 is missing on the target",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the drill's summary does not say %q:\n%s", want, r)
		}
	}
}

func TestDrillRefusesWithNothingWritten(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	file := backupTo(ctx, t, src.emu, "--include-storage")

	t.Run("a target holding data, unmarked", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{ServiceKey: "scratch-key"})
		if err := dst.AddUsers(ctx, edgebasetest.User{Email: "someone@example.test"}); err != nil {
			t.Fatal(err)
		}
		if err := dst.AddObjects(ctx, edgebasetest.Object{Key: "uploads/keep.txt", ContentType: "text/plain", Data: []byte("keep")}); err != nil {
			t.Fatal(err)
		}
		before := fingerprint(ctx, t, dst)
		dst.ResetRequests()
		r := cliRun(ctx, t, drillArgs(file, dst)...)
		if r.code == 0 || !strings.Contains(r.stderr, "not declared scratch") || !strings.Contains(r.stderr, "1 users") || !strings.Contains(r.stderr, "1 storage objects") {
			t.Fatalf("drill into a target holding data:\n%s", r)
		}
		assertUntouched(ctx, t, dst, before)
		// A confirmation that does not repeat the target's URL is no confirmation.
		r = cliRun(ctx, t, drillArgs(file, dst, "--scratch-confirm", src.emu.URL())...)
		if r.code == 0 || !strings.Contains(r.stderr, "does not repeat the target URL") {
			t.Fatalf("drill with a wrong --scratch-confirm:\n%s", r)
		}
		assertUntouched(ctx, t, dst, before)
		// The URL repeated declares it scratch: the drill replaces its data.
		r = cliRun(ctx, t, drillArgs(file, dst, "--scratch-confirm", dst.URL(), "--json")...)
		if r.code != 0 {
			t.Fatalf("drill with --scratch-confirm:\n%s", r)
		}
	})

	t.Run("the archive's own source", func(t *testing.T) {
		before := fingerprint(ctx, t, src.emu, src.demo.Instances...)
		src.emu.ResetRequests()
		r := cliRun(ctx, t, drillArgs(file, src.emu, "--scratch-confirm", src.emu.URL())...)
		if r.code == 0 || !strings.Contains(r.stderr, "is where the archive was taken from") {
			t.Fatalf("drill into the source:\n%s", r)
		}
		assertUntouched(ctx, t, src.emu, before, src.demo.Instances...)
	})

	t.Run("a wrong key", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{ServiceKey: "scratch-key"})
		before := fingerprint(ctx, t, dst)
		dst.ResetRequests()
		args := []string{"drill", "--from", file, "--url", dst.URL(), "--service-key", "not-the-key"}
		r := cliRun(ctx, t, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "refused the service key") {
			t.Fatalf("drill with a wrong key:\n%s", r)
		}
		assertUntouched(ctx, t, dst, before)
	})
}

// An archive without storage and without a manifest (as the official CLI
// writes them): the drill passes on an empty target and says that it
// could not check the source URL.
func TestDrillOfAJSONArchiveWithoutManifest(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	file := backupTo(ctx, t, src.emu)
	if err := os.Remove(file + ".manifest.json"); err != nil {
		t.Fatal(err)
	}
	dst := newEmulator(t, edgebasetest.Options{ServiceKey: "scratch-key"})
	r := cliRun(ctx, t, drillArgs(file, dst, "--json")...)
	if r.code != 0 || !strings.Contains(r.stderr, "does not name its source URL") {
		t.Fatalf("drill of a .json archive without manifest:\n%s", r)
	}
	rep, _ := r.jsonDoc(t)["report"].(map[string]any)
	if rep["passed"] != true || rep["users"] != float64(src.demo.Users) || rep["objects"] != float64(0) {
		t.Fatalf("report: %v", rep)
	}
}
