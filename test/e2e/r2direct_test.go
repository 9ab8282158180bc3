package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestE2ERoundTripR2Direct: the serverless round trip once with storage
// through R2 direct on both sides: the scheduler lists and the workers
// read the source's bucket through its S3 endpoint, and a restore writes
// and wipes the target's bucket through its own; the Worker's storage
// routes are never called, and the fingerprints are equal.
func TestE2ERoundTripR2Direct(t *testing.T) {
	gate(t)
	src := newTarget(t, true)
	want := src.fingerprint(t)
	srcS3, _, _ := src.emu.ServeS3(t)
	creds := `{"accessKeyId":"` + edgebasetest.S3AccessKeyID + `","secretAccessKey":"` + edgebasetest.S3SecretAccessKey + `"}`
	d := deploy(t, src, deployOptions{stack: StackOptions{R2Credentials: creds},
		override: map[string]string{lambdaenv.R2Endpoint: srcS3, lambdaenv.R2Bucket: src.emu.S3Bucket()}})

	stop := d.run()
	started := d.schedule(scheduledInput(t), NewRequestID())
	if started.JobID == "" || started.State != events.StateRunning {
		t.Fatalf("scheduler answered %+v", started)
	}
	job := d.wait(events.KindBackup, started.JobID, 3*time.Minute)
	stop()
	if job["state"] != "done" {
		t.Fatalf("backup job: %v", job)
	}
	if n := len(src.emu.RequestsTo("dump-storage")); n != 0 {
		t.Fatalf("%d dump-storage requests through the Worker, want none", n)
	}
	key := job["archive"].(map[string]any)["key"].(string)
	if !strings.HasSuffix(key, ".tar.gz") {
		t.Fatalf("archive %s", key)
	}

	dst := newTarget(t, false)
	dstS3, _, _ := dst.emu.ServeS3(t)
	r := deployOn(t, d.stack, dst, deployOptions{override: map[string]string{lambdaenv.R2Endpoint: dstS3, lambdaenv.R2Bucket: dst.emu.S3Bucket()}})
	stop = r.run()
	defer stop()
	status, body := r.call("POST", "/restores", `{"archive":"`+key+`","confirm":true,"skipSecrets":true}`, nil)
	if status != 202 {
		t.Fatalf("POST /restores: %d %v", status, body)
	}
	rjob := r.wait(events.KindRestore, body["id"].(string), 3*time.Minute)
	if rjob["state"] != "done" {
		t.Fatalf("restore job: %v", rjob)
	}
	if n := len(dst.emu.RequestsTo("restore-storage")); n != 0 {
		t.Fatalf("%d restore-storage requests through the Worker, want none", n)
	}
	if diff := edgebasetest.Diff(want, dst.fingerprint(t)); diff != "" {
		t.Fatalf("restored deployment differs from the original:\n%s", diff)
	}
}
