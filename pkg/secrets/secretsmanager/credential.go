package secretsmanager

import (
	"context"
	"sync"
	"time"

	"github.com/edgevault/edgevault/pkg/sensitive"
)

// DefaultTTL is how long a Credential serves a value before reading the
// secret again: a rotated credential reaches running functions within it
// (and at once where a server refuses the old one, see Refresh).
const DefaultTTL = 10 * time.Minute

const (
	// minRefresh: refusals within this time of a read do not read again
	// (a burst of concurrent 401s, or a key that is simply wrong).
	minRefresh = time.Second
	// retryRead spaces re-reads after a failed one, while the old value
	// keeps being served.
	retryRead = 30 * time.Second
)

// Credential is one secret value (the EdgeBase service key, the
// Cloudflare API token) kept in memory and read again once it is older
// than its TTL, or when a server refused it (Refresh). It is safe for
// concurrent use.
type Credential struct {
	m   *Manager
	id  string
	ttl time.Duration
	now func() time.Time

	mu     sync.Mutex
	value  sensitive.String
	readAt time.Time // of value
	nextAt time.Time // read again from then on
	reads  int
}

// Credential returns the credential held in secret id; ttl <= 0 takes
// DefaultTTL, now nil time.Now. Nothing is read until Get.
func (m *Manager) Credential(id string, ttl time.Duration, now func() time.Time) *Credential {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Credential{m: m, id: id, ttl: ttl, now: now}
}

// Get returns the value, reading the secret the first time and whenever
// the value is older than the TTL. When a re-read fails, the value read
// before is served (a rotation is rare; Secrets Manager being unreachable
// for a moment should not fail work) and the read is tried again in 30 s;
// a credential never read fails.
func (c *Credential) Get(ctx context.Context) (sensitive.String, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.value.IsZero() && now.Before(c.nextAt) {
		return c.value, nil
	}
	v, err := c.m.GetString(ctx, c.id)
	if err != nil {
		if c.value.IsZero() {
			return "", err
		}
		c.nextAt = now.Add(retryRead)
		return c.value, nil
	}
	c.set(v, now)
	return v, nil
}

// Refresh is told that a server refused refused, a value Get handed out.
// Unless the value changed since (another caller's refusal read it
// again), or it was read less than a second ago, it reads the secret
// again. It returns the current value: the caller retries once with it
// when it differs from the refused one.
func (c *Credential) Refresh(ctx context.Context, refused sensitive.String) (sensitive.String, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.value.Reveal() != refused.Reveal() || now.Sub(c.readAt) < minRefresh {
		return c.value, nil
	}
	v, err := c.m.GetString(ctx, c.id)
	if err != nil {
		return c.value, err
	}
	c.set(v, now)
	return v, nil
}

func (c *Credential) set(v sensitive.String, now time.Time) {
	c.value, c.readAt, c.nextAt = v, now, now.Add(c.ttl)
	c.reads++
}

// Reads is how many times the secret was read.
func (c *Credential) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}
