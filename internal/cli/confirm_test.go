package cli

import (
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestRestoreNeedsConfirmation: without --yes a restore asks (interactive)
// or refuses with needs_input and exit 2 before any request (spec 9.34);
// --dry-run only reads.
func TestRestoreNeedsConfirmation(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sa := newSourceArchives(ctx, t)
	dst := newEmulator(t, edgebasetest.Options{})
	junkTarget(ctx, t, dst)
	before := fingerprint(ctx, t, dst, "workspace:ws-1")
	restore := append([]string{"backup", "restore", "--from", sa.tarball}, conn(dst)...)

	for _, mode := range []string{"--json", "no terminal"} {
		t.Run(mode, func(t *testing.T) {
			dst.ResetRequests()
			args := restore
			if mode == "--json" {
				args = append(args, "--json")
			}
			r := cliRun(ctx, t, args...)
			if r.code != ExitNeedsInput {
				t.Fatalf("exit %d, want %d:\n%s", r.code, ExitNeedsInput, r)
			}
			if mode == "--json" {
				doc := r.jsonDoc(t)
				if doc["status"] != "needs_input" || doc["code"] != "backup_restore_confirmation_required" || doc["field"] != "yes" {
					t.Errorf("document %v", doc)
				}
				choices, _ := doc["choices"].([]any)
				if len(choices) != 1 || !strings.Contains(r.stdout, `"args":["--yes"]`) {
					t.Errorf("choices %v, want one that adds --yes", doc["choices"])
				}
			} else if !strings.Contains(r.stderr, "--yes") {
				t.Errorf("the refusal does not mention --yes:\n%s", r)
			}
			if n := len(dst.Requests()); n != 0 {
				t.Errorf("the target received %d requests; want none", n)
			}
		})
	}

	t.Run("interactive, declined", func(t *testing.T) {
		dst.ResetRequests()
		env := testEnv(t)
		env.IsTerminal = func(any) bool { return true }
		env.Stdin = strings.NewReader("no\n")
		r := cliRunEnv(ctx, t, env, restore...)
		if r.code != 0 || !strings.Contains(r.stdout, "Aborted.") {
			t.Fatalf("declined restore: %s", r)
		}
		if !strings.Contains(r.stdout, "orphan DO workspace:ws-junk") || !strings.Contains(r.stdout, dst.URL()) {
			t.Errorf("the prompt did not show the target and what will be wiped:\n%s", r)
		}
		assertUntouched(ctx, t, dst, nil)
	})

	t.Run("dry run", func(t *testing.T) {
		dst.ResetRequests()
		r := cliRun(ctx, t, append(restore, "--dry-run", "--json")...)
		if r.code != 0 {
			t.Fatalf("dry run failed:\n%s", r)
		}
		doc := r.jsonDoc(t)
		plan, _ := doc["plan"].(map[string]any)
		if doc["status"] != "success" || doc["dryRun"] != true || plan == nil {
			t.Fatalf("dry-run document %v", doc)
		}
		if orphans, _ := plan["orphans"].([]any); len(orphans) != len(junkOrphans) || orphans[0] != junkOrphans[0] || orphans[1] != junkOrphans[1] {
			t.Errorf("plan orphans %v; want %v", plan["orphans"], junkOrphans)
		}
		if wipes, _ := plan["wipes"].([]any); len(wipes) < 4 {
			t.Errorf("plan wipes %v; want CONTROL_DB, AUTH_DB, orphans and R2", plan["wipes"])
		}
		if plan["objects"] != float64(len(edgebasetest.DemoObjects())) || plan["users"] != float64(sa.src.demo.Users) {
			t.Errorf("plan counts objects=%v users=%v", plan["objects"], plan["users"])
		}
		r = cliRun(ctx, t, append(restore, "--dry-run")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Dry run: nothing was changed.") || !strings.Contains(r.stdout, "DO workspace:ws-3") {
			t.Errorf("human dry run:\n%s", r)
		}
		assertUntouched(ctx, t, dst, before, "workspace:ws-1")
	})

	t.Run("interactive, confirmed", func(t *testing.T) {
		env := testEnv(t)
		env.IsTerminal = func(any) bool { return true }
		env.Stdin = strings.NewReader(" Restore \n")
		if r := cliRunEnv(ctx, t, env, restore...); r.code != 0 || !strings.Contains(r.stdout, "Restore complete") {
			t.Fatalf("confirmed restore: %s", r)
		}
		want := fingerprint(ctx, t, sa.src.emu, sa.src.demo.Instances...)
		if d := edgebasetest.Diff(want, fingerprint(ctx, t, dst, sa.src.demo.Instances...)); d != "" {
			t.Errorf("target differs after the confirmed restore:\n%s", d)
		}
	})
}
