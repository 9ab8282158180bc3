package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// receiver is a local webhook endpoint that checks the HMAC, fails the
// first failFirst deliveries with 503, and records the ones it accepted.
type receiver struct {
	secret    sensitive.String
	failFirst int32
	calls     atomic.Int32
	mu        sync.Mutex
	accepted  []map[string]any
	ids       []string
	badSig    int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !Verify(rc.secret, body, r.Header.Get(SignatureHeader)) {
		rc.mu.Lock()
		rc.badSig++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.calls.Add(1) <= rc.failFirst {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || doc["text"] == "" {
		http.Error(w, "not a Slack body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.accepted = append(rc.accepted, doc)
	rc.ids = append(rc.ids, r.Header.Get(DeliveryHeader))
	rc.mu.Unlock()
}

func startReceiver(t *testing.T, rc *receiver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: rc}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + "/hook"
}

func finishedJob(state events.JobState) *events.Job {
	return &events.Job{ID: "backup-20260102T030405Z-abcd", Kind: events.KindBackup, State: state, Target: "https://app.example.test",
		Archive: "backups/edgebase-backup-2026-01-02T03-04-05.tar.gz", UpdatedAt: time.Date(2026, 1, 2, 3, 9, 0, 0, time.UTC),
		Summary: &events.Summary{Rows: 145, Objects: 240, Bytes: 1 << 20}}
}

func newNotifier(t *testing.T, url string, secret sensitive.String) *Notifier {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Notifier{Store: st, Prefix: "jobs/", Hook: &Webhook{URL: url, Secret: secret, Attempts: 4, Backoff: 10 * time.Millisecond}}
}

// Retried deliveries of one job end (concurrent and repeated calls, a
// receiver failing the first attempts) give exactly one accepted,
// correctly signed notification.
func TestExactlyOnePerJobEnd(t *testing.T) {
	ctx := context.Background()
	rc := &receiver{secret: "hook-secret", failFirst: 2}
	n := newNotifier(t, startReceiver(t, rc), rc.secret)
	job := finishedJob(events.StateDone)

	var sent atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ok, err := n.JobEnded(ctx, job)
			if err != nil && !errors.Is(err, ErrInProgress) {
				t.Errorf("JobEnded: %v", err)
			}
			if ok {
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	for range 3 { // redeliveries after the end
		if ok, err := n.JobEnded(ctx, job); ok || err != nil {
			t.Fatalf("a redelivery sent again: %v %v", ok, err)
		}
	}
	if sent.Load() != 1 || len(rc.accepted) != 1 || rc.badSig != 0 {
		t.Fatalf("sent %d, receiver accepted %d (bad signatures %d); want exactly one", sent.Load(), len(rc.accepted), rc.badSig)
	}
	if rc.calls.Load() != 3 {
		t.Errorf("receiver saw %d calls; want 2 refused + 1 accepted (retried with backoff)", rc.calls.Load())
	}
	ev := rc.accepted[0]["edgevault"].(map[string]any)
	if ev["state"] != "done" || ev["job"] != job.ID || ev["rows"] != float64(145) || rc.ids[0] != job.ID+"/done" {
		t.Errorf("notification %v id %s", rc.accepted[0], rc.ids[0])
	}

	// Another job end (a failed job) is its own notification.
	failed := finishedJob(events.StateFailed)
	failed.ID = "backup-20260102T030405Z-ffff"
	failed.Errors = []events.JobError{{Unit: "DO ledger", Message: "403 forbidden"}}
	if ok, err := n.JobEnded(ctx, failed); !ok || err != nil {
		t.Fatalf("failed job: %v %v", ok, err)
	}
	if len(rc.accepted) != 2 || rc.accepted[1]["edgevault"].(map[string]any)["state"] != "failed" {
		t.Fatalf("accepted %v", rc.accepted)
	}
	// A running job is not an end.
	if ok, _ := n.JobEnded(ctx, &events.Job{ID: "x", State: events.StateRunning}); ok {
		t.Fatal("a running job was notified")
	}
}

// A sender that stopped after claiming the marker (its lease expired) is
// taken over by the next call; a failed send is retried by the next call.
func TestTakeoverAndRetryAfterFailure(t *testing.T) {
	ctx := context.Background()
	rc := &receiver{secret: "s", failFirst: 100}
	url := startReceiver(t, rc)
	n := newNotifier(t, url, rc.secret)
	n.Hook.Attempts = 2
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	n.Now = func() time.Time { return now }
	job := finishedJob(events.StateDone)
	if ok, err := n.JobEnded(ctx, job); ok || err == nil {
		t.Fatalf("a receiver that keeps failing: %v %v; want an error", ok, err)
	}
	rc.failFirst = 0
	now = now.Add(time.Second)
	if ok, err := n.JobEnded(ctx, job); !ok || err != nil {
		t.Fatalf("the next call after a failed send: %v %v; want sent", ok, err)
	}
	if len(rc.accepted) != 1 {
		t.Fatalf("accepted %d", len(rc.accepted))
	}

	// A claim whose sender vanished: live lease blocks, an expired one is
	// taken over.
	other := finishedJob(events.StateFailed)
	other.ID = "backup-other"
	if _, err := n.claim(ctx, n.key(other.ID), "backup-other/failed"); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.JobEnded(ctx, other); ok || !errors.Is(err, ErrInProgress) {
		t.Fatalf("with a live lease: %v %v; want ErrInProgress", ok, err)
	}
	now = now.Add(time.Hour)
	if ok, err := n.JobEnded(ctx, other); !ok || err != nil {
		t.Fatalf("after the lease: %v %v; want sent", ok, err)
	}
}

// The receiver refuses a wrong secret; that is permanent, not retried.
func TestWrongSecretIsRefused(t *testing.T) {
	rc := &receiver{secret: "right"}
	n := newNotifier(t, startReceiver(t, rc), "wrong")
	_, err := n.JobEnded(context.Background(), finishedJob(events.StateDone))
	if !errors.Is(err, ErrPermanent) || rc.badSig != 1 || len(rc.accepted) != 0 {
		t.Fatalf("wrong secret: %v (bad signatures %d)", err, rc.badSig)
	}
	if err := (&Webhook{URL: "http://127.0.0.1:1/x"}).Validate(); err == nil {
		t.Fatal("a webhook without a secret validated")
	}
}
