package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// backupOnce runs one scheduled backup with storage on its own stack and
// returns the job status and the archive's bytes ("" key when it failed).
func backupOnce(t *testing.T, d *deployment, requestIDs ...string) (map[string]any, string, []byte) {
	t.Helper()
	stop := d.run()
	defer stop()
	if len(requestIDs) == 0 {
		requestIDs = []string{NewRequestID()}
	}
	var id string
	for _, rid := range requestIDs {
		res := d.schedule(scheduledInput(t), rid)
		if id != "" && res.JobID != id {
			t.Fatalf("a repeated start created job %s besides %s", res.JobID, id)
		}
		id = res.JobID
	}
	job := d.wait(events.KindBackup, id, 3*time.Minute)
	// Nothing is left behind: the last check ends its chain when it comes.
	d.drain(time.Minute)
	if job["state"] != "done" {
		return job, "", nil
	}
	key := job["archive"].(map[string]any)["key"].(string)
	return job, key, d.object(key)
}

// TestE2EBackupFaults runs the same backup undisturbed and under faults,
// each on a fresh stack against one seeded deployment, with fixed clocks:
// the archive must come out byte-identical whatever happened on the way.
func TestE2EBackupFaults(t *testing.T) {
	gate(t)
	src := newTarget(t, true)
	src.fingerprint(t) // wakes the DOs so Edge-mode enumeration can name them

	_, wantKey, want := backupOnce(t, deploy(t, src, deployOptions{}))
	if wantKey == "" || len(want) == 0 {
		t.Fatal("the undisturbed backup failed")
	}

	t.Run("WorkerKilledMidTask", func(t *testing.T) {
		d := deploy(t, src, deployOptions{})
		// The first object download of the storage range stalls past the
		// deadline of the invocation running it, which is cut short.
		src.emu.SetFault("dump-storage:get", edgebasetest.Fault{Latency: 4 * time.Second, FirstN: 1})
		defer src.emu.ClearFaults()
		var killed atomic.Bool
		d.workerPoller.Before = func(ctx context.Context, ev awsevents.SQSEvent) (context.Context, context.CancelFunc) {
			for _, r := range ev.Records {
				if strings.Contains(r.Body, `"kind":"storage"`) && killed.CompareAndSwap(false, true) {
					return context.WithTimeout(ctx, 2*time.Second)
				}
			}
			return ctx, func() {}
		}
		_, key, got := backupOnce(t, d)
		if !killed.Load() || !strings.Contains(d.logs.String(), "cut short by the deadline") {
			t.Fatalf("no worker was cut short by its deadline")
		}
		if key != wantKey || !bytes.Equal(got, want) {
			t.Fatalf("archive %s (%d bytes) differs from the undisturbed %s (%d bytes)", key, len(got), wantKey, len(want))
		}
		if _, _, f := d.workerPoller.Stats(); f == 0 {
			t.Fatal("the killed invocation reported no failed records")
		}
	})

	t.Run("DuplicateDelivery", func(t *testing.T) {
		// Every message delivered twice, to three concurrent invocations
		// of each function, with clocks that advance: the archive's name
		// and timestamp come from the job's start, and its content must
		// match the undisturbed run's and its own manifest.
		d := deploy(t, src, deployOptions{now: advancingNow()})
		d.concurrency = 3
		d.workerPoller.Duplicate = true
		d.controlPoller.Duplicate = true
		rid := NewRequestID() // an asynchronous invoke retried by Lambda keeps its request id
		_, key, got := backupOnce(t, d, rid, rid)
		if key == "" {
			t.Fatal("the backup failed")
		}
		verifyAgainstManifest(t, key, got, d.object(archive.ManifestName(key)))
		if diff := diffArchiveContent(t, want, got); diff != "" {
			t.Fatalf("archive %s differs in content from the undisturbed %s: %s", key, wantKey, diff)
		}
		if _, deleted, _ := d.workerPoller.Stats(); deleted < 2 {
			t.Fatalf("worker deleted %d messages", deleted)
		}
	})

	t.Run("TaskFailsPermanently", func(t *testing.T) {
		d := deploy(t, src, deployOptions{})
		src.emu.SetFault("dump-do", edgebasetest.Fault{Status: 403, Body: `{"code":403,"message":"forbidden"}`, FirstN: 1})
		defer src.emu.ClearFaults()
		stop := d.run()
		defer stop()
		res := d.schedule(scheduledInput(t), NewRequestID())
		job := d.wait(events.KindBackup, res.JobID, 3*time.Minute)
		if job["state"] != "failed" {
			t.Fatalf("job: %v", job)
		}
		errs := job["errors"].([]any)
		if len(errs) != 1 {
			t.Fatalf("errors: %v", errs)
		}
		je := errs[0].(map[string]any)
		unit, task := je["unit"].(string), je["task"].(string)
		if !strings.HasPrefix(unit, "DO ") || !strings.Contains(je["message"].(string), "forbidden") {
			t.Fatalf("the error does not name the failed unit: %v", je)
		}
		if units := job["units"].(map[string]any); units["failed"].(float64) != 1 {
			t.Fatalf("units: %v", units)
		}
		// The message of the failed task ends in the task DLQ.
		var dead []string
		for deadline := time.Now().Add(time.Minute); len(dead) == 0 && time.Now().Before(deadline); {
			for _, m := range receiveAll(t, d.clients.SQS(), d.stack.TaskDLQURL) {
				dead = append(dead, aws.ToString(m.Body))
			}
		}
		if len(dead) != 1 || !strings.Contains(dead[0], `"id":"`+task+`"`) {
			t.Fatalf("task DLQ holds %q, want the message of %s", dead, task)
		}
		// No archive under the final key (nor anywhere under the prefix).
		var archives []string
		if err := d.store().List(context.Background(), "backups/", func(i blob.Info) error { archives = append(archives, i.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(archives) != 0 {
			t.Fatalf("archives written for a failed job: %v", archives)
		}
		if m := d.metrics.String(); !strings.Contains(m, `"JobsFailed":1`) || !strings.Contains(m, `"UnitsFailed":1`) {
			t.Fatalf("no JobsFailed/UnitsFailed metric:\n%s", tail(m, 20))
		}
	})
}

// TestE2EWorkerLastAttemptCutShort: a task cut short by the deadline on
// its last delivery is recorded as failed (SQS dead-letters the message
// next), so its job fails instead of waiting forever.
func TestE2EWorkerLastAttemptCutShort(t *testing.T) {
	gate(t)
	src := newTarget(t, true)
	src.fingerprint(t)
	d := deploy(t, src, deployOptions{stack: StackOptions{MaxReceiveCount: 1}})
	if d.worker.MaxAttempts() != 1 {
		t.Fatalf("worker took MaxAttempts %d from the queue, want its maxReceiveCount 1", d.worker.MaxAttempts())
	}
	src.emu.SetFault("config", edgebasetest.Fault{Latency: 4 * time.Second})
	defer src.emu.ClearFaults()
	d.workerPoller.Before = func(ctx context.Context, ev awsevents.SQSEvent) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, 2*time.Second)
	}
	stop := d.run()
	defer stop()
	// The config task is the one whose endpoint stalls; the scheduler's
	// own config read happens before the fault matters (it is slow too,
	// but has no deadline here).
	res := d.schedule(`{"kind":"backup","options":{}}`, NewRequestID())
	job := d.wait(events.KindBackup, res.JobID, 2*time.Minute)
	if job["state"] != "failed" {
		t.Fatalf("job: %v", job)
	}
	found := false
	for _, e := range job["errors"].([]any) {
		found = found || strings.Contains(e.(map[string]any)["message"].(string), "Lambda deadline")
	}
	if !found {
		t.Fatalf("errors do not tell the deadline: %v", job["errors"])
	}
}

// verifyAgainstManifest checks an archive against its manifest (size,
// SHA-256, members) as `backup verify` does.
func verifyAgainstManifest(t *testing.T, key string, data, manifest []byte) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), filepath.Base(key))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(archive.ManifestName(tmp), manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Verify(context.Background(), tmp); err != nil {
		t.Fatalf("%s does not match its manifest: %v", key, err)
	}
}

// diffArchiveContent compares two .tar.gz archives member by member,
// ignoring backup.json's timestamp (the job's start time); it returns ""
// when they hold the same data.
func diffArchiveContent(t *testing.T, a, b []byte) string {
	t.Helper()
	ma, mb := archiveMembers(t, a), archiveMembers(t, b)
	if len(ma) != len(mb) {
		return fmt.Sprintf("%d members against %d", len(ma), len(mb))
	}
	for i := range ma {
		if ma[i].name != mb[i].name {
			return fmt.Sprintf("member %d is %s against %s", i, ma[i].name, mb[i].name)
		}
		if !bytes.Equal(ma[i].data, mb[i].data) {
			return fmt.Sprintf("member %s differs", ma[i].name)
		}
	}
	return ""
}

type member struct {
	name string
	data []byte
}

func archiveMembers(t *testing.T, data []byte) []member {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "backup.json" {
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatalf("backup.json: %v", err)
			}
			delete(doc, "timestamp")
			if b, err = json.Marshal(doc); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, member{h.Name, b})
	}
}
