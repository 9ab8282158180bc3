package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Header names of a delivery.
const (
	SignatureHeader = "X-EdgeVault-Signature"
	DeliveryHeader  = "X-EdgeVault-Delivery"
	EventHeader     = "X-EdgeVault-Event"
)

// Event is what a notification says about a job's end.
type Event struct {
	Job      string    `json:"job"`
	Kind     string    `json:"kind"`
	State    string    `json:"state"` // done or failed
	Target   string    `json:"target,omitempty"`
	Archive  string    `json:"archive,omitempty"`
	Snapshot string    `json:"snapshot,omitempty"`
	Errors   []string  `json:"errors,omitempty"`
	Rows     int64     `json:"rows"`
	Objects  int64     `json:"objects"`
	Bytes    int64     `json:"bytes"`
	Finished time.Time `json:"finished"`
}

// maxErrors bounds the failed units a notification lists.
const maxErrors = 10

// FromJob describes a finished job.
func FromJob(j *events.Job) Event {
	e := Event{Job: j.ID, Kind: string(j.Kind), State: string(j.State), Target: j.Target, Archive: j.Archive, Snapshot: j.Snapshot, Finished: j.UpdatedAt.UTC()}
	if s := j.Summary; s != nil {
		e.Rows, e.Objects, e.Bytes = s.Rows, s.Objects, s.Bytes
	}
	for i, je := range j.Errors {
		if i == maxErrors {
			e.Errors = append(e.Errors, fmt.Sprintf("... and %d more", len(j.Errors)-maxErrors))
			break
		}
		e.Errors = append(e.Errors, je.String())
	}
	return e
}

// ID identifies the job end; every delivery of it carries the same id.
func (e Event) ID() string { return e.Job + "/" + e.State }

// Body is the Slack-compatible JSON body: "text" for Slack (and the many
// receivers that accept its incoming-webhook format), and the structured
// event under "edgevault".
func (e Event) Body() ([]byte, error) {
	var b strings.Builder
	if e.State == string(events.StateDone) {
		fmt.Fprintf(&b, ":white_check_mark: edgevault %s %s succeeded", e.Kind, e.Job)
	} else {
		fmt.Fprintf(&b, ":x: edgevault %s %s failed", e.Kind, e.Job)
	}
	if e.Target != "" {
		fmt.Fprintf(&b, " (%s)", e.Target)
	}
	if e.Archive != "" {
		fmt.Fprintf(&b, "\narchive: %s", e.Archive)
	}
	if e.Snapshot != "" {
		fmt.Fprintf(&b, "\nsnapshot: %s", e.Snapshot)
	}
	fmt.Fprintf(&b, "\n%d rows, %d objects, %d bytes", e.Rows, e.Objects, e.Bytes)
	for _, er := range e.Errors {
		fmt.Fprintf(&b, "\nfailed: %s", er)
	}
	return json.Marshal(map[string]any{"text": b.String(), "edgevault": e})
}

// Sign is the signature header value of body: sha256=<hex HMAC-SHA256>.
func Sign(secret sensitive.String, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret.Reveal()))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is the signature of body; receivers (and
// tests) use it.
func Verify(secret sensitive.String, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// Webhook posts signed events to a URL.
type Webhook struct {
	URL    string
	Secret sensitive.String
	Client *http.Client
	// Attempts per Send (default 5) and the first backoff (default 1s,
	// doubling, at most 30s).
	Attempts int
	Backoff  time.Duration
}

// ErrPermanent marks a refusal that retrying cannot fix (a 4xx answer
// other than 408 and 429, a bad URL).
var ErrPermanent = errors.New("notify: permanent failure")

// Validate refuses a webhook that cannot work.
func (w *Webhook) Validate() error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("notify: the webhook URL is not an http(s) URL") // not echoed: such URLs often carry a token
	}
	if w.Secret.IsZero() {
		return errors.New("notify: no webhook secret to sign with")
	}
	return nil
}

// Send delivers body, retrying transient failures with backoff.
func (w *Webhook) Send(ctx context.Context, id, event string, body []byte) error {
	if err := w.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	attempts, backoff := w.Attempts, w.Backoff
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	hc := w.Client
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	sig := Sign(w.Secret, body)
	var last error
	for i := range attempts {
		if i > 0 {
			t := time.NewTimer(min(backoff<<(i-1), 30*time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("notify: %w (last: %v)", ctx.Err(), last)
			case <-t.C:
			}
		}
		last = w.post(ctx, hc, id, event, sig, body)
		if last == nil || errors.Is(last, ErrPermanent) {
			return last
		}
	}
	return fmt.Errorf("notify: %d attempts failed: %w", attempts, last)
}

func (w *Webhook) post(ctx context.Context, hc *http.Client, id, event, sig string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "edgevault-notify")
	req.Header.Set(SignatureHeader, sig)
	req.Header.Set(DeliveryHeader, id)
	req.Header.Set(EventHeader, event)
	resp, err := hc.Do(req)
	if err != nil {
		// A webhook URL is often a credential (Slack's are): never in
		// errors or logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("notify: post to the webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return fmt.Errorf("notify: the receiver answered %d", resp.StatusCode)
	default:
		return fmt.Errorf("%w: the receiver answered %d", ErrPermanent, resp.StatusCode)
	}
}
