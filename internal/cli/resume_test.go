package cli

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// jobFiles counts the plan's tasks and the recorded task outcomes of the
// only job staged under out.
func jobFiles(t *testing.T, out string) (tasks, statuses int) {
	t.Helper()
	plans, _ := filepath.Glob(filepath.Join(out, ".edgevault", "jobs", "*", "plan", "tasks.ndjson"))
	if len(plans) != 1 {
		return 0, 0
	}
	f, err := os.Open(plans[0])
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		tasks++
	}
	st, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(plans[0])), "done", "*", "*.json"))
	return tasks, len(st)
}

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dumpsOf(e *edgebasetest.Emulator) map[string]int {
	n := map[string]int{}
	for _, r := range e.RequestsTo("dump-do") {
		n[r.Fields["doName"]]++
	}
	return n
}

// TestCreateInterruptedThenResumed: cancelling a running backup (Ctrl-C)
// exits non-zero and writes no archive; --resume then finishes the same
// job without dumping again what was already stored.
func TestCreateInterruptedThenResumed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	const slow = "workspace:ws-3"
	src.emu.SetFault("dump-do", edgebasetest.Fault{Latency: time.Minute, Match: func(r edgebasetest.Request) bool { return r.Fields["doName"] == slow }})
	out := t.TempDir()
	args := append([]string{"backup", "create", "--output", out, "--include-storage", "--range-keys", "60"}, conn(src.emu)...)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- cliRun(runCtx, t, args...) }()
	waitFor(t, "every task but the slow DO to finish", func() bool {
		tasks, statuses := jobFiles(t, out)
		return tasks > 0 && statuses == tasks-1
	})
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the CLI did not return after its context was cancelled")
	}
	if r.code == 0 || !strings.Contains(r.stderr, "interrupted") || !strings.Contains(r.stderr, "--resume") {
		t.Fatalf("interrupted backup: want a non-zero exit saying it was interrupted and how to resume:\n%s", r)
	}
	if a := archives(t, out); len(a) > 0 {
		t.Fatalf("an interrupted backup left archive files: %v", a)
	}
	first := dumpsOf(src.emu)
	gets := len(src.emu.RequestsTo("dump-storage:get"))

	src.emu.ClearFaults()
	r = cliRun(ctx, t, append([]string{"backup", "create", "--json", "--resume", "--output", out}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("resume failed:\n%s", r)
	}
	file, _ := r.jsonDoc(t)["file"].(string)
	if v := cliRun(ctx, t, "backup", "verify", file); v.code != 0 {
		t.Fatalf("the resumed archive does not verify:\n%s", v)
	}
	after := dumpsOf(src.emu)
	for name, n := range after {
		want := first[name]
		if name == slow {
			want++
		}
		if n != want {
			t.Errorf("DO %s dumped %d times in all (%d before resuming); want %d", name, n, first[name], want)
		}
	}
	if after[slow] != first[slow]+1 {
		t.Errorf("the interrupted DO was dumped %d times on resume; want once", after[slow]-first[slow])
	}
	if n := len(src.emu.RequestsTo("dump-storage:get")); n != gets {
		t.Errorf("resume downloaded %d objects again; want none (every storage range was stored)", n-gets)
	}
	for _, ep := range []string{"dump-d1", "dump-control-d1", "dump-data"} {
		if n := len(src.emu.RequestsTo(ep)); n != 1 {
			t.Errorf("%s called %d times across the interrupted run and the resume; want 1", ep, n)
		}
	}
	if r := cliRun(ctx, t, append([]string{"backup", "create", "--resume", "--output", out}, conn(src.emu)...)...); r.code == 0 {
		t.Errorf("a second --resume found something to resume:\n%s", r)
	}
}
