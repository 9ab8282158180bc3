package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// TestE2ERedirectingEdgeBaseGetsNoKey: the stack's EdgeBase URL answers
// every request with a redirect to another origin. The backup fails,
// saying why, and the other origin never receives the service key.
func TestE2ERedirectingEdgeBaseGetsNoKey(t *testing.T) {
	gate(t)
	src := newTarget(t, true)
	var requests, keys atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get(edgebase.HeaderServiceKey) != "" {
			keys.Add(1)
		}
		http.Error(w, "not here", http.StatusNotFound)
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer redirector.Close()

	d := deploy(t, src, deployOptions{override: map[string]string{lambdaenv.EdgeBaseURL: redirector.URL}})
	stop := d.run()
	defer stop()
	res := d.schedule(scheduledInput(t), NewRequestID())
	job := d.wait(events.KindBackup, res.JobID, 2*time.Minute)
	if job["state"] != "failed" {
		t.Fatalf("a backup through a redirecting EdgeBase: %v", job)
	}
	errs, _ := job["errors"].([]any)
	if len(errs) == 0 || !strings.Contains(strings.ToLower(errs[0].(map[string]any)["message"].(string)), "redirect") {
		t.Fatalf("the job's error does not name the redirect: %v", errs)
	}
	if keys.Load() != 0 {
		t.Fatalf("the other origin received the service key %d times (of %d requests)", keys.Load(), requests.Load())
	}
}
