package restore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// TestRedirectIsPermanent: a server that redirects the backup API to
// another origin gets the same refusal on every attempt (the service key
// is never sent there), so the task fails for good at once instead of
// being redelivered.
func TestRedirectIsPermanent(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect was followed to %s", r.URL)
	}))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c, err := edgebase.New(edgebase.Options{BaseURL: srv.URL, ServiceKey: sensitive.String("k"), HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListDOs(context.Background(), nil)
	if !errors.Is(err, edgebase.ErrRedirect) {
		t.Fatalf("list-dos through a cross-origin redirect: %v; want ErrRedirect", err)
	}
	if got := classify(err); !pipeline.IsPermanent(got) || !errors.Is(got, edgebase.ErrRedirect) {
		t.Errorf("classify(%v) = %v; want a permanent ErrRedirect", err, got)
	}
}
