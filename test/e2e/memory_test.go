package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// TestE2EAssemblerMemory measures the assembler's peak RSS and time for
// backups with 100 MiB and 1 GiB of R2 storage (EDGEVAULT_MEASURE_SIZES,
// in MiB), streaming the archive through itself and composing it with
// UploadPartCopy. Workers build the parts in this process; the assembly
// runs in a child process (this test binary, TestE2EAssemblerChild) under
// /usr/bin/time -v. It needs EDGEVAULT_MEASURE=1: a gigabyte through moto
// takes minutes.
func TestE2EAssemblerMemory(t *testing.T) {
	gate(t)
	if os.Getenv("EDGEVAULT_MEASURE") != "1" {
		t.Skip("set EDGEVAULT_MEASURE=1 to measure the assembler's memory")
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Skip("needs /usr/bin/time (apt-get install time)")
	}
	sizes := []int{100, 1024}
	if v := os.Getenv("EDGEVAULT_MEASURE_SIZES"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	const objectMiB = 4
	var report []string
	peaks := map[string][]int64{} // per mode, in the order of sizes
	for _, mib := range sizes {
		tg := newTarget(t, false)
		objs := make([]edgebasetest.Object, 0, mib/objectMiB)
		for i := range mib / objectMiB {
			objs = append(objs, edgebasetest.Object{Key: fmt.Sprintf("uploads/big/%05d.bin", i), Size: objectMiB << 20, ContentType: "application/octet-stream"})
		}
		if err := tg.emu.AddObjects(context.Background(), objs...); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []struct {
			name    string
			compose int64
		}{{"stream", -1}, {"compose", 0}} {
			d := deploy(t, tg, deployOptions{})
			jobID, took := d.runWorkersOnly(t)
			rss, wall, out := d.assembleInChild(t, jobID, mode.compose)
			size := ""
			if m := assembled.FindStringSubmatch(out); m != nil {
				size = m[1]
			}
			line := fmt.Sprintf("%5d MiB storage, %-7s: archive %s bytes, assembler max RSS %6.1f MiB, wall %s (workers %s)", mib, mode.name, size, float64(rss)/1024, wall, took.Round(time.Second))
			t.Log(line)
			peaks[mode.name] = append(peaks[mode.name], rss)
			report = append(report, line)
			if !strings.Contains(out, "ASSEMBLED done") {
				t.Fatalf("assembly did not finish:\n%s", tail(out, 30))
			}
		}
	}
	t.Logf("assembler memory:\n%s", strings.Join(report, "\n"))
	// Flat: the largest archive may not need much more than the smallest.
	for mode, p := range peaks {
		if len(p) > 1 && p[len(p)-1] > p[0]+64<<10 {
			t.Errorf("%s: peak RSS grows with the archive: %d KiB -> %d KiB", mode, p[0], p[len(p)-1])
		}
	}
}

// runWorkersOnly runs a backup with storage until every task is done,
// without the assembler.
func (d *deployment) runWorkersOnly(t *testing.T) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.workerPoller.Run(ctx) }()
	defer func() { cancel(); <-done }()
	res := d.schedule(`{"kind":"backup","options":{"includeStorage":true}}`, NewRequestID())
	jobs := d.jobs()
	for deadline := time.Now().Add(20 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		nFailed, failures, err := jobs.Failures(context.Background(), res.JobID, 5)
		if err != nil {
			t.Fatal(err)
		}
		if nFailed > 0 {
			t.Fatalf("a task failed: %+v", failures)
		}
		done, err := jobs.CountDone(context.Background(), res.JobID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if done == res.Tasks {
			return res.JobID, time.Since(start)
		}
	}
	t.Fatal("workers did not finish")
	return "", 0
}

var assembled = regexp.MustCompile(`ASSEMBLED done \S+ (\d+) bytes`)
var maxRSS = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)
var wallClock = regexp.MustCompile(`Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)`)

// assembleInChild assembles job in a child process and returns its peak
// RSS in KiB, its wall time and its output.
func (d *deployment) assembleInChild(t *testing.T, job string, composeAbove int64) (int64, string, string) {
	t.Helper()
	aws := motoserver.Config(t)
	cmd := exec.Command("/usr/bin/time", "-v", os.Args[0], "-test.run", "^TestE2EAssemblerChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "E2E_ASSEMBLER_CHILD=1", "E2E_JOB="+job, "E2E_COMPOSE_ABOVE="+strconv.FormatInt(composeAbove, 10),
		"AWS_ACCESS_KEY_ID="+aws.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+aws.SecretAccessKey.Reveal(), "AWS_REGION="+aws.Region)
	for k, v := range d.stack.Env(lambdaenv.Assembler, map[string]string{lambdaenv.AWSEndpoint: aws.Endpoint, lambdaenv.S3PathStyle: "true"}) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("assembler child: %v\n%s", err, tail(string(out), 40))
	}
	m := maxRSS.FindSubmatch(out)
	w := wallClock.FindSubmatch(out)
	if m == nil || w == nil {
		t.Fatalf("no /usr/bin/time figures:\n%s", out)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb, string(w[1]), string(out)
}

// TestE2EAssemblerChild is the child process of TestE2EAssemblerMemory: the
// assembler function, configured from the environment as in Lambda,
// handling check messages of one job until it is finished.
func TestE2EAssemblerChild(t *testing.T) {
	if os.Getenv("E2E_ASSEMBLER_CHILD") != "1" {
		t.Skip("child process of TestE2EAssemblerMemory")
	}
	cfg, err := serverless.ConfigFromEnv(lambdaenv.Assembler, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ComposeAbove, err = strconv.ParseInt(os.Getenv("E2E_COMPOSE_ABOVE"), 10, 64); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg, deps, err := serverless.AWSDeps(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := serverless.NewAssembler(cfg, serverless.Runtime{Now: fixedNow}, deps)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := pipeline.NewJobs(deps.Store, cfg.StagingPrefix, cfg.ArchivePrefix, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		// Each check carries the sequence number the job expects next, as
		// the chain of checks does.
		job, err := jobs.ReadJob(ctx, os.Getenv("E2E_JOB"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := events.Envelope{Check: &events.Check{Job: job.ID, Seq: job.Check}}.Encode()
		ev := awsevents.SQSEvent{Records: []awsevents.SQSMessage{{MessageId: "m-1", Body: string(body), Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}}
		ictx, cancel := context.WithTimeout(lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()}), 15*time.Minute)
		resp, err := h.Handle(ictx, ev)
		cancel()
		if err != nil || len(resp.BatchItemFailures) > 0 {
			t.Fatalf("check: %+v %v", resp, err)
		}
		st, err := jobs.ReadJob(ctx, os.Getenv("E2E_JOB"))
		if err != nil {
			t.Fatal(err)
		}
		if st.State.Terminal() {
			fmt.Printf("ASSEMBLED %s %s %d bytes\n", st.State, st.Archive, st.Summary.ArchiveSize)
			return
		}
	}
	t.Fatal("job not finished after 5 checks")
}
