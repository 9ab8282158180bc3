package edgebase_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// A refused key tells the user which scope the call needs, and a key that
// probably lacks it matches ErrScope as well as the status sentinel.
func TestScopeErrors(t *testing.T) {
	cfg := edgebasetest.ContractConfig()
	e := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "root-key", Config: &cfg})
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		key       string
		call      func(c *edgebase.Client) error
		sentinel  error
		scopeErr  bool
		wantScope string
		wantText  string
	}{
		{"scoped key without the backup scope", edgebasetest.ContractReaderKey,
			func(c *edgebase.Client) error { _, err := c.ListDOs(ctx, nil); return err },
			edgebase.ErrUnauthorized, true, edgebase.BackupScope, "the service key needs scope backup:*:*:exec"},
		{"expired scoped key", edgebasetest.ContractExpiredKey,
			func(c *edgebase.Client) error { _, _, err := c.Config(ctx); return err },
			edgebase.ErrUnauthorized, true, edgebase.BackupScope, "needs scope backup:*:*:exec"},
		{"wrong root key", "not-the-key",
			func(c *edgebase.Client) error { _, err := c.ListDOs(ctx, nil); return err },
			edgebase.ErrUnauthorized, false, edgebase.BackupScope, "use the root service key or a scoped key with scope backup:*:*:exec"},
		{"backup key on a public read", edgebasetest.ContractBackupKey,
			func(c *edgebase.Client) error { return c.TouchTable(ctx, "workspace", "ws-1", "tasks") },
			edgebase.ErrUnauthorized, true, "db:table:tasks:read", "needs scope db:table:tasks:read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, e.URL(), tc.key, &noSleep{})
			err := tc.call(c)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want %v", err, tc.sentinel)
			}
			if errors.Is(err, edgebase.ErrScope) != tc.scopeErr {
				t.Errorf("errors.Is(ErrScope) = %v, want %v: %v", !tc.scopeErr, tc.scopeErr, err)
			}
			var ae *edgebase.APIError
			if !errors.As(err, &ae) || ae.RequiredScope != tc.wantScope {
				t.Errorf("RequiredScope = %q, want %q", ae.RequiredScope, tc.wantScope)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("message %q lacks %q", err, tc.wantText)
			}
			if strings.Contains(err.Error(), tc.key) {
				t.Errorf("message leaks the key: %v", err)
			}
		})
	}

	// Only scoped keys configured: a plain key is answered 403 (§1.2);
	// the message says what kind of key works.
	only := edgebasetest.DefaultConfig()
	only.ServiceKeys = []edgebasetest.ServiceKey{{Kid: "b", Tier: "scoped", Scopes: []string{edgebase.BackupScope}, SecretSource: "inline", InlineSecret: "jb_b_x"}}
	e2 := edgebasetest.NewTest(t, edgebasetest.Options{Config: &only})
	_, err := newClient(t, e2.URL(), "plain", &noSleep{}).ListDOs(ctx, nil)
	if !errors.Is(err, edgebase.ErrForbidden) || errors.Is(err, edgebase.ErrScope) || !strings.Contains(err.Error(), "scoped key with scope backup:*:*:exec") {
		t.Fatalf("plain key against scoped-only keys: %v", err)
	}
	if _, err := newClient(t, e2.URL(), "jb_b_x", &noSleep{}).ListDOs(ctx, nil); err != nil {
		t.Fatalf("the scoped backup key was refused: %v", err)
	}
}

// A standard insufficient_scope challenge names the scope too.
func TestScopeFromWWWAuthenticate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgebase", error="insufficient_scope", scope="backup:*:*:exec"`)
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"code":403,"message":"Forbidden."}`))
	}))
	defer srv.Close()
	_, err := newClient(t, srv.URL, "plain", &noSleep{}).ListDOs(context.Background(), nil)
	var ae *edgebase.APIError
	if !errors.Is(err, edgebase.ErrScope) || !errors.Is(err, edgebase.ErrForbidden) || !errors.As(err, &ae) || ae.RequiredScope != edgebase.BackupScope {
		t.Fatalf("err = %v", err)
	}
	// Other statuses never carry scope information.
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":404,"message":"no scope 'x:y' here"}`))
	}))
	defer srv2.Close()
	_, err = newClient(t, srv2.URL, "jb_k_x", &noSleep{}).ListDOs(context.Background(), nil)
	if errors.Is(err, edgebase.ErrScope) || !errors.As(err, &ae) || ae.RequiredScope != "" {
		t.Fatalf("404: %v", err)
	}
}
