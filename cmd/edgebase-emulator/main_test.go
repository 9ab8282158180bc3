package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

func TestRunServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	ready := filepath.Join(t.TempDir(), "ready")
	state := t.TempDir()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--key", "k1", "--seed", "demo", "--ready-file", ready, "--state", state}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no ready line: %v (run: %v)", err, <-done)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "EDGEBASE_URL=")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("ready line %q", line)
	}
	if b, err := os.ReadFile(ready); err != nil || string(b) != line {
		t.Fatalf("ready file %q, %v", b, err)
	}
	req, _ := http.NewRequest("POST", url+"/admin/api/backup/dump-storage?action=list", nil)
	req.Header.Set("X-EdgeBase-Service-Key", "k1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `"total":240`) {
		t.Fatalf("demo storage: %d %.200s", res.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if _, err := os.Stat(filepath.Join(state, "v3", "do")); err != nil {
		t.Fatalf("given --state must be kept: %v", err)
	}
}

func TestFlagValidation(t *testing.T) {
	for _, args := range [][]string{{"--seed", "x"}, {"--profile", "x"}, {"--seed", "demo", "--profile", "static"}, {"--bogus"}, {"--addr", "0.0.0.0:0"}, {"--addr", "nonsense"},
		{"--edgebase", "0.3"}, {"--edgebase", "latest"}, {"--upload-grants", "-1"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestBenchProfile(t *testing.T) {
	f, err := parseFlags([]string{"--seed", "bench", "--bench-n", "7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := f.config(); len(cfg.Databases) != 9 || cfg.Database("do007") == nil {
		t.Fatalf("bench config: %d blocks", len(cfg.Databases))
	}
}

// --edgebase 0.5 serves the newer behaviour: upload-grant markers stored
// with --upload-grants stay out of the listing, and the config is
// redacted.
func TestNewerEdgeBaseProfile(t *testing.T) {
	f, err := parseFlags([]string{"--edgebase", "0.5", "--profile", "redaction", "--seed", "demo"}, io.Discard)
	cfg := f.config()
	if err != nil || f.edgebase != edgebasetest.Profile05 || cfg.Database("vault") == nil {
		t.Fatalf("flags %+v, %v", f, err)
	}
	if f, err := parseFlags(nil, io.Discard); err != nil || f.edgebase != edgebasetest.Profile028 {
		t.Fatalf("default profile %v, %v", f.edgebase, err)
	}
	for _, tc := range []struct {
		version   string
		wantTotal string
		redacted  bool
	}{{"0.5", `"total":0`, true}, {"0.2.8", `"total":2`, false}} {
		t.Run(tc.version, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"--key", "k1", "--edgebase", tc.version, "--upload-grants", "2", "--profile", "redaction"}, pw, io.Discard)
				pw.Close()
			}()
			line, err := bufio.NewReader(pr).ReadString('\n')
			if err != nil {
				t.Fatalf("no ready line: %v (run: %v)", err, <-done)
			}
			url := strings.TrimPrefix(strings.TrimSpace(line), "EDGEBASE_URL=")
			get := func(method, path string) string {
				req, _ := http.NewRequest(method, url+path, nil)
				req.Header.Set("X-EdgeBase-Service-Key", "k1")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return string(b)
			}
			if body := get("POST", "/admin/api/backup/dump-storage?action=list"); !strings.Contains(body, tc.wantTotal) {
				t.Errorf("list: %.200s", body)
			}
			if body := get("GET", "/admin/api/backup/config"); strings.Contains(body, edgebasetest.RedactedValue) != tc.redacted {
				t.Errorf("config redacted = %v, want %v", !tc.redacted, tc.redacted)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
