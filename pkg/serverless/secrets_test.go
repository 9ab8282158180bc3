package serverless

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go/middleware"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/cloudflare/cloudflaretest"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	sm "github.com/edgevault/edgevault/pkg/secrets/secretsmanager"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

// keyGate stands in front of the EdgeBase emulator and plays the
// deployment's key rotation: it accepts the keys in accept (passing the
// emulator's own key on) and answers 401, as EdgeBase does, to any other.
type keyGate struct {
	mu     sync.Mutex
	accept map[string]bool
	seen   []string
}

func (g *keyGate) set(keys ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accept = map[string]bool{}
	for _, k := range keys {
		g.accept[k] = true
	}
}

func (g *keyGate) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.seen
	g.seen = nil
	return s
}

func newKeyGate(t *testing.T, emu *edgebasetest.Emulator) (*keyGate, string) {
	t.Helper()
	g := &keyGate{}
	u, _ := url.Parse(emu.URL())
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := r.Header.Get(edgebase.HeaderServiceKey)
		g.mu.Lock()
		g.seen = append(g.seen, k)
		ok := g.accept[k]
		g.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"code":401,"message":"Invalid or missing Service Key."}`)
			return
		}
		r.Header.Set(edgebase.HeaderServiceKey, emu.ServiceKey())
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return g, srv.URL
}

// reads counts GetSecretValue requests.
type reads struct {
	mu sync.Mutex
	n  int
}

func (c *reads) register(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("reads",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if awsmiddleware.GetOperationName(ctx) == "GetSecretValue" {
				c.mu.Lock()
				c.n++
				c.mu.Unlock()
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

func (c *reads) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = 0
	return n
}

type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The scheduler's and worker's service key (and the scheduler's
// Cloudflare token) come from Secrets Manager (moto here) and are read
// again after the TTL, and at once, once, when the server refuses them.
func TestSecretsAreReadAgain(t *testing.T) {
	ctx := context.Background()
	clients := motoserver.Clients(t)
	counter := &reads{}
	smc := clients.SecretsManager(func(o *secretsmanager.Options) { o.APIOptions = append(o.APIOptions, counter.register) })
	put := func(id, v string) {
		t.Helper()
		if _, err := smc.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(id), SecretString: aws.String(v)}); err != nil {
			t.Fatal(err)
		}
	}
	newSecret := func(v string) string {
		t.Helper()
		name := motoserver.Name(t, "secret")
		if _, err := smc.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(v)}); err != nil {
			t.Fatal(err)
		}
		return name
	}
	emu := edgebasetest.NewTest(t, edgebasetest.Options{})
	gate, gateURL := newKeyGate(t, emu)
	gate.set("key-1")
	cf := cloudflaretest.NewServer(cloudflaretest.Config{})
	t.Cleanup(cf.Close)

	cfg := DefaultConfig(lambdaenv.Scheduler)
	cfg.EdgeBaseURL, cfg.ServiceKeySecret = gateURL, newSecret("key-1")
	cfg.CloudflareAccount, cfg.CloudflareSecret, cfg.CloudflareAPIURL = cf.AccountID(), newSecret("token-old"), cf.URL()
	m, err := sm.New(smc)
	if err != nil {
		t.Fatal(err)
	}
	clk := &manualClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var d Deps
	if err := connectEdgeBase(ctx, cfg, m, clk.now, &d); err != nil {
		t.Fatal(err)
	}
	if n := counter.take(); n != 2 {
		t.Fatalf("%d reads at cold start, want the key and the token", n)
	}
	call := func() error {
		_, _, err := d.EdgeBase.Config(ctx)
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	// Rotation: the new key is put (the old one still works); within the
	// TTL the old one is used, after it the new one.
	put(cfg.ServiceKeySecret, "key-2")
	gate.set("key-1", "key-2")
	clk.add(9 * time.Minute)
	gate.take()
	if err := call(); err != nil || fmt.Sprint(gate.take()) != "[key-1]" || counter.take() != 0 {
		t.Fatal("within the TTL: not the key in memory", err)
	}
	clk.add(2 * time.Minute)
	if err := call(); err != nil || fmt.Sprint(gate.take()) != "[key-2]" || counter.take() != 1 {
		t.Fatal("after the TTL: not the key read again", err)
	}
	// The key is revoked before the TTL ran out: the 401 reads the secret
	// again, once, and the call goes through with the new key.
	put(cfg.ServiceKeySecret, "key-3")
	gate.set("key-3")
	clk.add(time.Minute)
	if err := call(); err != nil || fmt.Sprint(gate.take()) != "[key-2 key-3]" || counter.take() != 1 {
		t.Fatal("after a revocation: not one re-read and one retry", err)
	}
	// Refused although just read again: one re-read, then the failure.
	put(cfg.ServiceKeySecret, "key-4")
	gate.set("key-5")
	clk.add(time.Minute)
	if err := call(); !errors.Is(err, edgebase.ErrUnauthorized) || fmt.Sprint(gate.take()) != "[key-3 key-4]" || counter.take() != 1 {
		t.Fatalf("a key refused after the re-read: %v", err)
	}

	// Edge mode: the token in the secret is refused; it was rotated
	// meanwhile, so one re-read lists the DOs.
	cf.AddToken("token-new", true)
	put(cfg.CloudflareSecret, "token-new")
	counter.take()
	n, err := d.Enum.Edge.DatabaseDOIDs(ctx, func(string) error { return nil })
	if err != nil || counter.take() != 1 {
		t.Fatalf("Cloudflare listing after a token rotation: %d %v", n, err)
	}
	if cfg.SecretTTL != DefaultSecretTTL || DefaultSecretTTL > 15*time.Minute {
		t.Fatal("secret TTL")
	}
}
