package cli

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/notify"
)

// TestNotifyWebhook: backup create --notify posts one signed, Slack-style
// notification of the job's end to a local receiver that checks the HMAC;
// --notify without a secret is refused before any work.
func TestNotifyWebhook(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const secret = "local-hook-secret"
	var mu sync.Mutex
	var got []map[string]any
	bad := 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !notify.Verify(secret, body, r.Header.Get(notify.SignatureHeader)) {
			bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var doc map[string]any
		_ = json.Unmarshal(body, &doc)
		got = append(got, doc)
	})}}
	srv.Start()
	defer srv.Close()

	src := newSource(t, edgebasetest.Options{})
	env := testEnv(t)
	env.Getenv = func(k string) string {
		if k == NotifySecretEnv {
			return secret
		}
		return ""
	}
	r := cliRunEnv(ctx, t, env, append([]string{"backup", "create", "--json", "--output", t.TempDir(), "--notify", srv.URL + "/hook"}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("create --notify failed:\n%s", r)
	}
	mu.Lock()
	if len(got) != 1 || bad != 0 {
		t.Fatalf("receiver got %d notifications (%d badly signed); want one", len(got), bad)
	}
	ev := got[0]["edgevault"].(map[string]any)
	text, _ := got[0]["text"].(string)
	if ev["state"] != "done" || ev["kind"] != "backup" || !strings.Contains(text, "succeeded") {
		t.Errorf("notification %v", got[0])
	}
	mu.Unlock()

	r = cliRun(ctx, t, append([]string{"backup", "create", "--json", "--output", t.TempDir(), "--notify", srv.URL + "/hook"}, conn(src.emu)...)...)
	if r.code == 0 || !strings.Contains(r.stdout, NotifySecretEnv) {
		t.Fatalf("--notify without a secret:\n%s", r)
	}
}
