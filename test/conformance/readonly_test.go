package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/peer"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// TestReadOnly checks a live deployment without changing it: the backup
// API's read endpoints answer with the shapes edgevault relies on, a wrong
// or missing key is refused, and edgevault backup create + verify succeed.
// It runs with EDGEVAULT_READONLY=1 and EDGEBASE_URL +
// EDGEBASE_SERVICE_KEY. Only read endpoints are called (dump-* are POSTs
// but read-only). Storage is included when EDGEVAULT_READONLY_STORAGE=1
// (it downloads every object). Dynamic DB instances are included with
// Cloudflare credentials (CLOUDFLARE_ACCOUNT_ID + CLOUDFLARE_API_TOKEN)
// or EDGEVAULT_READONLY_STATE_DIR (a local dev server's state); otherwise
// the backup knowingly skips them (--skip-instances).
//
// Without EDGEVAULT_READONLY (make conformance against the local peer) the
// same checks run against a seeded peer of the test's own.
func TestReadOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	base, key := strings.TrimRight(os.Getenv("EDGEBASE_URL"), "/"), os.Getenv("EDGEBASE_SERVICE_KEY")
	if os.Getenv(envReadOnly) != "1" {
		requirePeer(t)
		src := startServers(t, []string{"readonly"}, []peer.Profile{peer.ProfileStatic})[0]
		src.seedBase(ctx, t, 3, 0, 5)
		base, key = src.URL, src.Key
	} else if base == "" || key == "" {
		t.Fatalf("%s=1 needs EDGEBASE_URL and EDGEBASE_SERVICE_KEY", envReadOnly)
	}
	call := func(t *testing.T, method, route, body, useKey string, want int) []byte {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+route, r)
		if err != nil {
			t.Fatal(err)
		}
		if useKey != "-" {
			req.Header.Set("X-EdgeBase-Service-Key", useKey)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, route, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, route, err)
		}
		if resp.StatusCode != want {
			t.Fatalf("%s %s: HTTP %d, want %d: %s", method, route, resp.StatusCode, want, clip(b))
		}
		return b
	}
	decode := func(t *testing.T, b []byte, v any) {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("not the expected JSON shape (%v): %s", err, clip(b))
		}
	}
	const B = "/admin/api/backup"

	t.Run("auth", func(t *testing.T) {
		call(t, http.MethodPost, B+"/list-dos", "{}", "-", http.StatusForbidden)
		call(t, http.MethodPost, B+"/list-dos", "{}", "not-the-key", http.StatusUnauthorized)
	})

	var cfg *edgebase.Config
	t.Run("config", func(t *testing.T) {
		var err error
		cfg, err = edgebase.ParseConfig(call(t, http.MethodGet, B+"/config", "", key, http.StatusOK))
		if err != nil {
			t.Fatal(err)
		}
	})

	var dos []struct {
		DOName    string `json:"doName"`
		Type      string `json:"type"`
		Namespace string `json:"namespace"`
	}
	t.Run("list-dos", func(t *testing.T) {
		var r struct {
			DOs   *json.RawMessage `json:"dos"`
			Total *json.Number     `json:"total"`
		}
		decode(t, call(t, http.MethodPost, B+"/list-dos", "{}", key, http.StatusOK), &r)
		if r.DOs == nil || r.Total == nil {
			t.Fatalf("list-dos lacks dos/total")
		}
		decode(t, *r.DOs, &dos)
		if n, _ := r.Total.Int64(); int(n) != len(dos) {
			t.Errorf("total %d, %d DOs listed", n, len(dos))
		}
		for _, d := range dos {
			if d.DOName == "" || (d.Type != "database" && d.Type != "auth") {
				t.Errorf("listed DO %+v lacks a name or a known type", d)
			}
		}
	})

	tablesShape := func(t *testing.T, what string, b []byte) {
		t.Helper()
		var d struct {
			Tables map[string][]map[string]any `json:"tables"`
		}
		decode(t, b, &d)
		if d.Tables == nil {
			t.Errorf("%s: no tables object: %s", what, clip(b))
		}
	}
	t.Run("dumps", func(t *testing.T) {
		tablesShape(t, "dump-control-d1", call(t, http.MethodPost, B+"/dump-control-d1", "", key, http.StatusOK))
		var auth struct {
			Tables map[string][]map[string]any `json:"tables"`
		}
		decode(t, call(t, http.MethodPost, B+"/dump-d1", "", key, http.StatusOK), &auth)
		if _, ok := auth.Tables["_users"]; !ok {
			t.Errorf("dump-d1 has no _users table")
		}
		dumped := 0
		for _, d := range dos {
			if d.Type != "database" || strings.Contains(d.DOName, ":") || dumped == 3 {
				continue
			}
			if cfg != nil {
				// The server lists a DO for D1 blocks too (dumping it would
				// create one) and bare names of dynamic blocks (400).
				if b, ok := cfg.Block(d.DOName); !ok || !b.DOBacked() || b.Dynamic() {
					continue
				}
			}
			body := fmt.Sprintf(`{"doName":%q,"type":"database"}`, d.DOName)
			tablesShape(t, "dump-do "+d.DOName, call(t, http.MethodPost, B+"/dump-do", body, key, http.StatusOK))
			dumped++
		}
		if cfg != nil {
			for _, b := range cfg.Databases {
				if b.DataNamespace() && !b.Postgres() {
					body := fmt.Sprintf(`{"namespace":%q}`, b.Name)
					tablesShape(t, "dump-data "+b.Name, call(t, http.MethodPost, B+"/dump-data", body, key, http.StatusOK))
				}
			}
		}
	})

	t.Run("storage", func(t *testing.T) {
		var r struct {
			Objects []struct {
				Key  string      `json:"key"`
				Size json.Number `json:"size"`
			} `json:"objects"`
			Total json.Number `json:"total"`
		}
		decode(t, call(t, http.MethodPost, B+"/dump-storage?action=list", "", key, http.StatusOK), &r)
		if n, _ := r.Total.Int64(); int(n) != len(r.Objects) {
			t.Errorf("storage list total %d, %d objects", n, len(r.Objects))
		}
		if len(r.Objects) == 0 {
			return
		}
		o := r.Objects[0]
		b := call(t, http.MethodPost, B+"/dump-storage?action=get&key="+url.QueryEscape(o.Key), "", key, http.StatusOK)
		if size, _ := o.Size.Int64(); int64(len(b)) != size {
			t.Errorf("object %q: %d bytes, listed as %d", o.Key, len(b), size)
		}
	})

	t.Run("edgevault-create-verify", func(t *testing.T) {
		args := []string{"--json", "backup", "create", "--url", base, "--service-key", key, "--output", t.TempDir()}
		if os.Getenv("EDGEVAULT_READONLY_STORAGE") == "1" {
			args = append(args, "--include-storage")
		}
		account, token := os.Getenv("CLOUDFLARE_ACCOUNT_ID"), os.Getenv("CLOUDFLARE_API_TOKEN")
		switch {
		case account != "" && token != "":
			args = append(args, "--account-id", account, "--api-token", token)
		case os.Getenv("EDGEVAULT_READONLY_STATE_DIR") != "":
			args = append(args, "--state-dir", os.Getenv("EDGEVAULT_READONLY_STATE_DIR"))
		default:
			args = append(args, "--skip-instances")
			t.Log("no Cloudflare credentials or state dir: dynamic DB instances are skipped")
		}
		r := mustEdgevault(ctx, t, args...)
		file, _ := r.doc["file"].(string)
		sum, _ := verify(ctx, t, file)["summary"].(map[string]any)
		for _, k := range []string{"dos", "dataNamespaces", "objects"} {
			if number(sum, k) != number(r.doc, k) {
				t.Errorf("%s: create reported %d, verify found %d", k, number(r.doc, k), number(sum, k))
			}
		}
		t.Logf("backed up %s: %d DOs, %d namespaces, %d rows, %d objects", base, number(r.doc, "dos"), number(r.doc, "dataNamespaces"), number(r.doc, "rows"), number(r.doc, "objects"))
	})
}
