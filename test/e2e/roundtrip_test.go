package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/secrets/secretsmanager"
)

// scheduledInput is what the stack's EventBridge rule sends (its constant
// input), from the sample event.
func scheduledInput(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "events", "testdata", "aws", "eventbridge_constant_input.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestE2ERoundTrip: a scheduled backup (EventBridge input), run by the
// worker and assembler functions through SQS, then a restore started
// through the API into a second, empty deployment; both deployments'
// fingerprints must be equal, and the EdgeBase secrets travel along.
func TestE2ERoundTrip(t *testing.T) {
	gate(t)
	ctx := context.Background()
	src := newTarget(t, true)
	want := src.fingerprint(t)
	secretsA := map[string]string{"JWT_USER_SECRET": "user-secret-1", "JWT_ADMIN_SECRET": "admin-secret-2", "SERVICE_KEY": src.emu.ServiceKey()}
	d := deploy(t, src, deployOptions{stack: StackOptions{EdgeBaseSecrets: secretsA, APIAllowSecrets: true}})

	stop := d.run()
	input := strings.Replace(scheduledInput(t), `"includeSecrets": false`, `"includeSecrets": true`, 1)
	started := d.schedule(input, NewRequestID())
	if started.JobID == "" || started.State != events.StateRunning || started.Tasks == 0 {
		t.Fatalf("scheduler answered %+v", started)
	}
	job := d.wait(events.KindBackup, started.JobID, 3*time.Minute)
	stop()
	if job["state"] != "done" {
		t.Fatalf("backup job: %v", job)
	}
	units := job["units"].(map[string]any)
	if units["done"] != units["total"] || units["total"].(float64) != float64(started.Tasks) || len(job["errors"].([]any)) != 0 {
		t.Fatalf("backup units/errors: %v / %v", units, job["errors"])
	}
	arch := job["archive"].(map[string]any)
	key := arch["key"].(string)
	if !strings.HasPrefix(key, "backups/edgebase-backup-2026-01-02T03-04-05") || !strings.HasSuffix(key, ".tar.gz") || arch["sha256"] == "" {
		t.Fatalf("archive: %v", arch)
	}
	// The archive is a valid v1.1 .tar.gz matching its manifest.
	tmp := filepath.Join(t.TempDir(), filepath.Base(key))
	if err := os.WriteFile(tmp, d.object(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(archive.ManifestName(tmp), d.object(archive.ManifestName(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := archive.Verify(ctx, tmp)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if sum.Objects != 240 || sum.Secrets == 0 {
		t.Fatalf("archive summary: objects %d secrets %d", sum.Objects, sum.Secrets)
	}
	// Staging goes once the job is recorded done (the invocation that
	// recorded it deletes it, or the next check); the job record stays
	// (the api reads it).
	var staged []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		staged = staged[:0]
		_ = d.store().List(ctx, "jobs/"+started.JobID+"/", func(i blobInfo) error { staged = append(staged, i.Key); return nil })
		if len(staged) == 1 || time.Now().After(deadline) {
			break
		}
	}
	if len(staged) != 1 {
		t.Fatalf("staging left behind: %v", staged)
	}
	// Listing, newest first.
	if st, list := d.call("GET", "/backups", "", map[string]string{"limit": "5"}); st != 200 || len(list["items"].([]any)) != 1 {
		t.Fatalf("GET /backups: %d %v", st, list)
	}

	// Restore into a fresh deployment with its own (empty) secrets, through
	// the API, on the same bucket and queues.
	dst := newTarget(t, false)
	secretB := motoserver.Name(t, "restored-secrets")
	sm := d.clients.SecretsManager()
	if _, err := sm.CreateSecret(ctx, secretsInput(secretB)); err != nil {
		t.Fatal(err)
	}
	r := deployOn(t, d.stack, dst, deployOptions{override: map[string]string{lambdaenv.EdgeBaseSecrets: secretB}})
	stop = r.run()
	defer stop()
	status, body := r.call("POST", "/restores", `{"archive":"`+key+`"}`, nil)
	if status != 400 || errCode(body) != "confirmation_required" {
		t.Fatalf("restore without confirm: %d %v", status, body)
	}
	status, body = r.call("POST", "/restores", `{"archive":"`+filepath.Base(key)+`","confirm":true}`, nil)
	if status != 202 {
		t.Fatalf("POST /restores: %d %v", status, body)
	}
	rjob := r.wait(events.KindRestore, body["id"].(string), 3*time.Minute)
	if rjob["state"] != "done" || rjob["phase"] == nil {
		t.Fatalf("restore job: %v", rjob)
	}
	got := dst.fingerprint(t)
	if d := edgebasetest.Diff(want, got); d != "" {
		t.Fatalf("restored deployment differs from the original:\n%s", d)
	}
	store, err := secretsmanager.NewStore(sm, secretB)
	if err != nil {
		t.Fatal(err)
	}
	restored, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(restored) != fmt.Sprint(secretsA) {
		t.Fatalf("restored secrets %v, want %v", restored, secretsA)
	}
	// The metric the stack's alarm watches was not emitted, and the done
	// jobs were.
	if strings.Contains(d.metrics.String()+r.metrics.String(), `"JobsFailed"`) || !strings.Contains(d.metrics.String(), `"JobsDone"`) {
		t.Fatalf("metrics:\n%s", tail(d.metrics.String(), 20))
	}
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}
