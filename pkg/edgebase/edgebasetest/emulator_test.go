package edgebasetest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// clock is a settable clock for eviction and timestamps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type call struct {
	status int
	header http.Header
	body   []byte
}

func (c call) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(c.body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", c.body, err)
	}
	return m
}

func do(t *testing.T, e *edgebasetest.Emulator, method, path, body string, hdr ...string) call {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return call{res.StatusCode, res.Header, b}
}

func admin(t *testing.T, e *edgebasetest.Emulator, route, body string) call {
	t.Helper()
	return do(t, e, http.MethodPost, "/admin/api/backup/"+route, body)
}

func expect(t *testing.T, c call, status int, contains ...string) {
	t.Helper()
	if c.status != status {
		t.Fatalf("status %d, want %d: %s", c.status, status, c.body)
	}
	for _, s := range contains {
		if !strings.Contains(string(c.body), s) {
			t.Fatalf("body lacks %q: %s", s, c.body)
		}
	}
}

func newEmu(t *testing.T, opts edgebasetest.Options) *edgebasetest.Emulator {
	t.Helper()
	return edgebasetest.NewTest(t, opts)
}

func TestDefaultsAndClose(t *testing.T) {
	e, err := edgebasetest.New(edgebasetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e.ServiceKey() != edgebasetest.DefaultServiceKey || !strings.HasPrefix(e.URL(), "http://127.0.0.1:") {
		t.Fatalf("defaults: %s %s", e.ServiceKey(), e.URL())
	}
	expect(t, do(t, e, "GET", "/api/health", ""), 200, `"status":"ok"`)
	dir := e.StateDir()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary state dir %s not removed: %v", dir, err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStateDirPersistsAcrossEmulators(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	e1, err := edgebasetest.New(edgebasetest.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := e1.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"id": "t1", "title": "persist"}); err != nil {
		t.Fatal(err)
	}
	if err := e1.AddObjects(ctx, edgebasetest.Object{Key: "uploads/a.txt", ContentType: "text/plain", Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := newEmu(t, edgebasetest.Options{StateDir: dir})
	expect(t, admin(t, e2, "dump-do", `{"doName":"workspace:ws-1","type":"database"}`), 200, `"title":"persist"`)
	expect(t, admin(t, e2, "dump-storage?action=get&key=uploads%2Fa.txt", ""), 200, "hello")
}

// Timestamps and generated ids come from the injected clock.
func TestClockDrivesTimestamps(t *testing.T) {
	c := newClock()
	e := newEmu(t, edgebasetest.Options{Now: c.Now})
	expect(t, admin(t, e, "dump-d1", ""), 200, `"timestamp":"2026-03-07T10:00:00.000Z"`)
	r := do(t, e, "POST", "/api/db/shared/tables/tags", `{"name":"x"}`)
	expect(t, r, 201, `"createdAt":"2026-03-07T10:00:00.000Z"`)
	if id := r.json(t)["id"].(string); !strings.HasPrefix(id, "019cc7bd-5500-7") {
		t.Fatalf("id %s not derived from the clock", id)
	}
}

func TestScopedKeysAndConstraints(t *testing.T) {
	c := newClock()
	cfg := edgebasetest.DefaultConfig()
	cfg.ServiceKeys = append(cfg.ServiceKeys,
		edgebasetest.ServiceKey{Kid: "b", Tier: "scoped", Scopes: []string{"backup:*:*:*"}, SecretSource: "inline", InlineSecret: "jb_b_1"},
		edgebasetest.ServiceKey{Kid: "later", Tier: "scoped", Scopes: []string{"*"}, SecretSource: "inline", InlineSecret: "jb_later_1", ExpiresAt: "2026-03-07T10:00:05.000Z"},
		edgebasetest.ServiceKey{Kid: "prod", Tier: "scoped", Scopes: []string{"*"}, SecretSource: "inline", InlineSecret: "jb_prod_1", Env: []string{"production"}},
		edgebasetest.ServiceKey{Kid: "net", Tier: "scoped", Scopes: []string{"*"}, SecretSource: "inline", InlineSecret: "jb_net_1", IPCidr: []string{"10.0.0.0/8"}},
	)
	e := newEmu(t, edgebasetest.Options{Config: &cfg, Now: c.Now})
	key := func(k string) call {
		return do(t, e, "POST", "/admin/api/backup/list-dos", "", "X-EdgeBase-Service-Key", k)
	}
	expect(t, key("jb_b_1"), 200)
	expect(t, key("jb_later_1"), 200)
	c.Add(10 * time.Second)
	expect(t, key("jb_later_1"), 401)
	expect(t, key("jb_prod_1"), 401)
	expect(t, key("jb_net_1"), 401)
	expect(t, do(t, e, "POST", "/admin/api/backup/list-dos", "", "X-EdgeBase-Service-Key", "jb_net_1", "CF-Connecting-IP", "10.1.2.3"), 200)
	// Only scoped keys left: a plain key is "missing" (403), per spec 1.2.
	cfg2 := edgebasetest.DefaultConfig()
	cfg2.ServiceKeys = []edgebasetest.ServiceKey{{Kid: "b", Tier: "scoped", Scopes: []string{"*"}, SecretSource: "inline", InlineSecret: "jb_b_1"}}
	e2 := newEmu(t, edgebasetest.Options{Config: &cfg2})
	expect(t, do(t, e2, "POST", "/admin/api/backup/list-dos", "", "X-EdgeBase-Service-Key", "plain"), 403)
	// No usable keys at all: 403 even for a key.
	cfg3 := edgebasetest.DefaultConfig()
	cfg3.ServiceKeys = []edgebasetest.ServiceKey{}
	e3 := newEmu(t, edgebasetest.Options{Config: &cfg3})
	expect(t, do(t, e3, "POST", "/admin/api/backup/list-dos", ""), 403)
}

func TestListDOsHexModeFollowsWarmth(t *testing.T) {
	c := newClock()
	e := newEmu(t, edgebasetest.Options{Now: c.Now, Worker: "eb-app"})
	ctx := context.Background()
	if err := e.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"title": "a"}); err != nil {
		t.Fatal(err)
	}
	hex := e.DOID("workspace:ws-1")
	if hex != "119191f8a0e618bfb5f02c737bfa4a5ae75fa512e6a1ecead8c096f4d7ba2f71" {
		t.Fatalf("hex id %s differs from the peer's", hex)
	}
	body := fmt.Sprintf(`{"hexIds":[%q]}`, hex)
	// Seeded DOs are cold: their name is not in memory.
	expect(t, admin(t, e, "list-dos", body), 200, `{"dos":[],"total":0}`)
	expect(t, admin(t, e, "dump-do", `{"doName":"workspace:ws-1","type":"database"}`), 200)
	expect(t, admin(t, e, "list-dos", body), 200, `{"doName":"workspace:ws-1","type":"database","namespace":"DATABASE"}`)
	c.Add(9 * time.Second)
	expect(t, admin(t, e, "list-dos", body), 200, `"total":1`) // the hex call keeps it warm
	c.Add(11 * time.Second)
	expect(t, admin(t, e, "list-dos", body), 200, `"total":0`)
	expect(t, admin(t, e, "dump-do", `{"doName":"workspace:ws-1","type":"database"}`), 200)
	e.Restart()
	expect(t, admin(t, e, "list-dos", body), 200, `"total":0`)
	// A valid AuthDO id resolves to doName "unknown".
	auth := edgebasetest.ObjectID("eb-app", "AuthDO", "x")
	expect(t, admin(t, e, "list-dos", `{"hexIds":["`+auth+`"]}`), 200, `{"doName":"unknown","type":"auth","namespace":"AUTH"}`)
	// A never-used but valid id creates an empty DO file (no name).
	ghost := e.DOID("ghost")
	expect(t, admin(t, e, "list-dos", `{"hexIds":["`+ghost+`"]}`), 200, `"total":0`)
	insts, err := e.DOInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range insts {
		if in.HexID == ghost {
			found = true
			if in.Name != "" || !in.HasData {
				t.Fatalf("ghost DO: %+v", in)
			}
		}
	}
	if !found {
		t.Fatal("ghost DO file not created")
	}
	// Never evicting keeps names forever.
	e2 := newEmu(t, edgebasetest.Options{Now: c.Now, EvictAfter: -1})
	expect(t, admin(t, e2, "dump-do", `{"doName":"ledger","type":"database"}`), 200)
	c.Add(time.Hour)
	expect(t, admin(t, e2, "list-dos", `{"hexIds":["`+e2.DOID("ledger")+`"]}`), 200, `"total":1`)
}

func TestDOInstancesAndGhostFiles(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	ctx := context.Background()
	if _, err := e.SeedDemo(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, admin(t, e, "dump-do", `{"doName":"workspace","type":"database"}`), 400, "INVALID_DB_INSTANCE_ID")
	expect(t, admin(t, e, "dump-do", `{"doName":"workspace:ws-99","type":"database"}`), 200, "needsCreate")
	insts, err := e.DOInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, in := range insts {
		got[in.Name] = in.HasData
		if in.Class != "DatabaseDO" || len(in.HexID) != 64 || in.HexID != e.DOID(in.Name) {
			t.Errorf("instance %+v", in)
		}
		if filepath.Base(in.Path) != in.HexID+".sqlite" || !strings.HasPrefix(in.Path, filepath.Join(e.StateDir(), "v3", "do", "edgebase-DatabaseDO")) {
			t.Errorf("path %s", in.Path)
		}
	}
	want := map[string]bool{"ledger": true, "workspace:ws-1": true, "workspace:ws-2": true, "workspace:ws-3": true, "workspace:ws-4": true, "workspace": false, "workspace:ws-99": false}
	for n, has := range want {
		if h, ok := got[n]; !ok || h != has {
			t.Errorf("instance %s: present=%v hasData=%v, want hasData=%v", n, ok, h, has)
		}
	}
}

func TestNeedsCreateThenPublicGetCreates(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	body := `{"doName":"workspace:ws-5","type":"database","tables":{"tasks":[{"id":"t1","title":"x","done":1}]}}`
	r := admin(t, e, "restore-do", body)
	expect(t, r, 200, `{"needsCreate":true,"namespace":"workspace","id":"ws-5"}`)
	if strings.Contains(string(r.body), `"ok"`) {
		t.Fatal("needsCreate reply must not carry ok")
	}
	expect(t, do(t, e, "GET", "/api/db/workspace/ws-5/tables/tasks", ""), 200, `"items":[]`)
	expect(t, admin(t, e, "restore-do", body), 200, `{"ok":true,"restored":1}`)
	expect(t, do(t, e, "GET", "/api/db/workspace/ws-5/tables/tasks", ""), 200, `"done":true`)
	// Without the service key and without access functions creation is refused.
	cfg := edgebasetest.DefaultConfig()
	cfg.Database("workspace").Access = false
	e2 := newEmu(t, edgebasetest.Options{Config: &cfg})
	expect(t, do(t, e2, "GET", "/api/db/workspace/ws-5/tables/tasks", "", "X-EdgeBase-Service-Key", ""), 403, "CANNOT_CREATE_DB")
	expect(t, do(t, e2, "GET", "/api/db/workspace/ws-5/tables/tasks", ""), 200)
}

func TestRestoreDOIsAtomicAndRebuildsSchema(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	ctx := context.Background()
	if err := e.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"id": "keep", "amount": 1.5}); err != nil {
		t.Fatal(err)
	}
	expect(t, admin(t, e, "restore-do", `{"doName":"ledger","type":"database","tables":{"entries":[{"id":"a"},{"id":"b","bogus":1}]}}`), 500, "DO restore failed:")
	expect(t, admin(t, e, "dump-do", `{"doName":"ledger","type":"database"}`), 200, `"id":"keep"`)
	r := admin(t, e, "restore-do", `{"doName":"ledger","type":"database","tables":{"entries":[{"id":"a","memo":{"__blob__":true,"data":"AP8="}}],"gone":[{"x":1}]}}`)
	expect(t, r, 200, `{"ok":true,"restored":2}`)
	d := admin(t, e, "dump-do", `{"doName":"ledger","type":"database"}`)
	expect(t, d, 200, `{"id":"a","createdAt":null,"updatedAt":null,"amount":null,"memo":{"__blob__":true,"data":"AP8="}}`)
	if strings.Contains(string(d.body), "keep") || strings.Contains(string(d.body), `"gone"`) || strings.Contains(string(d.body), "__miniflare_do_name") {
		t.Fatalf("restore did not replace the DO: %s", d.body)
	}
}

func TestColdRestoreLockedQuirk(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{Quirks: edgebasetest.Quirks{ColdRestoreLocked: 2}})
	ctx := context.Background()
	if err := e.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"title": "a"}); err != nil {
		t.Fatal(err)
	}
	body := `{"doName":"workspace:ws-1","type":"database","tables":{"tasks":[{"id":"t","title":"b"}]}}`
	expect(t, admin(t, e, "restore-do", body), 500, "Database request failed while handling '/internal/backup/restore'")
	expect(t, admin(t, e, "restore-do", body), 500)
	expect(t, admin(t, e, "restore-do", body), 200, `"ok":true`)
	// Static DOs skip the gate, so they never hit it.
	if err := e.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"amount": 1.0}); err != nil {
		t.Fatal(err)
	}
	expect(t, admin(t, e, "restore-do", `{"doName":"ledger","type":"database","tables":{}}`), 200)
}

func TestWipeDO(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	ctx := context.Background()
	if err := e.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"title": "a"}); err != nil {
		t.Fatal(err)
	}
	expect(t, admin(t, e, "wipe-do", `{"doName":"workspace:ws-1","type":"database"}`), 200, `{"ok":true,"doName":"workspace:ws-1"}`)
	expect(t, admin(t, e, "dump-do", `{"doName":"workspace:ws-1","type":"database"}`), 200, `"schema":{},"tables":{}`)
	e.Restart()
	expect(t, admin(t, e, "dump-do", `{"doName":"workspace:ws-1","type":"database"}`), 200, `"needsCreate":true`)
	insts, _ := e.DOInstances(ctx)
	for _, in := range insts {
		if in.Name == "workspace:ws-1" && in.HasData {
			t.Fatalf("wiped DO still has data: %+v", in)
		}
	}
}

// Appendix A.2: on a never-used target, restoring _meta rows that name the
// D1 tables makes restore-data fail; touching the tables first avoids it.
func TestFreshTargetNoSuchTableQuirk(t *testing.T) {
	meta := `[{"key":"schemaHash:posts","value":"f45effbb"},{"key":"schemaHash:tags","value":"e487bb41"}]`
	restore := func(e *edgebasetest.Emulator) call {
		expect(t, admin(t, e, "restore-control-d1", `{"tables":{"_meta":`+meta+`}}`), 200)
		expect(t, admin(t, e, "restore-d1", `{"tables":{"_meta":`+meta+`}}`), 200)
		return admin(t, e, "restore-data", `{"namespace":"shared","tables":{"posts":[{"id":"p1","title":"a"}],"_meta":`+meta+`}}`)
	}
	broken := newEmu(t, edgebasetest.Options{})
	expect(t, restore(broken), 500, "Backup operation failed unexpectedly.")
	expect(t, do(t, broken, "GET", "/api/db/shared/tables/posts", ""), 500)
	broken.Restart()
	expect(t, do(t, broken, "GET", "/api/db/shared/tables/posts", ""), 500) // stays broken: the hash says the table exists

	primed := newEmu(t, edgebasetest.Options{})
	for _, tb := range []string{"posts", "tags"} {
		expect(t, do(t, primed, "GET", "/api/db/shared/tables/"+tb+"?limit=1", ""), 200)
	}
	expect(t, restore(primed), 200, `{"ok":true,"namespace":"shared","restored":2}`)
	expect(t, do(t, primed, "GET", "/api/db/shared/tables/posts", ""), 200, `"id":"p1"`)

	separate := newEmu(t, edgebasetest.Options{SeparateD1: true})
	expect(t, restore(separate), 200)
}

func TestRestoreD1BatchesAndChunking(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	ctx := context.Background()
	users := make([]edgebasetest.User, 250)
	for i := range users {
		users[i] = edgebasetest.User{Email: fmt.Sprintf("u%03d@x.test", i)}
	}
	if err := e.AddUsers(ctx, users...); err != nil {
		t.Fatal(err)
	}
	dump := admin(t, e, "dump-d1", "")
	expect(t, dump, 200)
	var d struct {
		Tables map[string][]json.RawMessage `json:"tables"`
	}
	if err := json.Unmarshal(dump.body, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Tables) != 16 || len(d.Tables["_users"]) != 250 || len(d.Tables["_email_index"]) != 250 {
		t.Fatalf("dump-d1: %d tables, %d users", len(d.Tables), len(d.Tables["_users"]))
	}
	tables, _ := json.Marshal(d.Tables)
	// Single call.
	expect(t, admin(t, e, "restore-d1", `{"tables":`+string(tables)+`}`), 200, `{"ok":true,"restored":16}`)
	single := admin(t, e, "dump-d1", "")
	// Chunked: wipe, then per table with skipWipe.
	expect(t, admin(t, e, "restore-d1", `{"tables":{}}`), 200, `"restored":0`)
	expect(t, admin(t, e, "dump-d1", ""), 200, `"_users":[]`)
	for _, name := range []string{"_users", "_email_index", "_users_public"} {
		rows, _ := json.Marshal(map[string]any{name: d.Tables[name]})
		expect(t, admin(t, e, "restore-d1", `{"skipWipe":true,"tables":`+string(rows)+`}`), 200, `"restored":1`)
	}
	chunked := admin(t, e, "dump-d1", "")
	strip := func(b []byte) string { return string(b[:bytes.LastIndex(b, []byte(`"timestamp"`))]) }
	if strip(single.body) != strip(chunked.body) {
		t.Fatal("chunked restore differs from single-call restore")
	}
}

func TestExportFormat(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	if err := e.AddRows(context.Background(), "shared", "tags", edgebasetest.Row{"id": "a", "name": "x", "createdAt": nil, "updatedAt": nil}); err != nil {
		t.Fatal(err)
	}
	r := do(t, e, "GET", "/admin/api/backup/export/tags", "")
	expect(t, r, 200)
	want := "[\n  {\n    \"id\": \"a\",\n    \"createdAt\": null,\n    \"updatedAt\": null,\n    \"name\": \"x\"\n  }\n]"
	if string(r.body) != want {
		t.Fatalf("export body %q", r.body)
	}
	if r.header.Get("Content-Disposition") != `attachment; filename="tags-export.json"` || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", r.header)
	}
	expect(t, do(t, e, "GET", "/admin/api/backup/export/tags?format=csv", ""), 400)
	expect(t, do(t, e, "GET", "/admin/api/backup/export/nope", ""), 404)
	empty := do(t, e, "GET", "/admin/api/backup/export/posts", "")
	expect(t, empty, 200)
	if string(empty.body) != "[]" {
		t.Fatalf("empty export %q", empty.body)
	}
}

func TestStorageRoundTripOddKeys(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	keys := []string{"uploads/a b+c%d#e?f.txt", "uploads/日本語/ファイル.txt", "uploads/emoji😀.bin", "avatars/deep/a/b/c/d.png", "uploads/tab\there"}
	for i, k := range keys {
		expect(t, do(t, e, "POST", "/admin/api/backup/restore-storage?action=put&key="+url.QueryEscape(k), fmt.Sprint("content ", i), "Content-Type", "image/png"), 200, `"size":9`)
	}
	list := admin(t, e, "dump-storage?action=list", "")
	expect(t, list, 200, fmt.Sprintf(`"total":%d`, len(keys)))
	if strings.Contains(string(list.body), "image/png") {
		t.Fatal("list must report application/octet-stream, like the peer")
	}
	for i, k := range keys {
		r := admin(t, e, "dump-storage?action=get&key="+url.QueryEscape(k), "")
		expect(t, r, 200)
		if string(r.body) != fmt.Sprint("content ", i) || r.header.Get("Content-Type") != "image/png" || r.header.Get("X-R2-Key") != k || r.header.Get("Content-Length") != "9" {
			t.Fatalf("get %q: %q %v", k, r.body, r.header)
		}
	}
	expect(t, admin(t, e, "restore-storage?action=wipe", ""), 200, fmt.Sprintf(`{"ok":true,"deleted":%d}`, len(keys)))
	expect(t, admin(t, e, "dump-storage?action=list", ""), 200, `"objects":[]`)
}

func TestSeedDemoContent(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	ctx := context.Background()
	sum, err := e.SeedDemo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Objects < 200 || sum.Users < 10 || len(sum.Instances) < 3 {
		t.Fatalf("summary %+v", sum)
	}
	list := admin(t, e, "dump-storage?action=list", "")
	expect(t, list, 200, fmt.Sprintf(`"total":%d`, sum.Objects), `"key":"uploads/empty.bin","size":0`, `"key":"uploads/one.bin","size":1`, "uploads/日本語/ファイル.txt", "uploads/100%.txt", "uploads/hash#1.txt", "uploads/what?.txt")
	ws3 := admin(t, e, "dump-do", `{"doName":"workspace:ws-3","type":"database"}`)
	expect(t, ws3, 200, `"done":9007199254740992`, `"done":9223372036854776000`, `"done":-9223372036854776000`, `"done":null`, `{"__blob__":true,"data":"AGJpbmFyef8="}`)
	led := admin(t, e, "dump-do", `{"doName":"ledger","type":"database"}`)
	expect(t, led, 200, `"amount":1e+21`, `"amount":5e-324`, `"amount":-3.5e-7`, `"memo":{"__blob__":true,"data":"AAH+/w=="}`, `"memo":{"__blob__":true,"data":""}`)
	r := admin(t, e, "dump-storage?action=get&key="+url.QueryEscape("uploads/bytes.bin"), "")
	if len(r.body) != 256 || r.body[255] != 0xff {
		t.Fatalf("binary object: %d bytes", len(r.body))
	}
	big := admin(t, e, "dump-storage?action=get&key=avatars%2Fbig.bin", "")
	wantBig, _ := io.ReadAll(edgebasetest.GeneratedContent("avatars/big.bin", 1<<20))
	if !bytes.Equal(big.body, wantBig) || big.header.Get("Content-Type") != "application/x-big" {
		t.Fatalf("generated object differs (%d bytes, %s)", len(big.body), big.header.Get("Content-Type"))
	}
	expect(t, admin(t, e, "dump-data", `{"namespace":"shared"}`), 200, `"title":"日本語のタイトル 2"`, `"body":null`)
}

func TestSeedBenchMatchesScript(t *testing.T) {
	cfg := edgebasetest.BenchConfig(500)
	e := newEmu(t, edgebasetest.Options{Config: &cfg})
	ctx := context.Background()
	start := time.Now()
	if err := e.SeedBench(ctx, 500, 2000); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("SeedBench(500, 2000): %s", took)
	if took > 30*time.Second { // ~1.5 s normally; generous for -race and busy machines
		t.Errorf("seeding took %s", took)
	}
	expect(t, admin(t, e, "list-dos", "{}"), 200, `"total":502`)
	expect(t, admin(t, e, "dump-do", `{"doName":"do500","type":"database"}`), 200, `"title":"do500 item 3","n":3`)
	list := admin(t, e, "dump-storage?action=list", "")
	expect(t, list, 200, `"total":2000`, `{"key":"uploads/bench/99.bin","size":1048577`)
	// Object 1 of seed-bench.sh: 4097 bytes of AES-128-CTR keystream.
	r := admin(t, e, "dump-storage?action=get&key=uploads%2Fbench%2F1.bin", "")
	sum := sha256.Sum256(r.body)
	if len(r.body) != 4097 || hex.EncodeToString(sum[:]) != benchObject1SHA {
		t.Fatalf("bench object 1: %d bytes sha %x", len(r.body), sum)
	}
	insts, err := e.DOInstances(ctx)
	if err != nil || len(insts) != 501 { // ledger + do001..do500
		t.Fatalf("DO instances: %d %v", len(insts), err)
	}
}

// sha256 of seed-bench.sh's object 1 (node: AES-128-CTR keystream, key/iv =
// sha256("peer-bench-1")).
const benchObject1SHA = "03ab9708306ba7d3d83e49f200004bb55cf2dd3062308f1a95841051d12cdb1b"

// restore-d1 commits every batch of 100 on its own: a bad row in the third
// batch leaves the table wiped plus the first 200 rows.
func TestRestoreD1IsNotAtomic(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	if err := e.AddUsers(context.Background(), edgebasetest.User{Email: "old@x.test"}); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for i := 0; i < 250; i++ {
		col := "email"
		if i == 230 {
			col = "bogus"
		}
		rows = append(rows, fmt.Sprintf(`{"id":"u%03d","%s":"u%d@x.test","createdAt":"a","updatedAt":"b"}`, i, col, i))
	}
	expect(t, admin(t, e, "restore-d1", `{"tables":{"_users":[`+strings.Join(rows, ",")+`]}}`), 500)
	var d struct {
		Tables map[string][]map[string]any `json:"tables"`
	}
	if err := json.Unmarshal(admin(t, e, "dump-d1", "").body, &d); err != nil {
		t.Fatal(err)
	}
	if n := len(d.Tables["_users"]); n != 200 {
		t.Fatalf("%d users after a failed restore, want 200", n)
	}
}

// Many DOs in parallel: file handles are recycled (LRU) without losing data.
func TestConcurrentDOAccess(t *testing.T) {
	cfg := edgebasetest.BenchConfig(120)
	e := newEmu(t, edgebasetest.Options{Config: &cfg})
	if err := e.SeedBench(context.Background(), 120, 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 240)
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < 240; i += 12 {
				n := i%120 + 1
				body := fmt.Sprintf(`{"doName":"do%03d","type":"database"}`, n)
				req, _ := http.NewRequest("POST", e.URL()+"/admin/api/backup/dump-do", strings.NewReader(body))
				req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
				req.Header.Set("Content-Type", "application/json")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || !strings.Contains(string(b), fmt.Sprintf(`"title":"do%03d item 3"`, n)) {
					errs <- fmt.Errorf("do%03d: %d %.200s", n, res.StatusCode, b)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
