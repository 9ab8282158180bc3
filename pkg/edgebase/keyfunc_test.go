package edgebase_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// rotatingKey stands in for a credential read from a secret store: what
// it hands out, and what a re-read would find.
type rotatingKey struct {
	mu        sync.Mutex
	current   sensitive.String // what Get returns
	stored    sensitive.String // what a re-read finds
	gets      int
	refreshes []string
}

func (k *rotatingKey) get(context.Context) (sensitive.String, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gets++
	return k.current, nil
}

func (k *rotatingKey) refresh(_ context.Context, refused sensitive.String) (sensitive.String, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refreshes = append(k.refreshes, refused.Reveal())
	k.current = k.stored
	return k.current, nil
}

// The key is asked for on every request; a key the server refuses is read
// again once and the call retried with the new one; a refusal of the key
// read again fails the call.
func TestServiceKeyFunc(t *testing.T) {
	ctx := context.Background()
	e := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "new-key"})
	k := &rotatingKey{current: "new-key", stored: "new-key"}
	c, err := edgebase.New(edgebase.Options{BaseURL: e.URL(), ServiceKeyFunc: k.get, RefreshServiceKey: k.refresh})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := c.Config(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k.gets != 2 || len(k.refreshes) != 0 {
		t.Fatalf("gets %d, refreshes %v", k.gets, k.refreshes)
	}
	// The key was rotated in the store after it was read: the server
	// refuses the old one, the client reads it again and succeeds.
	k.current = "old-key"
	n := len(e.Requests())
	if _, _, err := c.Config(ctx); err != nil {
		t.Fatalf("after a rotation: %v", err)
	}
	if len(k.refreshes) != 1 || k.refreshes[0] != "old-key" || len(e.Requests())-n != 2 {
		t.Fatalf("refreshes %v, requests %d", k.refreshes, len(e.Requests())-n)
	}
	// Still refused after the re-read: one re-read, then the refusal.
	k.current, k.stored = "old-key", "older-key"
	n = len(e.Requests())
	if _, _, err := c.Config(ctx); !errors.Is(err, edgebase.ErrUnauthorized) {
		t.Fatalf("refused twice: %v", err)
	}
	if len(k.refreshes) != 2 || len(e.Requests())-n != 2 {
		t.Fatalf("refreshes %v, requests %d", k.refreshes, len(e.Requests())-n)
	}
	// The same key read again: no second try.
	k.current, k.stored = "old-key", "old-key"
	n = len(e.Requests())
	if _, _, err := c.Config(ctx); !errors.Is(err, edgebase.ErrUnauthorized) || len(e.Requests())-n != 1 {
		t.Fatalf("unchanged key: %v, %d requests", err, len(e.Requests())-n)
	}
	// Without a refresh hook a refusal fails at once, as before.
	plain, err := edgebase.New(edgebase.Options{BaseURL: e.URL(), ServiceKeyFunc: k.get})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := plain.Config(ctx); !errors.Is(err, edgebase.ErrUnauthorized) {
		t.Fatal(err)
	}
	// A key that cannot be read fails the call without a request.
	broken, _ := edgebase.New(edgebase.Options{BaseURL: e.URL(), ServiceKeyFunc: func(context.Context) (sensitive.String, error) {
		return "", errors.New("secrets manager unreachable")
	}})
	n = len(e.Requests())
	if _, _, err := broken.Config(ctx); err == nil || len(e.Requests()) != n {
		t.Fatalf("unreadable key: %v", err)
	}
	if _, err := edgebase.New(edgebase.Options{BaseURL: e.URL()}); err == nil {
		t.Fatal("a client without any key")
	}
}
