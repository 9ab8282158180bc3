package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Cloudflare's global API budget: requests per window, per token (or user),
// counted across the dashboard, wrangler and every other client of the token.
const (
	CloudflareRequests = 1200
	CloudflareWindow   = 5 * time.Minute
	// DefaultMargin is left unused by default so other users of the same
	// token (a deploy, the dashboard) are not starved by a backup.
	DefaultMargin = 200
)

// LimiterConfig configures a Limiter. The zero value gives 1000 requests per
// 5 minutes (Cloudflare's 1200 minus DefaultMargin).
type LimiterConfig struct {
	Requests int           // budget per window; 0 = CloudflareRequests
	Window   time.Duration // 0 = CloudflareWindow
	// Margin is subtracted from Requests. 0 = DefaultMargin; a negative
	// value uses the whole budget.
	Margin int

	Now   func() time.Time                                 // default time.Now
	Sleep func(ctx context.Context, d time.Duration) error // default: a timer that stops when ctx is done
}

// Limiter is a sliding-window limiter: it admits at most N requests in any
// window of length W. A token bucket refilled at N/W would allow a burst of N
// plus the refill inside one window and could exceed a fixed-window server
// limit; the sliding log cannot. Memory is one timestamp per request in the
// budget. Share one Limiter between all clients that use the same token in a
// process. It is safe for concurrent use.
type Limiter struct {
	n      int
	window time.Duration
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error

	mu      sync.Mutex
	granted []time.Time // ring buffer of the last n grant times, oldest at head
	head    int
	count   int
	blocked time.Time // no grants before this (set after a 429)
}

// NewLimiter returns a Limiter for cfg.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	if cfg.Requests == 0 {
		cfg.Requests = CloudflareRequests
	}
	if cfg.Window == 0 {
		cfg.Window = CloudflareWindow
	}
	switch {
	case cfg.Margin == 0:
		cfg.Margin = DefaultMargin
	case cfg.Margin < 0:
		cfg.Margin = 0
	}
	n := cfg.Requests - cfg.Margin
	if cfg.Requests < 0 || n < 1 {
		return nil, fmt.Errorf("cloudflare: limiter: %d requests minus a margin of %d leaves no budget", cfg.Requests, cfg.Margin)
	}
	if cfg.Window < 0 {
		return nil, errors.New("cloudflare: limiter: negative window")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepContext
	}
	return &Limiter{
		n: n, window: cfg.Window, now: cfg.Now, sleep: cfg.Sleep,
		granted: make([]time.Time, n),
	}, nil
}

// Wait blocks until a request may be sent, or ctx is done. When the wait
// would outlast ctx's deadline it fails at once with an error matching both
// ErrRateLimited and context.DeadlineExceeded, so a caller near its deadline
// (a Lambda) can checkpoint instead of sleeping into a timeout.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		now := l.now()
		d := l.delay(now)
		if d <= 0 {
			l.grant(now)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
			return fmt.Errorf("cloudflare: limiter: next request allowed in %v, after the deadline: %w (%w)", d, ErrRateLimited, context.DeadlineExceeded)
		}
		// Re-check after sleeping: another waiter may have taken the slot.
		if err := l.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// Block stops all grants until the given time. A 429 from Cloudflare means
// the token's budget is spent for everyone, so the client calls this with
// the Retry-After time and every client sharing the limiter pauses.
func (l *Limiter) Block(until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.blocked) {
		l.blocked = until
	}
}

// Budget reports the effective requests per window.
func (l *Limiter) Budget() (requests int, window time.Duration) { return l.n, l.window }

// delay must be called with l.mu held.
func (l *Limiter) delay(now time.Time) time.Duration {
	d := l.blocked.Sub(now)
	if l.count == l.n {
		d = max(d, l.granted[l.head].Add(l.window).Sub(now))
	}
	return d
}

// grant must be called with l.mu held.
func (l *Limiter) grant(now time.Time) {
	if l.count < l.n {
		l.granted[(l.head+l.count)%l.n] = now
		l.count++
		return
	}
	l.granted[l.head] = now
	l.head = (l.head + 1) % l.n
}

func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
