package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// --progress json writes progress events to stderr, one JSON document a
// line, ending with an "end" event that counts every unit; stdout keeps
// the single --json result.
func TestProgressJSON(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	r := cliRun(ctx, t, append([]string{"backup", "create", "--json", "--progress", "json", "--include-storage", "--output", t.TempDir()}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("create failed:\n%s", r)
	}
	r.jsonDoc(t)
	var last progressEvent
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var ev progressEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Event == "" {
			t.Fatalf("stderr line %q is not a progress event (%v)", line, err)
		}
		n++
		last = ev
	}
	if n < 2 || last.Event != "end" || last.Label != "backup" || last.Total == 0 || last.Done != last.Total || last.Bytes == 0 || last.Failed != 0 {
		t.Fatalf("%d events, last %+v; want progress then an end event counting every unit", n, last)
	}
}

// On a terminal the bar (mpb) shows units, bytes and the end.
func TestProgressBar(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	env := testEnv(t)
	env.IsTerminal = func(any) bool { return true }
	r := cliRunEnv(ctx, t, env, append([]string{"backup", "create", "--output", t.TempDir()}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("create failed:\n%s", r)
	}
	if !strings.Contains(r.stderr, "backup ") || !strings.Contains(r.stderr, " units") || !strings.Contains(r.stderr, "done") {
		t.Fatalf("no progress bar on stderr:\n%q", r.stderr)
	}
	// --progress none: nothing on stderr.
	r = cliRunEnv(ctx, t, env, append([]string{"backup", "create", "--progress", "none", "--output", t.TempDir()}, conn(src.emu)...)...)
	if r.code != 0 || strings.Contains(r.stderr, "units") {
		t.Fatalf("--progress none:\n%s", r)
	}
}

// Shell completion comes from cobra; the README documents it.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef edgevault", "fish": "fish completion"} {
		r := cliRun(testContext(t), t, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "edgevault") {
			t.Errorf("completion %s: exit %d, %d bytes", shell, r.code, len(r.stdout))
		}
	}
}
