package serverless

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/drill"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/sensitive"
	"github.com/edgevault/edgevault/pkg/serverless/lambdatest"
)

// backupThroughFunctions runs a backup job through the scheduler, worker
// and assembler functions (the assembler signing manifests with signer)
// and returns its archive key.
func (tb *testbed) backupThroughFunctions(ctx context.Context, t *testing.T, id string, signer provenance.Signer) string {
	t.Helper()
	d := tb.deps()
	d.EdgeBase, d.Enum, d.Signer = nil, nil, signer
	asm, err := NewAssembler(tb.config(lambdaenv.Assembler), tb.runtime(), d)
	if err != nil {
		t.Fatal(err)
	}
	worker := &lambdatest.EventSource{Queue: tb.tasks, Handler: tb.worker(t, tb.config(lambdaenv.Worker)).Handle, BatchSize: 10}
	assembler := &lambdatest.EventSource{Queue: tb.control, Handler: asm.Handle, BatchSize: 1}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, src := range []*lambdatest.EventSource{worker, assembler} {
		wg.Go(func() {
			if err := src.Run(runCtx); err != nil {
				t.Error(err)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	tb.startBackup(ctx, t, id, events.Options{IncludeStorage: true})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		job := tb.job(ctx, t, id)
		if job.State == events.StateDone {
			return job.Archive
		}
		if job.State.Terminal() || time.Now().After(deadline) {
			t.Fatalf("backup %s: %s %v", id, job.State, job.Errors)
		}
	}
}

// sabotage sits between the drill and its scratch deployment: once on,
// it flips a byte of every storage object the drill reads back, as a
// target whose restore silently corrupted the objects would.
type sabotage struct {
	base http.RoundTripper
	on   atomic.Bool
}

func (s *sabotage) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(req)
	if err != nil || !s.on.Load() || resp.StatusCode != http.StatusOK ||
		!strings.Contains(req.URL.Path, "dump-storage") || !strings.Contains(req.URL.RawQuery, "action=get") ||
		strings.Contains(req.URL.RawQuery, "edgevault-drill") { // the scratch marker
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		b[0] ^= 0xff
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// TestDrillFunction: a scheduled drill restores the newest archive into
// the scratch emulator, records a signed passing report beside it, emits
// DrillFailed 0 and LastProvenRestorableAge, and GET /backups/{id} shows
// provenAt; the hourly age run only emits the age; a drill against the
// archive's own source is refused without taking back the proof; a
// target that hands back other bytes fails the drill, names the objects,
// and the age metric stops.
func TestDrillFunction(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	dir := t.TempDir()
	signer, err := provenance.GenerateKey(filepath.Join(dir, "drill.key"), filepath.Join(dir, "drill.pub"))
	if err != nil {
		t.Fatal(err)
	}
	key := tb.backupThroughFunctions(ctx, t, "b1", signer)
	man, err := backup.ReadManifest(ctx, tb.store, key)
	if err != nil || man.Signature == nil || man.SourceURL != tb.emu.URL() {
		t.Fatalf("manifest: %+v %v", man, err)
	}
	if err := provenance.Verify(man, signer.Public()); err != nil {
		t.Fatalf("the assembler's signature: %v", err)
	}

	scratch := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	sab := &sabotage{base: edgebase.DefaultTransport()}
	hc := &http.Client{Transport: sab}
	t.Cleanup(hc.CloseIdleConnections)
	client, err := edgebase.New(edgebase.Options{BaseURL: scratch.URL(), ServiceKey: sensitive.String(scratch.ServiceKey()), HTTPClient: hc,
		Retry: edgebase.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tb.config(lambdaenv.Drill)
	cfg.DrillURL, cfg.DrillKeySecret, cfg.DrillWorkDir = scratch.URL(), "drill-key", t.TempDir()
	deps := Deps{Store: tb.store, Scratch: client, ScratchEnum: &discovery.Enumerator{Client: client, StateDir: scratch.StateDir()}, Signer: signer}
	fn, err := NewDrill(cfg, tb.runtime(), deps)
	if err != nil {
		t.Fatal(err)
	}
	tb.clock.Advance(time.Hour)

	ictx, cancel := invocation(ctx, "drill-1", 5*time.Minute)
	defer cancel()
	res, err := fn.Handle(ictx, DrillInput{})
	if err != nil || !res.Passed || res.Archive != key || res.LastProven != key || res.LastProvenAge < 3600 {
		t.Fatalf("drill: %+v %v\n%s", res, err, tb.logs.buf.String())
	}
	rep, err := ReadDrillReport(ctx, tb.store, key)
	if err != nil || rep == nil || !rep.Passed || rep.Objects != 5 || rep.Users != 3 || rep.DOs == 0 || rep.Signature == nil {
		t.Fatalf("report: %+v %v", rep, err)
	}
	sig := rep.Signature
	rep.Signature = nil
	if err := provenance.VerifyReport("drill report", rep, sig, signer.Public()); err != nil {
		t.Fatalf("the report's signature: %v", err)
	}
	assertDrillMetrics(t, tb, cfg, []float64{0}, 1)

	api, err := NewAPI(tb.config(lambdaenv.API), tb.runtime(), Deps{Store: tb.store, Invoker: InvokerFunc(func(context.Context, events.StartRequest) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	_, body, _, err := api.get(ctx, events.KindBackup, "b1")
	if st, ok := body.(*JobStatus); err != nil || !ok || st.ProvenAt == nil || !st.ProvenAt.Equal(rep.FinishedAt) {
		t.Fatalf("GET /backups/b1: %+v %v", body, err)
	}
	// A report naming other bytes than the manifest proves nothing.
	rc, err := tb.store.Get(ctx, drill.ReportName(key))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(orig, []byte(rep.ArchiveSHA256), []byte(strings.Repeat("0", 64)), 1)
	if err := tb.store.Put(ctx, drill.ReportName(key), bytes.NewReader(forged)); err != nil {
		t.Fatal(err)
	}
	if _, body, _, err := api.get(ctx, events.KindBackup, "b1"); err != nil || body.(*JobStatus).ProvenAt != nil {
		t.Fatalf("GET /backups/b1 with a report of other bytes: %+v %v", body, err)
	}
	if err := tb.store.Put(ctx, drill.ReportName(key), bytes.NewReader(orig)); err != nil {
		t.Fatal(err)
	}

	// The hourly run: the age only.
	if res, err := fn.Handle(ictx, DrillInput{AgeOnly: true}); err != nil || res.Archive != "" || res.LastProven != key {
		t.Fatalf("age run: %+v %v", res, err)
	}
	assertDrillMetrics(t, tb, cfg, []float64{0}, 2)

	// The archive's own source as scratch target: refused; the proof
	// recorded stays.
	srcDrill, err := NewDrill(cfg, tb.runtime(), Deps{Store: tb.store, Scratch: tb.client, ScratchEnum: tb.enum})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := srcDrill.Handle(ictx, DrillInput{}); err != nil || res.Passed || !strings.Contains(res.Error, drill.ErrSourceTarget.Error()) || res.LastProven != key {
		t.Fatalf("drill into the source: %+v %v", res, err)
	}
	if rep, err := ReadDrillReport(ctx, tb.store, key); err != nil || !rep.Passed {
		t.Fatalf("the refusal changed the report: %+v %v", rep, err)
	}
	assertDrillMetrics(t, tb, cfg, []float64{0, 1}, 3)

	// A target that hands back other bytes.
	sab.on.Store(true)
	res, err = fn.Handle(ictx, DrillInput{})
	if err != nil || res.Passed || res.Differences != 5 || res.LastProven != "" || !strings.Contains(res.Error, "5 differences") {
		t.Fatalf("sabotaged drill: %+v %v", res, err)
	}
	rep, err = ReadDrillReport(ctx, tb.store, key)
	if err != nil || rep.Passed || len(rep.Differences) != 5 || !strings.Contains(rep.Differences[0], "object ") {
		t.Fatalf("sabotaged report: %+v %v", rep, err)
	}
	assertDrillMetrics(t, tb, cfg, []float64{0, 1, 1}, 3)
	if _, body, _, err := api.get(ctx, events.KindBackup, "b1"); err != nil || body.(*JobStatus).ProvenAt != nil {
		t.Fatalf("GET /backups/b1 after a failed drill: %+v %v", body, err)
	}
}

// assertDrillMetrics checks the DrillFailed values and the number of age
// data points emitted so far, in the namespace and with the dimensionless
// set the stack's alarms watch.
func assertDrillMetrics(t *testing.T, tb *testbed, cfg Config, failed []float64, ages int) {
	t.Helper()
	var got []float64
	for _, m := range tb.metrics.lines(t, DrillFailed) {
		checkEMF(t, m, cfg.MetricsNamespace, DrillFailed)
		got = append(got, m[DrillFailed].(float64))
	}
	if len(got) != len(failed) {
		t.Fatalf("DrillFailed values %v, want %v", got, failed)
	}
	for i := range got {
		if got[i] != failed[i] {
			t.Fatalf("DrillFailed values %v, want %v", got, failed)
		}
	}
	lines := tb.metrics.lines(t, LastProvenRestorableAge)
	for _, m := range lines {
		checkEMF(t, m, cfg.MetricsNamespace, LastProvenRestorableAge)
	}
	if len(lines) != ages {
		t.Fatalf("%d age data points, want %d", len(lines), ages)
	}
}

func checkEMF(t *testing.T, m map[string]any, namespace, name string) {
	t.Helper()
	aws, _ := m["_aws"].(map[string]any)
	dirs, _ := aws["CloudWatchMetrics"].([]any)
	if len(dirs) != 1 || m["level"] != "ERROR" {
		t.Fatalf("%s: %v", name, m)
	}
	d := dirs[0].(map[string]any)
	sets, _ := d["Dimensions"].([]any)
	rollup := false
	for _, s := range sets {
		rollup = rollup || len(s.([]any)) == 0
	}
	if d["Namespace"] != namespace || !rollup {
		t.Fatalf("%s: namespace %v, dimension sets %v", name, d["Namespace"], sets)
	}
}

// The drill function reads exactly its lambdaenv contract, and needs the
// scratch deployment and its key secret.
func TestDrillConfig(t *testing.T) {
	env := fullEnv()
	env[lambdaenv.DrillURL], env[lambdaenv.DrillKeySecret], env[lambdaenv.SigningKeyARN] = "https://scratch.example", "arn:drill", "arn:sign"
	testOnly := []string{lambdaenv.AWSEndpoint, lambdaenv.S3PathStyle, lambdaenv.LambdaEndpoint, lambdaenv.CloudflareAPIURL, "AWS_LAMBDA_LOG_LEVEL"}
	asked := map[string]bool{}
	c, err := ConfigFromEnv(lambdaenv.Drill, func(k string) string { asked[k] = true; return env[k] })
	if err != nil || c.DrillURL != "https://scratch.example" || c.DrillKeySecret != "arn:drill" || c.SigningKeyARN != "arn:sign" || c.EdgeBaseURL != "" {
		t.Fatalf("drill config: %+v %v", c, err)
	}
	if want := len(lambdaenv.Reads[lambdaenv.Drill]) + len(testOnly); len(asked) != want {
		t.Errorf("drill read %d variables, want %d: %v", len(asked), want, asked)
	}
	for _, name := range []string{lambdaenv.DrillURL, lambdaenv.DrillKeySecret} {
		if _, err := ConfigFromEnv(lambdaenv.Drill, func(k string) string {
			if k == name {
				return ""
			}
			return env[k]
		}); !errors.Is(err, ErrConfig) {
			t.Errorf("drill without %s: %v", name, err)
		}
	}
}

// A bucket without archives fails the drill (nothing is proven), records
// nothing and emits no age.
func TestDrillWithoutArchives(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	cfg := tb.config(lambdaenv.Drill)
	cfg.DrillURL, cfg.DrillKeySecret, cfg.DrillWorkDir = tb.emu.URL(), "drill-key", t.TempDir()
	scratch := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	client, err := edgebase.New(edgebase.Options{BaseURL: scratch.URL(), ServiceKey: sensitive.String(scratch.ServiceKey())})
	if err != nil {
		t.Fatal(err)
	}
	fn, err := NewDrill(cfg, tb.runtime(), Deps{Store: tb.store, Scratch: client})
	if err != nil {
		t.Fatal(err)
	}
	ictx, cancel := invocation(ctx, "drill-empty", time.Minute)
	defer cancel()
	res, err := fn.Handle(ictx, DrillInput{})
	if err != nil || res.Passed || !strings.Contains(res.Error, "no archive") || res.Report != "" {
		t.Fatalf("drill of an empty bucket: %+v %v", res, err)
	}
	assertDrillMetrics(t, tb, cfg, []float64{1}, 0)
}
