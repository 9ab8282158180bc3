package edgebase_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// noSleep records the backoff delays instead of waiting.
type noSleep struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (n *noSleep) sleep(ctx context.Context, d time.Duration) error {
	n.mu.Lock()
	n.delays = append(n.delays, d)
	n.mu.Unlock()
	return ctx.Err()
}

func newClient(t *testing.T, url, key string, s *noSleep) *edgebase.Client {
	t.Helper()
	opts := edgebase.Options{BaseURL: url, ServiceKey: sensitive.String(key)}
	if s != nil {
		opts.Sleep = s.sleep
	}
	c, err := edgebase.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seeded(t *testing.T) (*edgebasetest.Emulator, *edgebase.Client) {
	t.Helper()
	e := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "sk-test"})
	if _, err := e.SeedDemo(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, newClient(t, e.URL()+"/", "sk-test", &noSleep{})
}

func readAll(t *testing.T, fn func(func(io.Reader) error) error) []byte {
	t.Helper()
	var out []byte
	if err := fn(func(r io.Reader) error {
		b, err := io.ReadAll(r)
		out = b
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryEndpointAgainstTheEmulator(t *testing.T) {
	ctx := context.Background()
	e, c := seeded(t)

	dos, err := c.ListDOs(ctx, nil)
	if err != nil || len(dos) == 0 {
		t.Fatalf("list-dos: %v %v", dos, err)
	}
	for _, d := range dos {
		if d.Type != edgebase.TypeDatabase || d.Namespace != "DATABASE" {
			t.Errorf("list-dos entry %+v: want type database, binding namespace DATABASE", d)
		}
	}
	hex := e.DOID("workspace:ws-1")
	if _, err := c.ListDOs(ctx, []string{hex}); err != nil {
		t.Fatalf("list-dos hexIds: %v", err)
	}

	cfg, raw, err := c.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) {
		t.Fatal("config is not JSON")
	}
	ws, ok := cfg.Block("workspace")
	if !ok || !ws.Dynamic() || ws.DataNamespace() {
		t.Errorf("workspace block: %+v", ws)
	}
	shared, ok := cfg.Block("shared")
	if !ok || !shared.DataNamespace() || len(shared.Tables) == 0 {
		t.Errorf("shared block: %+v", shared)
	}
	if ledger, _ := cfg.Block("ledger"); !ledger.DOBacked() || ledger.DataNamespace() {
		t.Errorf("ledger block: %+v", ledger)
	}

	dump := readAll(t, func(fn func(io.Reader) error) error {
		return c.DumpDO(ctx, "workspace:ws-1", edgebase.TypeDatabase, fn)
	})
	var do struct {
		DoName string                       `json:"doName"`
		Tables map[string][]json.RawMessage `json:"tables"`
	}
	if err := json.Unmarshal(dump, &do); err != nil || do.DoName != "workspace:ws-1" || len(do.Tables["tasks"]) == 0 {
		t.Fatalf("dump-do: %v %+v", err, do)
	}
	d1 := readAll(t, func(fn func(io.Reader) error) error { return c.DumpD1(ctx, fn) })
	if !bytes.Contains(d1, []byte(`"_users"`)) {
		t.Fatalf("dump-d1 lacks _users: %.200s", d1)
	}
	ctl := readAll(t, func(fn func(io.Reader) error) error { return c.DumpControlD1(ctx, fn) })
	if !bytes.Contains(ctl, []byte(`"_meta"`)) {
		t.Fatalf("dump-control-d1: %.200s", ctl)
	}
	data := readAll(t, func(fn func(io.Reader) error) error { return c.DumpData(ctx, "shared", fn) })
	if !bytes.Contains(data, []byte(`"tableOrder"`)) {
		t.Fatalf("dump-data: %.200s", data)
	}

	// Storage: list streams every object; get returns exact bytes + type.
	var objs []edgebase.Object
	total, err := c.ListStorage(ctx, func(o edgebase.Object) error { objs = append(objs, o); return nil })
	if err != nil || total != int64(len(objs)) || total < 200 {
		t.Fatalf("list: %d objects, total %d, %v", len(objs), total, err)
	}
	checked := 0
	for _, o := range objs {
		if !strings.ContainsAny(o.Key, " %#?+") && !strings.ContainsFunc(o.Key, func(r rune) bool { return r > 127 }) {
			continue
		}
		want, ct, err := e.ObjectContent(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		err = c.GetObject(ctx, o.Key, func(r io.Reader, info edgebase.ObjectInfo) error {
			got, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want) || info.ContentType != ct || info.Size != int64(len(want)) {
				t.Errorf("get %q: %d bytes %q, want %d bytes %q", o.Key, len(got), info.ContentType, len(want), ct)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("get %q: %v", o.Key, err)
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("only %d odd keys checked", checked)
	}

	if n, err := c.ResyncUsersPublic(ctx); err != nil || n == 0 {
		t.Fatalf("resync: %d %v", n, err)
	}
	// Restores and wipes.
	if _, err := c.RestoreControlD1(ctx, edgebase.BytesBody([]byte(`{"_meta":[{"key":"k","value":"v"}]}`)), false); err != nil {
		t.Fatal(err)
	}
	if res, err := c.RestoreD1(ctx, edgebase.BytesBody([]byte(`{}`)), false); err != nil || !res.OK {
		t.Fatalf("restore-d1: %+v %v", res, err)
	}
	if _, err := c.RestoreData(ctx, "shared", edgebase.BytesBody([]byte(`{"posts":[]}`)), false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RestoreDO(ctx, "workspace:ws-1", edgebase.TypeDatabase, edgebase.BytesBody([]byte(`{"tasks":[{"id":"t1","title":"x"}]}`))); err != nil {
		t.Fatal(err)
	}
	if err := c.WipeDO(ctx, "workspace:ws-2", edgebase.TypeDatabase); err != nil {
		t.Fatal(err)
	}
	body := []byte("hello, bucket")
	key := "uploads/dir with space/ü%#?.txt"
	if err := c.PutObject(ctx, key, "text/x-test", int64(len(body)), edgebase.BytesBody(body)); err != nil {
		t.Fatal(err)
	}
	if got, ct, err := e.ObjectContent(ctx, key); err != nil || !bytes.Equal(got, body) || ct != "text/x-test" {
		t.Fatalf("put stored %q %q %v", got, ct, err)
	}
	var exported []byte
	if err := c.Export(ctx, "tasks", func(r io.Reader, _ string) error {
		var err error
		exported, err = io.ReadAll(r)
		return err
	}); err != nil && !errors.Is(err, edgebase.ErrBadRequest) {
		t.Fatalf("export tasks: %v", err)
	}
	if err := c.Export(ctx, "posts", func(r io.Reader, _ string) error {
		var err error
		exported, err = io.ReadAll(r)
		return err
	}); err != nil || !bytes.HasPrefix(exported, []byte("[")) {
		t.Fatalf("export posts: %.100s %v", exported, err)
	}
	if err := c.Export(ctx, "no_such_table", func(io.Reader, string) error { return nil }); !errors.Is(err, edgebase.ErrNotFound) {
		t.Fatalf("export of a missing table: %v, want ErrNotFound", err)
	}
	if _, err := c.CleanupPlugin(ctx, edgebase.CleanupPluginRequest{Prefix: "plugin-x"}); err != nil {
		t.Fatal(err)
	}
	if err := c.TouchTable(ctx, "workspace", "ws-new", "tasks"); err != nil {
		t.Fatal(err)
	}
	if n, err := c.WipeStorage(ctx); err != nil || n == 0 {
		t.Fatalf("wipe storage: %d %v", n, err)
	}
}

func TestNeedsCreateIsAnError(t *testing.T) {
	ctx := context.Background()
	e := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "k"})
	c := newClient(t, e.URL(), "k", &noSleep{})
	_, err := c.RestoreDO(ctx, "workspace:never", edgebase.TypeDatabase, edgebase.BytesBody([]byte(`{"tasks":[]}`)))
	if !errors.Is(err, edgebase.ErrNeedsCreate) {
		t.Fatalf("restore-do of an uncreated instance: %v, want ErrNeedsCreate", err)
	}
}

func TestWrongKeyIsUnauthorized(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "right"})
	c := newClient(t, e.URL(), "wrong", &noSleep{})
	_, err := c.ListDOs(context.Background(), nil)
	if !errors.Is(err, edgebase.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), "Invalid or missing Service Key") || !strings.Contains(err.Error(), "401") {
		t.Errorf("message %q should carry the server's message and status", err)
	}
	if len(e.RequestsTo("list-dos")) != 1 {
		t.Errorf("a 401 must not be retried: %d requests", len(e.RequestsTo("list-dos")))
	}
	// The key never appears in errors.
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error leaks the key: %v", err)
	}
}

func TestRetriesThen429Succeeds(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	s := &noSleep{}
	c := newClient(t, e.URL(), e.ServiceKey(), s)
	e.SetFault("list-dos", edgebasetest.Fault{Status: http.StatusTooManyRequests, FirstN: 2})
	if _, err := c.ListDOs(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(e.RequestsTo("list-dos")); n != 3 {
		t.Fatalf("%d requests, want 3 (two 429s, then success)", n)
	}
	if len(s.delays) != 2 {
		t.Fatalf("backoffs %v, want 2", s.delays)
	}
}

func TestServerErrorGivesUpAfterBoundedAttempts(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	s := &noSleep{}
	opts := edgebase.Options{BaseURL: e.URL(), ServiceKey: sensitive.String(e.ServiceKey()), Sleep: s.sleep,
		Retry: edgebase.RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}}
	c, err := edgebase.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.SetFault("dump-d1", edgebasetest.Fault{Status: 500, Body: `{"code":500,"message":"boom"}`})
	err = c.DumpD1(context.Background(), func(r io.Reader) error { _, err := io.ReadAll(r); return err })
	if !errors.Is(err, edgebase.ErrServer) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want ErrServer carrying the server's message", err)
	}
	if n := len(e.RequestsTo("dump-d1")); n != 4 {
		t.Fatalf("%d attempts, want 4", n)
	}
	for i, d := range s.delays {
		ceil := 100 * time.Millisecond << i
		if d < ceil/2 || d > ceil {
			t.Errorf("backoff %d = %v, want jittered within [%v, %v]", i, d, ceil/2, ceil)
		}
	}
}

func TestTruncatedBodyIsNeverPartialData(t *testing.T) {
	e, c := seeded(t)
	e.SetFault("dump-do", edgebasetest.Fault{Truncate: true, TruncateAfter: 40})
	var committed [][]byte
	err := c.DumpDO(context.Background(), "ledger", edgebase.TypeDatabase, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err // a consumer commits only after a complete read
		}
		committed = append(committed, b)
		return nil
	})
	if err == nil || !edgebase.IsTransport(err) {
		t.Fatalf("err = %v, want a transport error", err)
	}
	if len(committed) != 0 {
		t.Fatalf("partial data reached the consumer: %q", committed)
	}
	if n := len(e.RequestsTo("dump-do")); n != 5 {
		t.Fatalf("%d attempts, want the default 5", n)
	}
	// Once the fault clears, a retry within the bounds succeeds.
	e.SetFault("dump-do", edgebasetest.Fault{Truncate: true, TruncateAfter: 40, FirstN: 1})
	var sum [32]byte
	if err := c.DumpDO(context.Background(), "ledger", edgebase.TypeDatabase, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		sum = sha256.Sum256(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if sum == [32]byte{} {
		t.Fatal("no data")
	}
}

// Retry-After is honoured (seconds form), capped by MaxRetryAfter.
func TestRetryAfterIsHonoured(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, `{"dos":[],"total":0}`)
	}))
	defer srv.Close()
	s := &noSleep{}
	c := newClient(t, srv.URL, "k", s)
	if _, err := c.ListDOs(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if len(s.delays) != 1 || s.delays[0] != 7*time.Second {
		t.Fatalf("delays %v, want [7s]", s.delays)
	}
}

func TestBaseURLNormalisation(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		if r.Header.Get(edgebase.HeaderServiceKey) != "k" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", r.Header)
		}
		_, _ = io.WriteString(w, `{"dos":[],"total":0}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL+"/prefix/", "k", nil)
	if _, err := c.ListDOs(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if paths[0] != "/prefix/admin/api/backup/list-dos" {
		t.Fatalf("path %q", paths[0])
	}
	for _, bad := range []string{"", "ftp://x", "http://", "http://h/?q=1"} {
		if _, err := edgebase.NormalizeBaseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := edgebase.New(edgebase.Options{BaseURL: srv.URL}); err == nil {
		t.Error("a client without a service key was built")
	}
}

func TestHeaderTimeoutIsATransportError(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	c, err := edgebase.New(edgebase.Options{BaseURL: e.URL(), ServiceKey: sensitive.String(e.ServiceKey()),
		HeaderTimeout: 50 * time.Millisecond, Sleep: (&noSleep{}).sleep, Retry: edgebase.RetryPolicy{MaxAttempts: 2}})
	if err != nil {
		t.Fatal(err)
	}
	e.SetFault("list-dos", edgebasetest.Fault{Latency: 500 * time.Millisecond})
	_, err = c.ListDOs(context.Background(), nil)
	if !edgebase.IsTransport(err) || !strings.Contains(err.Error(), "no response headers") {
		t.Fatalf("err = %v", err)
	}
}

func TestEncodeURIComponent(t *testing.T) {
	for in, want := range map[string]string{
		"a b+c/d?e#f%": "a%20b%2Bc%2Fd%3Fe%23f%25",
		"ü-_.!~*'()":   "%C3%BC-_.!~*'()",
	} {
		if got := edgebase.EncodeURIComponent(in); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("staged part is corrupt") }

// A request body that cannot be produced is the caller's failure: it is
// reported as such and never retried as if the network had failed.
func TestBodyErrorIsNotRetried(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	c := newClient(t, e.URL(), e.ServiceKey(), &noSleep{})
	_, err := c.RestoreDO(context.Background(), "ledger", edgebase.TypeDatabase, func() (io.ReadCloser, error) {
		return io.NopCloser(failingReader{}), nil
	})
	if err == nil || edgebase.IsTransport(err) || !strings.Contains(err.Error(), "staged part is corrupt") {
		t.Fatalf("err = %v", err)
	}
	if n := len(e.RequestsTo("restore-do")); n > 1 {
		t.Fatalf("%d attempts, want at most 1", n)
	}
}
