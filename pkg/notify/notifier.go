package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Marker states.
const (
	stateSending = "sending"
	stateSent    = "sent"
)

// marker records one job end's delivery.
type marker struct {
	Event    string    `json:"event"`
	State    string    `json:"state"`
	Until    time.Time `json:"until,omitempty"` // the sender's lease, while sending
	Attempts int       `json:"attempts"`
	Error    string    `json:"error,omitempty"`
	Sent     time.Time `json:"sent,omitempty"`
}

// Notifier sends one notification per job end. Its marker (Prefix +
// notifications/<job>.json) is created once before the first send (of
// concurrent callers exactly one creates it and sends), then set to sent.
// A sender that stops between the two leaves a lease that expires; the
// next call takes the marker over by compare-and-swap and sends again,
// with the same delivery id. So a job end is notified at least once and,
// short of such a crash, exactly once.
type Notifier struct {
	Store  pipeline.BlobStore
	Prefix string // e.g. the staging prefix, "jobs/"
	Hook   *Webhook
	Now    func() time.Time
	// Lease is how long a sender holds the marker (default 5 minutes:
	// longer than Send's retries).
	Lease time.Duration
}

// ErrInProgress is returned when another caller holds a live lease on the
// job end's marker: its send is under way; call again later to be sure.
var ErrInProgress = errors.New("notify: another delivery of this job end is in progress")

func (n *Notifier) key(job string) string { return n.Prefix + "notifications/" + job + ".json" }

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

func (n *Notifier) lease() time.Duration {
	if n.Lease > 0 {
		return n.Lease
	}
	return 5 * time.Minute
}

// JobEnded notifies the end of a finished job; a job that has not ended
// is ignored. It reports whether this call sent the notification.
func (n *Notifier) JobEnded(ctx context.Context, job *events.Job) (bool, error) {
	if job == nil || !job.State.Terminal() {
		return false, nil
	}
	ev := FromJob(job)
	key := n.key(job.ID)
	m, err := n.claim(ctx, key, ev.ID())
	if err != nil || m == nil {
		return false, err
	}
	body, err := ev.Body()
	if err != nil {
		return false, err
	}
	serr := n.Hook.Send(ctx, ev.ID(), "job."+ev.State, body)
	m.Attempts++
	if serr != nil {
		// Expire the lease so the next call tries again.
		m.Until, m.Error = n.now(), serr.Error()
		_ = n.put(context.WithoutCancel(ctx), key, m)
		return false, serr
	}
	m.State, m.Until, m.Error, m.Sent = stateSent, time.Time{}, "", n.now().UTC()
	if err := n.put(context.WithoutCancel(ctx), key, m); err != nil {
		return true, fmt.Errorf("notify: sent, but recording it failed (a later call may send again): %w", err)
	}
	return true, nil
}

// claim takes the marker for sending: it creates it, or takes over one
// whose sender's lease expired. It returns nil when the job end was
// already notified.
func (n *Notifier) claim(ctx context.Context, key, event string) (*marker, error) {
	for range 3 {
		m := &marker{Event: event, State: stateSending, Until: n.now().Add(n.lease()).UTC()}
		b, _ := json.Marshal(m)
		err := n.Store.Create(ctx, key, bytes.NewReader(b))
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, blob.ErrExist) {
			return nil, fmt.Errorf("notify: creating %s: %w", key, err)
		}
		rc, v, err := n.Store.ReadVersion(ctx, key)
		if errors.Is(err, blob.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("notify: reading %s: %w", key, err)
		}
		var cur marker
		err = json.NewDecoder(io.LimitReader(rc, 64<<10)).Decode(&cur)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("notify: %s: %w", key, err)
		}
		switch {
		case cur.State == stateSent:
			return nil, nil
		case cur.Until.After(n.now()):
			return nil, ErrInProgress
		}
		m.Attempts = cur.Attempts
		b, _ = json.Marshal(m)
		err = n.Store.Replace(ctx, key, bytes.NewReader(b), v)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, blob.ErrConflict) && !errors.Is(err, blob.ErrNotExist) {
			return nil, fmt.Errorf("notify: taking over %s: %w", key, err)
		}
	}
	return nil, ErrInProgress
}

func (n *Notifier) put(ctx context.Context, key string, m *marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return n.Store.Put(ctx, key, bytes.NewReader(b))
}
