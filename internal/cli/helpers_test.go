package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// testRetry keeps the client's attempt count but not its backoff.
var testRetry = edgebase.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond, MaxRetryAfter: 10 * time.Millisecond}

// result is one CLI invocation.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// jsonDoc decodes stdout, which --json keeps to exactly one document.
func (r result) jsonDoc(t *testing.T) map[string]any {
	t.Helper()
	out := strings.TrimSpace(r.stdout)
	if strings.Count(out, "\n") != 0 {
		t.Fatalf("--json printed more than one line:\n%s", r)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, r)
	}
	return m
}

// cliRun runs the CLI in-process with a test environment (no terminal,
// work dir under t.TempDir, fast client retries).
func cliRun(ctx context.Context, t *testing.T, args ...string) result {
	t.Helper()
	return cliRunEnv(ctx, t, testEnv(t), args...)
}

func testEnv(t *testing.T) Env {
	return Env{
		Getenv:  func(string) string { return "" },
		WorkDir: t.TempDir(),
		// Persistent faults fail after the same number of attempts, only
		// without seconds of backoff between them.
		retry: &testRetry,
	}
}

func cliRunEnv(ctx context.Context, t *testing.T, env Env, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env.Stdout, env.Stderr = &stdout, &stderr
	code := Run(ctx, args, env)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// source is an emulator seeded with SeedDemo.
type source struct {
	emu  *edgebasetest.Emulator
	demo edgebasetest.DemoSummary
}

func newSource(t *testing.T, opts edgebasetest.Options) source {
	t.Helper()
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	emu := edgebasetest.NewTest(t, opts)
	demo, err := emu.SeedDemo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return source{emu: emu, demo: demo}
}

func newEmulator(t *testing.T, opts edgebasetest.Options) *edgebasetest.Emulator {
	t.Helper()
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	return edgebasetest.NewTest(t, opts)
}

// conn is the connection flags for an emulator, with state-dir discovery.
func conn(e *edgebasetest.Emulator) []string {
	return []string{"--url", e.URL(), "--service-key", e.ServiceKey(), "--state-dir", e.StateDir()}
}

func fingerprint(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, instances ...string) *edgebasetest.Fingerprint {
	t.Helper()
	// Its own client, whose connections are closed before the emulator
	// shuts down (a shared transport would keep them open).
	hc := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	t.Cleanup(hc.CloseIdleConnections)
	fp, err := edgebasetest.TakeFingerprint(ctx, e.URL(), edgebasetest.FingerprintOptions{ServiceKey: e.ServiceKey(), Instances: instances, Client: hc})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// backupTo runs backup create into a fresh directory and returns the
// archive path.
func backupTo(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, extra ...string) string {
	t.Helper()
	return backupInto(ctx, t, e, t.TempDir(), extra...)
}

// backupInto runs backup create into the directory out.
func backupInto(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, out string, extra ...string) string {
	t.Helper()
	args := append([]string{"backup", "create", "--json", "--output", out}, conn(e)...)
	r := cliRun(ctx, t, append(args, extra...)...)
	if r.code != 0 {
		t.Fatalf("backup create failed:\n%s", r)
	}
	doc := r.jsonDoc(t)
	file, _ := doc["file"].(string)
	if file == "" || filepath.Dir(file) != out {
		t.Fatalf("backup create reported file %q, want one in %s\n%s", file, out, r)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	return file
}

// archives lists files in dir that carry an archive's final name.
func archives(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), "edgebase-backup-") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// restoreWrites are the endpoints that change a target.
var restoreWrites = []string{"restore-control-d1", "restore-d1", "wipe-do", "restore-do", "restore-data", "restore-storage", "resync-users-public", "cleanup-plugin"}

// assertUntouched fails if e received any writing request, or if its
// fingerprint changed from before.
func assertUntouched(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, before *edgebasetest.Fingerprint, instances ...string) {
	t.Helper()
	for _, ep := range restoreWrites {
		if n := len(e.RequestsTo(ep)); n > 0 {
			t.Errorf("target received %d %s requests; want none", n, ep)
		}
	}
	if before != nil {
		if d := edgebasetest.Diff(before, fingerprint(ctx, t, e, instances...)); d != "" {
			t.Errorf("target changed:\n%s", d)
		}
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
