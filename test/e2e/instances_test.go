package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestE2EInstancesWithoutEdgeMode: a stack deployed without Cloudflare
// credentials cannot list dynamic DB instances. Its scheduler fails the
// job at planning, naming the block, rather than leave tenants out; with
// the instances setting (EDGEVAULT_INSTANCES) it backs them up.
func TestE2EInstancesWithoutEdgeMode(t *testing.T) {
	gate(t)
	src := newTarget(t, true)
	noEdge := map[string]string{lambdaenv.CloudflareAccount: ""}
	d := deploy(t, src, deployOptions{override: noEdge})
	input := strings.Replace(scheduledInput(t), `"includeStorage": true`, `"includeStorage": false`, 1)

	refused := d.schedule(input, NewRequestID())
	if refused.State != events.StateFailed || !strings.Contains(refused.Error, `"workspace"`) || refused.Tasks != 0 {
		t.Fatalf("without an instance source the scheduler answered %+v", refused)
	}

	listed := map[string]string{lambdaenv.CloudflareAccount: "", lambdaenv.Instances: strings.Join(edgebasetest.DemoInstances, ",")}
	r := deployOn(t, d.stack, src, deployOptions{override: listed})
	stop := r.run()
	defer stop()
	started := r.schedule(input, NewRequestID())
	if started.State != events.StateRunning {
		t.Fatalf("with instances listed the scheduler answered %+v", started)
	}
	job := r.wait(events.KindBackup, started.JobID, 3*time.Minute)
	if job["state"] != "done" {
		t.Fatalf("backup job: %v", job)
	}
	key := job["archive"].(map[string]any)["key"].(string)
	tmp := filepath.Join(t.TempDir(), filepath.Base(key))
	if err := os.WriteFile(tmp, r.object(key), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := archive.Verify(context.Background(), tmp)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var dos []string
	for _, dump := range sum.Dumps {
		if strings.HasPrefix(dump.Name, "workspace:") && dump.Rows > 0 {
			dos = append(dos, dump.Name)
		}
	}
	slices.Sort(dos)
	if !slices.Equal(dos, edgebasetest.DemoInstances) {
		t.Fatalf("instance DOs with rows in the archive: %v, want %v", dos, edgebasetest.DemoInstances)
	}
}
