package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func near(t *testing.T, name string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func TestCFSecondsPacesAboveTheLimit(t *testing.T) {
	near(t, "11 calls", cfSeconds(11, 0.5, 1200, 300), 5.5)
	// 2,400 calls: the second 1,200 wait for the window, 0.25 s each.
	near(t, "2400 calls", cfSeconds(2400, 0.01, 1200, 300), 300)
	near(t, "2400 slow calls", cfSeconds(2400, 0.5, 1200, 300), 1200)
}

func TestRampSeconds(t *testing.T) {
	// Already at the cap: plain division.
	secs, capAt := rampSeconds(100, 10, 300, 10)
	near(t, "at cap", secs, 10)
	near(t, "cap at", capAt, 0)
	// 5 → 10 at 5/s takes 1 s and does 7.5 instance-seconds of work.
	secs, capAt = rampSeconds(7.5, 5, 300, 10)
	near(t, "ramp only", secs, 1)
	near(t, "cap at 1s", capAt, 1)
	secs, _ = rampSeconds(107.5, 5, 300, 10)
	near(t, "ramp then cap", secs, 11)
	// Inside the ramp: 5t + 2.5t² = 3.125 at t = 0.5.
	secs, _ = rampSeconds(3.125, 5, 300, 10)
	near(t, "half ramp", secs, 0.5)
}

func TestComposeParts(t *testing.T) {
	const mib = 1 << 20
	if n := composeParts([]float64{6 * mib, 7 * mib}, 5*mib); n != 2 {
		t.Errorf("two large members: %d parts, want 2", n)
	}
	// 1,000 members of 1 MiB merge into parts of 5 MiB.
	small := make([]float64, 1000)
	for i := range small {
		small[i] = mib
	}
	if n := composeParts(small, 5*mib); n != 200 {
		t.Errorf("1000 x 1 MiB: %d parts, want 200", n)
	}
	// 3 MiB pending, then 10 MiB: topped up to 5 MiB, the 8 MiB rest copied.
	if n := composeParts([]float64{3 * mib, 10 * mib}, 5*mib); n != 2 {
		t.Errorf("top-up: %d parts, want 2", n)
	}
}

func TestSimulateCountsAndStages(t *testing.T) {
	p := DefaultParams()
	p.DOs, p.Objects = 1000, 10000
	p.AssemblerPrefetch = 1
	r, err := Simulate(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ranges != 10 || r.Tasks != 1014 || r.CFCalls != 2 {
		t.Fatalf("ranges %d, tasks %d, CF calls %d; want 10, 1014, 2", r.Ranges, r.Tasks, r.CFCalls)
	}
	sum := 0.0
	for _, s := range r.Stages {
		sum += s.Seconds
	}
	near(t, "total", r.Total, sum)
	// The assembler: pass 1 reads 2 x (ranges + 1), the document 2 x tasks,
	// the streamed archive every member + head + trailer, then 6 PUTs.
	docBytes := 1000*p.DODumpBytes + 10000*p.ObjectEntryBytes
	want := (2*11+2*1014)*p.S3Get + docBytes/p.S3Throughput + 12*p.S3Get + (docBytes+10000*p.ObjectBytes)/p.S3Throughput + 6*p.S3Put
	near(t, "assembler", r.AssemblerSecs, want)
	// Reading 32 at a time divides the reads, nothing else.
	p.AssemblerPrefetch = 32
	q, _ := Simulate(p)
	near(t, "prefetch", q.AssemblerSecs, want-(2*11+2*1014)*p.S3Get*(1-1.0/32))
}

// With the assembler's read-ahead the default deployment is backed up
// within the target, the workers binding; reading one record at a time
// the assembler outlives its invocation and the backup never finishes.
func TestDefaultDeploymentAndTheAssemblersReadAhead(t *testing.T) {
	r, err := Simulate(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Fails) != 0 || r.Total > DefaultParams().TargetSeconds || !strings.HasPrefix(r.Binding, "workers") {
		t.Errorf("total %.0f s, binding %q, fails %v: want the target met, the workers binding", r.Total, r.Binding, r.Fails)
	}
	p := DefaultParams()
	p.AssemblerPrefetch = 1
	seq, err := Simulate(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(seq.Fails) == 0 || !strings.Contains(seq.Binding, "assembl") {
		t.Errorf("sequential: binding %q, fails %v: want the assembler's invocation limit", seq.Binding, seq.Fails)
	}
	var out bytes.Buffer
	print(&out, p, seq)
	if !strings.Contains(out.String(), "what would change it") {
		t.Errorf("no alternatives printed:\n%s", out.String())
	}
}

func TestCost(t *testing.T) {
	p := DefaultParams()
	r, err := Simulate(p)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Cost
	near(t, "lambda", c.Lambda, c.LambdaGBs*0.0000133334+c.LambdaRequests*0.20/1e6)
	near(t, "s3", c.S3, c.S3Puts*0.005/1000+c.S3Gets*0.0004/1000)
	near(t, "sqs", c.SQS, c.SQSRequests*0.40/1e6)
	near(t, "total", c.Total, c.Lambda+c.S3+c.SQS+c.Storage)
	// Every task writes a part and an outcome and reads three records.
	if c.S3Puts < float64(2*r.Tasks) || c.S3Gets < float64(3*r.Tasks) {
		t.Errorf("S3 requests %v PUT, %v GET for %d tasks", c.S3Puts, c.S3Gets, r.Tasks)
	}
}

func TestFlags(t *testing.T) {
	p, err := parseFlags([]string{"-dos", "5", "-assembler-prefetch", "4", "-target", "10m"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if p.DOs != 5 || p.AssemblerPrefetch != 4 || p.TargetSeconds != 600 || p.Objects != 1000000 {
		t.Errorf("%+v", p)
	}
	if _, err := parseFlags([]string{"-task-batch-size", "0"}, &bytes.Buffer{}); err == nil {
		t.Error("batch size 0 accepted")
	}
}
