package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/drill"
	"github.com/edgevault/edgevault/pkg/provenance"
	kmssigner "github.com/edgevault/edgevault/pkg/provenance/kms"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// drillStack is the stack with a drill as infra synthesizes it: the
// drill function's environment and the drill alarms of the template.
type drillStack struct {
	namespace string
	alarms    map[string]map[string]any // by metric name
}

// synthDrillStack synthesizes the backup stack with a drill (the CDK app
// of infra/, run as `cdk synth` runs it) and reads the drill function's
// metrics namespace and the alarms watching the drill's metrics.
func synthDrillStack(t *testing.T) drillStack {
	t.Helper()
	assets, out := t.TempDir(), t.TempDir()
	for _, fn := range append(append([]string(nil), lambdaenv.Functions...), lambdaenv.Optional...) {
		if err := os.MkdirAll(filepath.Join(assets, fn), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(assets, fn, "bootstrap"), []byte("#!/bin/sh\n# "+fn+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctxJSON, _ := json.Marshal(map[string]any{"edgebaseUrl": "https://edgebase.example.com", "drillUrl": "https://scratch.example.com",
		"assetDir": assets, "stackName": "EvDrillE2E", "metricsNamespace": "EdgeVaultE2E"})
	cmd := exec.Command("go", "run", "./infra")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CDK_OUTDIR="+out, "CDK_CONTEXT_JSON="+string(ctxJSON), "CDK_DISABLE_CLI_TELEMETRY=true")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("synth (needs Node.js for the CDK's jsii runtime, as `make synth` does): %v\n%s", err, tail(string(b), 30))
	}
	b, err := os.ReadFile(filepath.Join(out, "EvDrillE2E.template.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Resources map[string]struct {
			Type       string         `json:"Type"`
			Properties map[string]any `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal(b, &tmpl); err != nil {
		t.Fatal(err)
	}
	st := drillStack{alarms: map[string]map[string]any{}}
	for _, r := range tmpl.Resources {
		switch r.Type {
		case "AWS::Lambda::Function":
			env, _ := r.Properties["Environment"].(map[string]any)
			vars, _ := env["Variables"].(map[string]any)
			if _, drills := vars[lambdaenv.DrillURL]; drills {
				st.namespace, _ = vars[lambdaenv.MetricsNamespace].(string)
			}
		case "AWS::CloudWatch::Alarm":
			if name, _ := r.Properties["MetricName"].(string); name == metrics.DrillFailed || name == metrics.LastProvenRestorableAge {
				st.alarms[name] = r.Properties
			}
		}
	}
	if st.namespace == "" || len(st.alarms) != 2 {
		t.Fatalf("synthesized stack: drill namespace %q, drill alarms %v", st.namespace, st.alarms)
	}
	return st
}

// breaches reports whether an alarm's comparison holds for v.
func breaches(t *testing.T, alarm map[string]any, v float64) bool {
	t.Helper()
	th, _ := alarm["Threshold"].(float64)
	switch alarm["ComparisonOperator"] {
	case "GreaterThanOrEqualToThreshold":
		return v >= th
	case "GreaterThanThreshold":
		return v > th
	}
	t.Fatalf("alarm comparison %v", alarm["ComparisonOperator"])
	return false
}

// alarmData returns the values of the metric an alarm watches from the
// EMF lines written: the alarm's namespace and metric name, and the
// dimension set of the alarm (none: EMF's rolled-up set).
func alarmData(t *testing.T, emf string, alarm map[string]any) []float64 {
	t.Helper()
	var out []float64
	sc := bufio.NewScanner(strings.NewReader(emf))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		aws, _ := line["_aws"].(map[string]any)
		dirs, _ := aws["CloudWatchMetrics"].([]any)
		for _, d := range dirs {
			dir := d.(map[string]any)
			if dir["Namespace"] != alarm["Namespace"] {
				continue
			}
			named := false
			for _, m := range dir["Metrics"].([]any) {
				named = named || m.(map[string]any)["Name"] == alarm["MetricName"]
			}
			rollup := false
			for _, set := range dir["Dimensions"].([]any) {
				rollup = rollup || (len(set.([]any)) == 0 && alarm["Dimensions"] == nil)
			}
			if v, ok := line[alarm["MetricName"].(string)].(float64); ok && named && rollup {
				out = append(out, v)
			}
		}
	}
	return out
}

// sabotagedProxy serves the scratch deployment; once on, it flips a byte
// of every storage object read back (the scratch marker excepted), as a
// target whose restore corrupted the objects would.
func sabotagedProxy(t *testing.T, target string) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	on := &atomic.Bool{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		q := resp.Request.URL
		if !on.Load() || resp.StatusCode != http.StatusOK || !strings.Contains(q.Path, "dump-storage") ||
			!strings.Contains(q.RawQuery, "action=get") || strings.Contains(q.RawQuery, "edgevault-drill") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if len(b) > 0 {
			b[0] ^= 0xff
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	srv := httptest.NewServer(rp) // 127.0.0.1
	t.Cleanup(srv.Close)
	return srv, on
}

// TestE2EDrill: on moto and the emulators, with the stack's KMS signing
// key, a backup's manifest is signed by the assembler; the scheduled drill
// restores it into a scratch deployment, records a signed passing
// <archive>.drill.json, and emits the metrics of the synthesized stack's
// drill alarms: DrillFailed 0 and an age below the threshold; the api
// shows provenAt. Then the scratch deployment is sabotaged: the drill
// fails, names the objects, and the DrillFailed value the alarm watches
// breaches its threshold.
func TestE2EDrill(t *testing.T) {
	gate(t)
	ctx := context.Background()
	stack := synthDrillStack(t)
	clients := motoserver.Clients(t)
	kc := clients.KMS()
	key, err := kc.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	keyARN := aws.ToString(key.KeyMetadata.Arn)

	src := newTarget(t, true)
	src.fingerprint(t)
	d := deploy(t, src, deployOptions{stack: StackOptions{MetricsNamespace: stack.namespace}, override: map[string]string{lambdaenv.SigningKeyARN: keyARN}})
	stop := d.run()
	started := d.schedule(scheduledInput(t), NewRequestID())
	job := d.wait(events.KindBackup, started.JobID, 3*time.Minute)
	stop()
	if job["state"] != "done" {
		t.Fatalf("backup: %v", job)
	}
	archiveKey := job["archive"].(map[string]any)["key"].(string)
	signer, err := kmssigner.New(ctx, kc, keyARN)
	if err != nil {
		t.Fatal(err)
	}
	man, err := archive.DecodeManifest(bytes.NewReader(d.object(archive.ManifestName(archiveKey))))
	if err != nil {
		t.Fatal(err)
	}
	if err := provenance.Verify(man, signer.PublicKey()); err != nil {
		t.Fatalf("the assembler's manifest signature: %v", err)
	}

	scratch := newTarget(t, false)
	proxy, sabotage := sabotagedProxy(t, scratch.emu.URL())
	secret, err := clients.SecretsManager().CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(motoserver.Name(t, "drill-key")), SecretString: aws.String(scratch.emu.ServiceKey())})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := d.stack.Config(lambdaenv.Drill, map[string]string{lambdaenv.DrillURL: proxy.URL,
		lambdaenv.DrillKeySecret: aws.ToString(secret.ARN), lambdaenv.SigningKeyARN: keyARN, lambdaenv.AWSEndpoint: motoserver.Config(t).Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	cfg.AWS = motoserver.Config(t)
	cfg.DrillWorkDir = t.TempDir()
	cfg, deps, err := serverless.AWSDeps(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	emf := &syncBuffer{}
	fn, err := serverless.NewDrill(cfg, serverless.Runtime{Now: advancingNow(), Logs: d.logs, Metrics: emf}, deps)
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(in string) serverless.DrillResult {
		t.Helper()
		var input serverless.DrillInput
		if err := json.Unmarshal([]byte(in), &input); err != nil {
			t.Fatal(err)
		}
		ictx, cancel := context.WithTimeout(lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()}), 15*time.Minute)
		defer cancel()
		res, err := fn.Handle(ictx, input)
		if err != nil {
			t.Fatalf("drill: %v", err)
		}
		return res
	}

	// The scheduled drill (the rule's input is {}).
	res := invoke(`{}`)
	if !res.Passed || res.Archive != archiveKey || res.LastProven != archiveKey {
		t.Fatalf("drill: %+v", res)
	}
	var rep drill.Report
	if err := json.Unmarshal(d.object(drill.ReportName(archiveKey)), &rep); err != nil {
		t.Fatal(err)
	}
	sig := rep.Signature
	rep.Signature = nil
	if !rep.Passed || rep.Objects == 0 || rep.DOs == 0 || sig == nil || rep.ArchiveSHA256 != man.SHA256 {
		t.Fatalf("report: passed %v, %d objects, %d DOs, signature %v", rep.Passed, rep.Objects, rep.DOs, sig)
	}
	if err := provenance.VerifyReport("drill report", &rep, sig, signer.PublicKey()); err != nil {
		t.Fatalf("the drill report's signature: %v", err)
	}
	failed, age := stack.alarms[metrics.DrillFailed], stack.alarms[metrics.LastProvenRestorableAge]
	if got := alarmData(t, emf.String(), failed); len(got) != 1 || breaches(t, failed, got[0]) {
		t.Fatalf("DrillFailed data after a passed drill: %v (alarm %v)", got, failed)
	}
	if got := alarmData(t, emf.String(), age); len(got) != 1 || breaches(t, age, got[0]) {
		t.Fatalf("age data after a passed drill: %v (alarm %v)", got, age)
	}
	if st, body := d.call("GET", "/backups/"+started.JobID, "", nil); st != 200 || body["provenAt"] == nil {
		t.Fatalf("GET /backups/%s: %d %v", started.JobID, st, body)
	}
	// The hourly rule: the age only.
	if res := invoke(lambdaenv.DrillAgeInput); res.Archive != "" || res.LastProven != archiveKey {
		t.Fatalf("age run: %+v", res)
	}
	if got := alarmData(t, emf.String(), age); len(got) != 2 {
		t.Fatalf("age data after the hourly run: %v", got)
	}

	// Sabotaged scratch deployment.
	sabotage.Store(true)
	res = invoke(`{}`)
	if res.Passed || res.Differences == 0 || !strings.Contains(res.Error, "differences") {
		t.Fatalf("sabotaged drill: %+v", res)
	}
	rep = drill.Report{}
	if err := json.Unmarshal(d.object(drill.ReportName(archiveKey)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Passed || len(rep.Differences) == 0 || !strings.HasPrefix(rep.Differences[0], "object ") {
		t.Fatalf("sabotaged report: %v", rep.Differences)
	}
	got := alarmData(t, emf.String(), failed)
	if len(got) != 2 || !breaches(t, failed, got[1]) {
		t.Fatalf("DrillFailed data after a failed drill: %v (alarm %v): the alarm would not fire", got, failed)
	}
	// No archive is proven any more: the age stops, and the age alarm
	// treats the silence as breaching.
	if got := alarmData(t, emf.String(), age); len(got) != 2 || age["TreatMissingData"] != "breaching" {
		t.Fatalf("age data after a failed drill: %v (alarm %v)", got, age)
	}
	if st, body := d.call("GET", "/backups/"+started.JobID, "", nil); st != 200 || body["provenAt"] != nil {
		t.Fatalf("GET /backups/%s after a failed drill: %d %v", started.JobID, st, body)
	}
}
