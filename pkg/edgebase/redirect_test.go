package edgebase_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// headerRecorder is the server a redirect points at: it records every
// request's headers and answers like a healthy list-dos.
type headerRecorder struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newHeaderRecorder(t *testing.T) *headerRecorder {
	h := &headerRecorder{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.headers = append(h.headers, r.Header.Clone())
		h.mu.Unlock()
		_, _ = io.WriteString(w, `{"dos":[],"total":0}`)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *headerRecorder) requests() []http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]http.Header(nil), h.headers...)
}

// redirector answers every request with status and a Location built from
// target(path).
func redirector(t *testing.T, status int, target func(r *http.Request) string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Redirect(w, r, target(r), status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// A redirect to another host must never carry the service key there: the
// call fails with ErrRedirect naming the redirect, and is not retried.
func TestRedirectToAnotherHostNeverSendsTheKey(t *testing.T) {
	const key = "sk-must-stay-home"
	for _, status := range []int{http.StatusFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			other := newHeaderRecorder(t)
			first, hits := redirector(t, status, func(r *http.Request) string { return other.URL + r.URL.RequestURI() })
			c := newClient(t, first.URL, key, &noSleep{})
			ctx := context.Background()
			calls := map[string]func() error{
				"list-dos (POST)": func() error { _, err := c.ListDOs(ctx, nil); return err },
				"config (GET)":    func() error { _, _, err := c.Config(ctx); return err },
				"get object": func() error {
					return c.GetObject(ctx, "uploads/a.txt", func(io.Reader, edgebase.ObjectInfo) error { return nil })
				},
				"touch (public GET)": func() error { return c.TouchTable(ctx, "shared", "", "posts") },
			}
			for name, call := range calls {
				before := hits.Load()
				err := call()
				// 307/308 of a request with a body that cannot be replayed is
				// not followed by net/http at all: then the 3xx itself is the
				// error. Either way nothing may reach the other server.
				if err == nil {
					t.Fatalf("%s: a cross-host redirect succeeded", name)
				}
				if errors.Is(err, edgebase.ErrRedirect) {
					if !strings.Contains(err.Error(), other.URL) || !strings.Contains(err.Error(), first.URL) {
						t.Errorf("%s: error does not name the redirect: %v", name, err)
					}
				} else if name != "list-dos (POST)" || status < 307 {
					t.Errorf("%s: err = %v, want ErrRedirect", name, err)
				}
				if strings.Contains(err.Error(), key) {
					t.Errorf("%s: error leaks the key: %v", name, err)
				}
				if n := hits.Load() - before; n != 1 {
					t.Errorf("%s: %d requests to the redirecting server, want 1 (a refused redirect is not retried)", name, n)
				}
			}
			for _, h := range other.requests() {
				if h.Get(edgebase.HeaderServiceKey) != "" {
					t.Fatalf("the other host received the service key: %v", h)
				}
			}
		})
	}
}

// A change of scheme (or port) on the same host is another origin too.
func TestRedirectToAnotherSchemeOrPortIsRefused(t *testing.T) {
	other := newHeaderRecorder(t)
	first, _ := redirector(t, http.StatusFound, func(r *http.Request) string {
		if strings.HasSuffix(r.URL.Path, "/config") {
			// Same host and port, https: refused before any connection.
			return "https://" + r.Host + r.URL.RequestURI()
		}
		return other.URL + r.URL.RequestURI() // same host 127.0.0.1, other port
	})
	c := newClient(t, first.URL, "k", &noSleep{})
	if _, _, err := c.Config(context.Background()); !errors.Is(err, edgebase.ErrRedirect) || !strings.Contains(err.Error(), "https://") {
		t.Fatalf("http -> https redirect: %v, want ErrRedirect", err)
	}
	if _, err := c.ListDOs(context.Background(), nil); !errors.Is(err, edgebase.ErrRedirect) {
		t.Fatalf("redirect to another port: %v, want ErrRedirect", err)
	}
	if n := len(other.requests()); n != 0 {
		t.Fatalf("%d requests reached the other port", n)
	}
}

// Redirects inside the deployment's origin are still followed with the
// key, and a caller's own redirect policy still applies after ours.
func TestSameOriginRedirectIsFollowed(t *testing.T) {
	var keys []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/old/") {
			http.Redirect(w, r, "/new/"+strings.TrimPrefix(r.URL.Path, "/old/"), http.StatusFound)
			return
		}
		mu.Lock()
		keys = append(keys, r.Header.Get(edgebase.HeaderServiceKey))
		mu.Unlock()
		_, _ = io.WriteString(w, `{"databases":{}}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL+"/old", "k", nil)
	if _, _, err := c.Config(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "k" {
		t.Fatalf("keys at the redirect target: %q", keys)
	}

	var asked atomic.Int64
	own := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		asked.Add(1)
		return errors.New("caller policy: no redirects")
	}}
	c2, err := edgebase.New(edgebase.Options{BaseURL: srv.URL + "/old", ServiceKey: sensitive.String("k"), HTTPClient: own,
		Sleep: (&noSleep{}).sleep, Retry: edgebase.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c2.Config(context.Background()); err == nil || !strings.Contains(err.Error(), "caller policy") {
		t.Fatalf("the caller's CheckRedirect was not applied: %v", err)
	}
	if asked.Load() != 1 || own.CheckRedirect == nil {
		t.Fatalf("caller policy consulted %d times", asked.Load())
	}
	// The caller's client itself is not modified.
	other := newHeaderRecorder(t)
	first, _ := redirector(t, http.StatusFound, func(r *http.Request) string { return other.URL })
	if _, err := own.Get(first.URL); err == nil || errors.Is(err, edgebase.ErrRedirect) {
		t.Fatalf("the caller's http.Client was changed: %v", err)
	}
}
