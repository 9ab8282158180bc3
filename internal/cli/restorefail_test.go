package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestRestoreFailsClosed: a restore unit that fails after its retries
// stops the restore (no later step runs), exits non-zero, names the unit
// and says what state the target is in; nothing reports success.
func TestRestoreFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	cases := []struct {
		name     string
		endpoint string
		fault    edgebasetest.Fault
		unit     string
		state    []string // parts of the target state
		never    []string // endpoints no later step may call
	}{
		{
			name: "restore-do of one instance", endpoint: "restore-do", unit: "DO workspace:ws-2",
			fault: edgebasetest.Fault{Status: 500, Match: func(r edgebasetest.Request) bool { return r.Fields["doName"] == "workspace:ws-2" }},
			state: []string{"completed: control D1, auth D1, orphan DO wipe.", "partially done (stopped here): DB DOs.", "not started: data namespaces, storage wipe, storage objects"},
			never: []string{"restore-data", "restore-storage", "resync-users-public"},
		},
		{
			name: "restore-data", endpoint: "restore-data", unit: "namespace shared",
			fault: edgebasetest.Fault{Status: 503},
			state: []string{"completed: control D1, auth D1, orphan DO wipe, DB DOs.", "partially done (stopped here): data namespaces."},
			never: []string{"restore-storage", "resync-users-public"},
		},
		{
			name: "auth D1", endpoint: "restore-d1", unit: "auth D1",
			fault: edgebasetest.Fault{Status: 500},
			state: []string{"completed: control D1.", "partially done (stopped here): auth D1."},
			never: []string{"wipe-do", "restore-do", "restore-data", "restore-storage", "resync-users-public"},
		},
		{
			name: "orphan wipe", endpoint: "wipe-do", unit: "orphan wipe (2 DOs)",
			fault: edgebasetest.Fault{Status: 500, Match: func(r edgebasetest.Request) bool { return r.Fields["doName"] == junkOrphans[0] }},
			state: []string{"completed: control D1, auth D1.", "partially done (stopped here): orphan DO wipe."},
			never: []string{"restore-do", "restore-data", "restore-storage", "resync-users-public"},
		},
		{
			name: "storage put", endpoint: "restore-storage:put", unit: `object "uploads/日本語/ファイル.txt"`,
			fault: edgebasetest.Fault{Status: 500, Match: func(r edgebasetest.Request) bool { return r.Fields["key"] == "uploads/日本語/ファイル.txt" }},
			state: []string{"partially done (stopped here): storage objects.", "not started: users resync"},
			never: []string{"resync-users-public"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := newEmulator(t, edgebasetest.Options{})
			junkTarget(ctx, t, dst)
			dst.SetFault(tc.endpoint, tc.fault)
			r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", sa.tarball, "--yes", "--json"}, conn(dst)...)...)
			if r.code != ExitError {
				t.Fatalf("exit %d, want %d:\n%s", r.code, ExitError, r)
			}
			doc := r.jsonDoc(t)
			msg, _ := doc["message"].(string)
			if doc["status"] != "error" || doc["code"] != "backup_restore_failed" {
				t.Errorf("result %v", doc)
			}
			if !strings.Contains(msg, tc.unit) {
				t.Errorf("message does not name %s: %s", tc.unit, msg)
			}
			for _, s := range tc.state {
				if !strings.Contains(msg, s) {
					t.Errorf("message does not say %q: %s", s, msg)
				}
			}
			if failed, _ := doc["failed"].([]any); len(failed) == 0 {
				t.Errorf("no failed units listed: %v", doc)
			}
			if tc.endpoint == "wipe-do" {
				// Every orphan wipe is attempted before the failure counts
				// (spec 9.43).
				for _, o := range junkOrphans {
					if !slices.ContainsFunc(dst.RequestsTo("wipe-do"), func(q edgebasetest.Request) bool { return q.Fields["doName"] == o }) {
						t.Errorf("orphan %s was never wiped", o)
					}
				}
				if !strings.Contains(msg, "1 of 2 orphan wipes failed: "+junkOrphans[0]) {
					t.Errorf("message does not name the orphan that failed: %s", msg)
				}
			}
			// Nothing after the first failed call may belong to a later step.
			firstFail := 0
			for _, q := range dst.Requests() {
				if q.Endpoint == tc.endpoint && q.Status >= 500 {
					firstFail = q.Seq
					break
				}
			}
			if firstFail == 0 {
				t.Fatalf("the fault on %s never fired", tc.endpoint)
			}
			for _, q := range dst.Requests() {
				if q.Seq > firstFail && slices.ContainsFunc(tc.never, func(ep string) bool { return q.Endpoint == ep || strings.HasPrefix(q.Endpoint, ep+":") }) {
					t.Errorf("%s call (#%d) after the failure (#%d); a fatal step must stop every later one", q.Endpoint, q.Seq, firstFail)
				}
			}
		})
	}
}

// TestRestoreWarningOnlySteps: a failing _users_public resync or secrets
// write still ends in success, with a warning (spec 9.31), and secrets are
// written last, only when present and not skipped (9.36).
func TestRestoreWarningOnlySteps(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	env := testEnv(t)
	if err := os.WriteFile(filepath.Join(env.WorkDir, ".dev.vars"), []byte("JWT_USER_SECRET=user-secret\nSERVICE_KEY=source-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cliRunEnv(ctx, t, env, append([]string{"backup", "create", "--json", "--include-secrets", "--output", t.TempDir()}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("backup failed:\n%s", r)
	}
	file, _ := r.jsonDoc(t)["file"].(string)
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("archive with secrets: mode %v, %v; want 0600", st.Mode(), err)
	}

	t.Run("resync fails", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{})
		dst.SetFault("resync-users-public", edgebasetest.Fault{Status: 500})
		r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes", "--json", "--skip-secrets"}, conn(dst)...)...)
		if r.code != 0 {
			t.Fatalf("a failing resync failed the restore:\n%s", r)
		}
		doc := r.jsonDoc(t)
		if doc["status"] != "success" || !strings.Contains(r.stdout, "resync") {
			t.Errorf("want success with a resync warning: %v", doc)
		}
	})

	t.Run("secrets fail", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{})
		env := testEnv(t)
		// A directory where .dev.vars should be: writing secrets fails.
		if err := os.Mkdir(filepath.Join(env.WorkDir, ".dev.vars"), 0o700); err != nil {
			t.Fatal(err)
		}
		r := cliRunEnv(ctx, t, env, append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)...)
		if r.code != 0 {
			t.Fatalf("a failing secrets step failed the restore:\n%s", r)
		}
		if doc := r.jsonDoc(t); doc["status"] != "success" || !strings.Contains(r.stdout, "secrets") {
			t.Errorf("want success with a secrets warning: %v", doc)
		}
	})

	t.Run("secrets restored last", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{})
		env := testEnv(t)
		r := cliRunEnv(ctx, t, env, append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)...)
		if r.code != 0 {
			t.Fatalf("restore failed:\n%s", r)
		}
		b, err := os.ReadFile(filepath.Join(env.WorkDir, ".dev.vars"))
		if err != nil || !strings.Contains(string(b), "SERVICE_KEY=source-key") {
			t.Errorf(".dev.vars after restore: %q, %v", b, err)
		}
		skipped := testEnv(t)
		if r := cliRunEnv(ctx, t, skipped, append([]string{"backup", "restore", "--from", file, "--yes", "--skip-secrets"}, conn(dst)...)...); r.code != 0 {
			t.Fatalf("restore failed:\n%s", r)
		}
		if _, err := os.Stat(filepath.Join(skipped.WorkDir, ".dev.vars")); !os.IsNotExist(err) {
			t.Errorf("--skip-secrets wrote .dev.vars (%v)", err)
		}
	})
}
