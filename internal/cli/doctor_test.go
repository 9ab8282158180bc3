package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/cloudflare/cloudflaretest"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// doctorRun runs doctor --json and returns its exit code and checks by name.
func doctorRun(t *testing.T, env Env, args ...string) (int, map[string]doctorCheck, result) {
	t.Helper()
	r := cliRunEnv(testContext(t), t, env, append([]string{"doctor", "--json"}, args...)...)
	var doc struct {
		Status string        `json:"status"`
		Checks []doctorCheck `json:"checks"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &doc); err != nil {
		t.Fatalf("doctor --json printed no single document: %v\n%s", err, r)
	}
	byName := map[string]doctorCheck{}
	for _, c := range doc.Checks {
		byName[c.Name] = c
		if c.Status == checkFail && c.Hint == "" {
			t.Errorf("failed check %q has no fix hint", c.Name)
		}
	}
	if (doc.Status == "success") != (r.code == 0) {
		t.Errorf("status %q with exit %d", doc.Status, r.code)
	}
	return r.code, byName, r
}

func wantFail(t *testing.T, code int, checks map[string]doctorCheck, r result, name, hint string) {
	t.Helper()
	c := checks[name]
	if code == 0 || c.Status != checkFail || !strings.Contains(c.Hint, hint) {
		t.Fatalf("check %q = %+v (exit %d); want a failure with a hint about %q\n%s", name, c, code, hint, r)
	}
	for n, o := range checks {
		if n != name && o.Status == checkFail {
			t.Errorf("check %q failed too: %+v", n, o)
		}
	}
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	src := newSource(t, edgebasetest.Options{})
	out := t.TempDir()

	t.Run("green", func(t *testing.T) {
		code, checks, r := doctorRun(t, testEnv(t), append(conn(src.emu), "--output", out)...)
		if code != 0 {
			t.Fatalf("doctor on a correct setup: exit %d\n%s", code, r)
		}
		for _, name := range []string{"settings", "reachable", "service key", "server", "dynamic DB blocks", "output"} {
			if c, ok := checks[name]; !ok || c.Status != checkOK {
				t.Errorf("check %q = %+v; want ok", name, c)
			}
		}
		if !strings.Contains(checks["settings"].Detail, "url from --url") || !strings.Contains(checks["output"].Detail, "free") {
			t.Errorf("details: %+v", checks)
		}
		// Text form: one line per check, no failures.
		tr := cliRun(testContext(t), t, append([]string{"doctor", "--output", out}, conn(src.emu)...)...)
		if tr.code != 0 || !strings.Contains(tr.stdout, "all checks passed") {
			t.Errorf("text doctor:\n%s", tr)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		code, checks, r := doctorRun(t, testEnv(t), "--url", src.emu.URL(), "--service-key", "not-the-key", "--state-dir", src.emu.StateDir(), "--output", out)
		wantFail(t, code, checks, r, "service key", "root service key")
	})
	t.Run("unreachable URL", func(t *testing.T) {
		code, checks, r := doctorRun(t, testEnv(t), "--url", "http://127.0.0.1:1", "--service-key", "k", "--output", out)
		wantFail(t, code, checks, r, "reachable", "check the URL")
	})
	t.Run("dynamic blocks without a source", func(t *testing.T) {
		code, checks, r := doctorRun(t, testEnv(t), "--url", src.emu.URL(), "--service-key", src.emu.ServiceKey(), "--output", out)
		wantFail(t, code, checks, r, "dynamic DB blocks", "--state-dir")
		if !strings.Contains(checks["dynamic DB blocks"].Detail, "workspace") {
			t.Errorf("detail does not name the block: %+v", checks["dynamic DB blocks"])
		}
	})
	t.Run("key without the backup scope on a newer server", func(t *testing.T) {
		cfg := edgebasetest.ContractConfig()
		e := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05, ServiceKey: "root-key", Config: &cfg})
		code, checks, r := doctorRun(t, testEnv(t), "--url", e.URL(), "--service-key", edgebasetest.ContractReaderKey, "--output", out)
		wantFail(t, code, checks, r, "service key", edgebase.BackupScope)
		// The scoped backup key passes, and the newer server's behaviour
		// is reported.
		code, checks, r = doctorRun(t, testEnv(t), "--url", e.URL(), "--service-key", edgebasetest.ContractBackupKey, "--skip-instances", "--output", out)
		if code != 0 || checks["service key"].Status != checkOK {
			t.Fatalf("scoped backup key: exit %d %+v\n%s", code, checks["service key"], r)
		}
	})
	t.Run("Edge mode token", func(t *testing.T) {
		cf := cloudflaretest.NewServer(cloudflaretest.Config{})
		t.Cleanup(cf.Close)
		cf.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_DatabaseDO", Script: src.emu.Worker(), Class: "DatabaseDO", UseSQLite: true})
		edge := []string{"--url", src.emu.URL(), "--service-key", src.emu.ServiceKey(), "--cloudflare-api-url", cf.URL(), "--account-id", cf.AccountID(), "--output", out}
		code, checks, r := doctorRun(t, testEnv(t), append(edge, "--api-token", cloudflaretest.DefaultToken)...)
		if code != 0 || checks["cloudflare"].Status != checkOK || checks["dynamic DB blocks"].Status != checkOK {
			t.Fatalf("Edge mode with a good token: exit %d\n%s", code, r)
		}
		code, checks, r = doctorRun(t, testEnv(t), append(edge, "--api-token", "wrong-token")...)
		wantFail(t, code, checks, r, "cloudflare", "Workers Scripts Read")
	})
	t.Run("unwritable S3 prefix", func(t *testing.T) {
		env, bucket, _ := s3Env(t)
		code, checks, r := doctorRun(t, env, append(conn(src.emu), "--output", "s3://"+bucket+"/nightly")...)
		if code != 0 || !strings.Contains(checks["output"].Detail, "probe written and deleted") {
			t.Fatalf("a writable bucket: exit %d %+v\n%s", code, checks["output"], r)
		}
		code, checks, r = doctorRun(t, env, append(conn(src.emu), "--output", "s3://"+bucket+"-missing/nightly")...)
		wantFail(t, code, checks, r, "output", "s3:PutObject")
	})
}

// On a server behaving like EdgeBase 0.4-0.5 the masked content types and
// the redacted config are reported as warnings, not failures.
func TestDoctorNewerServer(t *testing.T) {
	t.Parallel()
	src := newSource(t, edgebasetest.Options{Profile: edgebasetest.Profile05})
	code, checks, r := doctorRun(t, testEnv(t), append(conn(src.emu), "--output", t.TempDir())...)
	s := checks["server"]
	if code != 0 || s.Status != checkWarn || !strings.Contains(s.Detail, "masked") || !strings.Contains(s.Detail, "redacted") {
		t.Fatalf("server check on a newer server: exit %d %+v\n%s", code, s, r)
	}
}
