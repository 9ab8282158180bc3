package cloudflare_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/pkg/cloudflare"
)

// The API token must never follow a redirect to another origin. net/http
// itself only drops Authorization when the host name changes, so a
// second server on the same 127.0.0.1 but another port would receive it.
func TestRedirectNeverSendsTheToken(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		_, _ = w.Write([]byte(nsPage))
	}))
	defer other.Close()
	for _, tc := range []struct {
		name   string
		status int
		target func(r *http.Request) string
	}{
		{"302 to another port", http.StatusFound, func(r *http.Request) string { return other.URL + r.URL.RequestURI() }},
		{"307 to another port", http.StatusTemporaryRedirect, func(r *http.Request) string { return other.URL + r.URL.RequestURI() }},
		{"301 to https on the same port", http.StatusMovedPermanently, func(r *http.Request) string { return "https://" + r.Host + r.URL.RequestURI() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c, _ := rawServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, tc.target(r), tc.status)
			})
			_, err := c.Namespaces(context.Background())
			if !errors.Is(err, cloudflare.ErrRedirect) {
				t.Fatalf("err = %v, want ErrRedirect", err)
			}
			if !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "redirected to") {
				t.Errorf("error does not name the redirect: %v", err)
			}
			if strings.Contains(err.Error(), "Bearer tok") {
				t.Errorf("error leaks the token: %v", err)
			}
			var ae *cloudflare.APIError
			if !errors.As(err, &ae) || ae.Attempts != 1 {
				t.Errorf("a refused redirect was retried: %+v", ae)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range seen {
		if h.Get("Authorization") != "" {
			t.Fatalf("the other server received the token: %v", h)
		}
	}
}

// A redirect within the API's origin is followed, with the token.
func TestSameOriginRedirectFollowed(t *testing.T) {
	var auth []string
	var mu sync.Mutex
	_, c, _ := rawServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/moved") {
			http.Redirect(w, r, "/moved"+r.URL.RequestURI(), http.StatusFound)
			return
		}
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write([]byte(nsPage))
	})
	got, err := c.Namespaces(context.Background())
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	if len(auth) != 1 || auth[0] != "Bearer tok" {
		t.Fatalf("Authorization at the same-origin target: %q", auth)
	}
}
