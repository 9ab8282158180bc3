package secretsmanager

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/edgevault/edgevault/internal/motoserver"
)

// clock is an injected clock the test advances.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCredential(t *testing.T) {
	ctx := context.Background()
	sm := motoserver.Clients(t).SecretsManager()
	m, err := New(sm)
	if err != nil {
		t.Fatal(err)
	}
	id := newSecret(t, sm, aws.String("key-1"), nil)
	rotate := func(v string) {
		t.Helper()
		if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(id), SecretString: aws.String(v)}); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	c := m.Credential(id, 10*time.Minute, clk.now)
	get := func(want string, reads int) {
		t.Helper()
		v, err := c.Get(ctx)
		if err != nil || v.Reveal() != want || c.Reads() != reads {
			t.Fatalf("Get = %q, %v after %d reads; want %q after %d", v.Reveal(), err, c.Reads(), want, reads)
		}
	}
	get("key-1", 1)
	rotate("key-2")
	clk.add(9 * time.Minute)
	get("key-1", 1) // within the TTL: the value in memory
	clk.add(2 * time.Minute)
	get("key-2", 2) // past it: read again

	// A server refuses the value: read again at once, once.
	rotate("key-3")
	clk.add(5 * time.Second)
	if v, err := c.Refresh(ctx, "key-2"); err != nil || v.Reveal() != "key-3" || c.Reads() != 3 {
		t.Fatalf("Refresh = %q, %v (%d reads)", v.Reveal(), err, c.Reads())
	}
	// Other requests refused with the old value meanwhile: no more reads.
	if v, _ := c.Refresh(ctx, "key-2"); v.Reveal() != "key-3" || c.Reads() != 3 {
		t.Fatalf("second refusal of the old value: %q (%d reads)", v.Reveal(), c.Reads())
	}
	// The new value refused right after it was read: not read again.
	if v, _ := c.Refresh(ctx, "key-3"); v.Reveal() != "key-3" || c.Reads() != 3 {
		t.Fatalf("refusal right after a read: %q (%d reads)", v.Reveal(), c.Reads())
	}
	get("key-3", 3)

	// The secret cannot be read past the TTL: the old value is served,
	// and the read tried again 30 s later.
	broken := m.Credential("no-such-secret", time.Minute, clk.now)
	if _, err := broken.Get(ctx); err == nil {
		t.Fatal("a credential never read")
	}
	gone := newSecret(t, sm, aws.String("key-a"), nil)
	g := m.Credential(gone, time.Minute, clk.now)
	if v, err := g.Get(ctx); err != nil || v.Reveal() != "key-a" {
		t.Fatal(v, err)
	}
	if _, err := sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String(gone), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	if v, err := g.Get(ctx); err != nil || v.Reveal() != "key-a" {
		t.Fatalf("failed re-read: %q %v", v.Reveal(), err)
	}
	if m.Credential(id, 0, nil).ttl != DefaultTTL {
		t.Fatal("default TTL")
	}
}
