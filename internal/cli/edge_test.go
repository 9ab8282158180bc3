package cli

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/cloudflare/cloudflaretest"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// edgeSetup is a source emulator whose DOs are registered, by their real
// hex ids, in a Cloudflare API emulator: the Worker's DatabaseDO
// namespace spread over many pages, its AuthDO namespace with zero
// objects, and another script's DatabaseDO namespace.
type edgeSetup struct {
	src     source
	cf      *cloudflaretest.Server
	withDO  []string // names of every DO holding data
	foreign int      // ids in the other script's namespace
	dbNS    string   // the Worker's DatabaseDO namespace id
}

func newEdgeSetup(ctx context.Context, t *testing.T) edgeSetup {
	t.Helper()
	// DOs stay warm once addressed by name (the test must not depend on
	// wall-clock eviction); Restart makes them cold.
	src := newSource(t, edgebasetest.Options{EvictAfter: -1})
	// Address every instance by name, as traffic on a live deployment does:
	// only warm DOs resolve through list-dos {hexIds}.
	fingerprint(ctx, t, src.emu, src.demo.Instances...)

	cf := cloudflaretest.NewServer(cloudflaretest.Config{MaxObjectsPerPage: 2, MaxNamespacesPerPage: 2})
	t.Cleanup(cf.Close)
	dbNS := cf.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_DatabaseDO", Script: src.emu.Worker(), Class: "DatabaseDO", UseSQLite: true})
	cf.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_AuthDO", Script: src.emu.Worker(), Class: "AuthDO", UseSQLite: true})
	otherNS := cf.AddNamespace(cloudflaretest.Namespace{Name: "shop_DatabaseDO", Script: "shop", Class: "DatabaseDO", UseSQLite: true})
	cf.AddNamespace(cloudflaretest.Namespace{Name: "shop_Cart", Script: "shop", Class: "Cart"})

	insts, err := src.emu.DOInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := edgeSetup{src: src, cf: cf, dbNS: dbNS.ID}
	for _, in := range insts {
		if err := cf.AddObjects(dbNS.ID, cloudflaretest.Object{ID: in.HexID, HasStoredData: in.HasData}); err != nil {
			t.Fatal(err)
		}
		if in.HasData {
			s.withDO = append(s.withDO, in.Name)
		}
	}
	// Ids that never stored anything are listed but must be ignored.
	for i := range 3 {
		if err := cf.AddObjects(dbNS.ID, cloudflaretest.Object{ID: cloudflaretest.ObjectID(100 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := cf.AddObjects(otherNS.ID, cloudflaretest.Object{ID: cloudflaretest.ObjectID(i), HasStoredData: true}); err != nil {
			t.Fatal(err)
		}
	}
	s.foreign = 3
	sort.Strings(s.withDO)
	return s
}

func (s edgeSetup) args(out string, extra ...string) []string {
	a := []string{"backup", "create", "--json", "--output", out, "--url", s.src.emu.URL(), "--service-key", s.src.emu.ServiceKey(),
		"--cloudflare-api-url", s.cf.URL()}
	return append(a, extra...)
}

// archiveDOs returns the keys of "databases" and the "source" of a .json
// archive.
func archiveDOs(t *testing.T, file string) ([]string, string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Source    string                     `json:"source"`
		Databases map[string]json.RawMessage `json:"databases"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range doc.Databases {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, doc.Source
}

func TestCreateEdgeMode(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := newEdgeSetup(ctx, t)
	if len(s.withDO) < 5 {
		t.Fatalf("expected the ledger and four instance DOs to hold data, got %v", s.withDO)
	}
	creds := []string{"--account-id", s.cf.AccountID(), "--api-token", cloudflaretest.DefaultToken}

	t.Run("every instance, across pages and a 429", func(t *testing.T) {
		s.cf.Throttle(1, time.Millisecond) // Retry-After: 1
		before := s.cf.Requests()
		out := t.TempDir()
		r := cliRun(ctx, t, s.args(out, append(creds, "--script", s.src.emu.Worker())...)...)
		if r.code != 0 {
			t.Fatalf("edge backup failed:\n%s", r)
		}
		file, _ := r.jsonDoc(t)["file"].(string)
		got, src := archiveDOs(t, file)
		for _, want := range s.withDO {
			if !contains(got, want) {
				t.Errorf("archive lacks DO %s; has %v", want, got)
			}
		}
		if src != "cloudflare-edge" {
			t.Errorf("source %q, want cloudflare-edge", src)
		}
		// 1 throttled + 2 namespace pages + (len(ids)/2 object pages) + 1
		// empty AuthDO page at least.
		objects := len(s.withDO) + 3
		if n := s.cf.Requests() - before; n < 1+2+objects/2 {
			t.Errorf("only %d Cloudflare requests; pagination was not followed", n)
		}
	})

	t.Run("credentials from the environment", func(t *testing.T) {
		env := testEnv(t)
		env.Getenv = func(k string) string {
			switch k {
			case "CLOUDFLARE_ACCOUNT_ID":
				return s.cf.AccountID()
			case "CLOUDFLARE_API_TOKEN":
				return cloudflaretest.DefaultToken
			}
			return ""
		}
		r := cliRunEnv(ctx, t, env, s.args(t.TempDir(), "--script", s.src.emu.Worker())...)
		if r.code != 0 {
			t.Fatalf("edge backup failed:\n%s", r)
		}
		file, _ := r.jsonDoc(t)["file"].(string)
		if got, _ := archiveDOs(t, file); !contains(got, "workspace:ws-4") {
			t.Errorf("archive lacks workspace:ws-4: %v", got)
		}
	})

	t.Run("restore finds orphans through the Cloudflare API", func(t *testing.T) {
		out := t.TempDir()
		r := cliRun(ctx, t, s.args(out, append(creds, "--script", s.src.emu.Worker())...)...)
		if r.code != 0 {
			t.Fatalf("edge backup failed:\n%s", r)
		}
		file, _ := r.jsonDoc(t)["file"].(string)
		want := fingerprint(ctx, t, s.src.emu, s.src.demo.Instances...)
		// A tenant created after the backup: warm, registered with the API.
		const added = "workspace:ws-new"
		if err := s.src.emu.AddRows(ctx, added, "tasks", edgebasetest.Row{"title": "created after the backup"}); err != nil {
			t.Fatal(err)
		}
		fingerprint(ctx, t, s.src.emu, added)
		if err := s.cf.AddObjects(s.dbNS, cloudflaretest.Object{ID: s.src.emu.DOID(added), HasStoredData: true}); err != nil {
			t.Fatal(err)
		}
		s.src.emu.ResetRequests()
		restore := []string{"backup", "restore", "--from", file, "--yes", "--json", "--url", s.src.emu.URL(), "--service-key", s.src.emu.ServiceKey(),
			"--cloudflare-api-url", s.cf.URL(), "--script", s.src.emu.Worker()}
		r = cliRun(ctx, t, append(restore, creds...)...)
		if r.code != 0 {
			t.Fatalf("edge restore failed:\n%s", r)
		}
		if doc := r.jsonDoc(t); doc["orphansWiped"] != float64(1) {
			t.Errorf("restore result %v; want the one orphan wiped", doc)
		}
		if w := s.src.emu.RequestsTo("wipe-do"); len(w) != 1 || w[0].Fields["doName"] != added {
			t.Errorf("wipe-do calls %v; want one for %s", w, added)
		}
		assertWiped(ctx, t, s.src.emu, added)
		if d := edgebasetest.Diff(want, fingerprint(ctx, t, s.src.emu, s.src.demo.Instances...)); d != "" {
			t.Errorf("data differs after the restore:\n%s", d)
		}
	})

	t.Run("another script's DOs are not silently dropped", func(t *testing.T) {
		out := t.TempDir()
		r := cliRun(ctx, t, s.args(out, creds...)...)
		if r.code == 0 {
			t.Fatalf("backup succeeded although %d DO ids with data could not be named:\n%s", s.foreign, r)
		}
		if !strings.Contains(r.stdout, "allow-unresolved") {
			t.Errorf("the failure does not say how to proceed:\n%s", r)
		}
		if a := archives(t, out); len(a) > 0 {
			t.Errorf("archive written: %v", a)
		}
	})

	t.Run("cold DOs fail the backup unless allowed", func(t *testing.T) {
		s.src.emu.Restart()
		out := t.TempDir()
		r := cliRun(ctx, t, s.args(out, append(creds, "--script", s.src.emu.Worker())...)...)
		if r.code == 0 {
			t.Fatalf("backup succeeded with unresolvable (cold) DOs:\n%s", r)
		}
		msg, _ := r.jsonDoc(t)["message"].(string)
		if !strings.Contains(msg, "could not be named") || !strings.Contains(msg, "--allow-unresolved") {
			t.Errorf("message %q does not explain the unresolved ids", msg)
		}
		if a := archives(t, out); len(a) > 0 {
			t.Errorf("archive written: %v", a)
		}

		s.src.emu.Restart()
		r = cliRun(ctx, t, s.args(out, append(creds, "--script", s.src.emu.Worker(), "--allow-unresolved")...)...)
		if r.code != 0 {
			t.Fatalf("--allow-unresolved backup failed:\n%s", r)
		}
		doc := r.jsonDoc(t)
		warnings, _ := doc["warnings"].([]any)
		found := false
		for _, w := range warnings {
			if s, _ := w.(string); strings.Contains(s, "could not be named") {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning about the unresolved DOs in %v", doc)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
