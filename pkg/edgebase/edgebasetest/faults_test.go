package edgebasetest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

func TestFaultStatusNthAndFirstN(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	dump := func() call { return admin(t, e, "dump-do", `{"doName":"ledger","type":"database"}`) }

	e.SetFault("dump-do", edgebasetest.Fault{Status: 503, Nth: 2})
	expect(t, dump(), 200)
	expect(t, dump(), 503, `{"code":503,"message":"injected fault"}`)
	expect(t, dump(), 200)

	e.SetFault("dump-do", edgebasetest.Fault{Status: 429, Body: `{"code":429,"message":"slow down"}`, FirstN: 2})
	expect(t, dump(), 429, "slow down")
	expect(t, dump(), 429)
	expect(t, dump(), 200)

	e.SetFault("dump-do", edgebasetest.Fault{Status: 500, Match: func(r edgebasetest.Request) bool { return r.Fields["doName"] == "workspace:ws-1" }})
	expect(t, dump(), 200)
	expect(t, admin(t, e, "dump-do", `{"doName":"workspace:ws-1","type":"database"}`), 500)

	// "dump-storage" covers both actions.
	e.SetFault("dump-storage", edgebasetest.Fault{Status: 502})
	expect(t, admin(t, e, "dump-storage?action=list", ""), 502)
	expect(t, admin(t, e, "dump-storage?action=get&key=x", ""), 502)
	e.ClearFault("dump-storage")
	expect(t, admin(t, e, "dump-storage?action=list", ""), 200)

	e.SetFault("api:db:list", edgebasetest.Fault{Status: 500})
	expect(t, do(t, e, "GET", "/api/db/shared/tables/posts", ""), 500)
	e.ClearFaults()
	expect(t, do(t, e, "GET", "/api/db/shared/tables/posts", ""), 200)
	expect(t, dump(), 200)
}

func TestFaultLatency(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	e.SetFault("config", edgebasetest.Fault{Latency: 200 * time.Millisecond})
	start := time.Now()
	expect(t, do(t, e, "GET", "/admin/api/backup/config", ""), 200)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("latency %s", d)
	}
	// A client that gives up sees its own timeout.
	c := &http.Client{Timeout: 50 * time.Millisecond}
	req, _ := http.NewRequest("GET", e.URL()+"/admin/api/backup/config", nil)
	req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
	if _, err := c.Do(req); err == nil {
		t.Fatal("expected a client timeout")
	}
}

func TestFaultTruncatedBody(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	if err := e.AddObjects(context.Background(), edgebasetest.Object{Key: "uploads/big.bin", Size: 100000}); err != nil {
		t.Fatal(err)
	}
	e.SetFault("dump-storage:get", edgebasetest.Fault{Truncate: true, TruncateAfter: 1000, FirstN: 1})
	req, _ := http.NewRequest("POST", e.URL()+"/admin/api/backup/dump-storage?action=get&key=uploads%2Fbig.bin", nil)
	req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.ContentLength != 100000 {
		t.Fatalf("Content-Length %d", res.ContentLength)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != 1000 {
		t.Fatalf("read %d bytes, err %v; want 1000 and unexpected EOF", len(b), err)
	}
	// The next call is complete again.
	r := admin(t, e, "dump-storage?action=get&key=uploads%2Fbig.bin", "")
	if len(r.body) != 100000 {
		t.Fatalf("second get: %d bytes", len(r.body))
	}
	// JSON answers can be cut too.
	e.SetFault("dump-d1", edgebasetest.Fault{Truncate: true, TruncateAfter: 10})
	req, _ = http.NewRequest("POST", e.URL()+"/admin/api/backup/dump-d1", nil)
	req.Header.Set("X-EdgeBase-Service-Key", e.ServiceKey())
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil || len(b) != 10 {
		t.Fatalf("dump-d1 truncated: %d bytes, err %v", len(b), err)
	}
}

// The request log records endpoints and key body fields in order, so tests
// can assert the restore call order of spec 9.28.
func TestRequestLog(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	expect(t, admin(t, e, "restore-control-d1", `{"tables":{"_meta":[]}}`), 200)
	expect(t, admin(t, e, "restore-d1", `{"tables":{"_users":[],"_meta":[]},"skipWipe":true}`), 200)
	expect(t, admin(t, e, "list-dos", `{"hexIds":["a","b"]}`), 200)
	expect(t, admin(t, e, "wipe-do", `{"doName":"workspace:ws-9","type":"database"}`), 200)
	expect(t, admin(t, e, "restore-do", `{"doName":"ledger","type":"database","tables":{"entries":[]}}`), 200)
	expect(t, admin(t, e, "restore-data", `{"namespace":"shared","tables":{"posts":[],"tags":[]}}`), 200)
	expect(t, admin(t, e, "restore-storage?action=wipe", ""), 200)
	expect(t, do(t, e, "POST", "/admin/api/backup/restore-storage?action=put&key=uploads%2Fx", "x", "Content-Type", "text/plain"), 200)
	expect(t, admin(t, e, "resync-users-public", ""), 200)
	expect(t, admin(t, e, "nope", ""), 404)

	var got []string
	for _, r := range e.Requests() {
		got = append(got, fmt.Sprintf("%s %d %v", r.Endpoint, r.Status, r.Fields))
	}
	want := []string{
		"restore-control-d1 200 map[tables:_meta]",
		"restore-d1 200 map[skipWipe:true tables:_users,_meta]",
		"list-dos 200 map[hexIds:2]",
		"wipe-do 200 map[doName:workspace:ws-9 type:database]",
		"restore-do 200 map[doName:ledger tables:entries type:database]",
		"restore-data 200 map[namespace:shared tables:posts,tags]",
		"restore-storage:wipe 200 map[action:wipe]",
		"restore-storage:put 200 map[action:put key:uploads/x]",
		"resync-users-public 200 map[]",
		"nope 404 map[]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("request log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(e.RequestsTo("restore-storage")); n != 2 {
		t.Fatalf("RequestsTo(restore-storage) = %d", n)
	}
	reqs := e.Requests()
	for i := 1; i < len(reqs); i++ {
		if reqs[i].Seq != reqs[i-1].Seq+1 {
			t.Fatal("sequence numbers not consecutive")
		}
	}
	e.ResetRequests()
	if len(e.Requests()) != 0 {
		t.Fatal("ResetRequests kept entries")
	}
}

func TestPublicListPagination(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	ctx := context.Background()
	var rows []edgebasetest.Row
	for i := 0; i < 25; i++ {
		rows = append(rows, edgebasetest.Row{"id": fmt.Sprintf("p%02d", i), "title": fmt.Sprint("t", i)})
	}
	if err := e.AddRows(ctx, "shared", "posts", rows...); err != nil {
		t.Fatal(err)
	}
	if err := e.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"id": "e1", "amount": 3.0}, edgebasetest.Row{"id": "e2", "amount": 1.0}); err != nil {
		t.Fatal(err)
	}
	expect(t, do(t, e, "GET", "/api/db/shared/tables/posts?limit=10", ""), 200, `"total":25,"hasMore":true,"cursor":"p09","page":1,"perPage":10`)
	expect(t, do(t, e, "GET", "/api/db/shared/tables/posts?limit=10&after=p09", ""), 200, `"id":"p10"`, `"total":null,"hasMore":true,"cursor":"p19"`)
	expect(t, do(t, e, "GET", "/api/db/shared/tables/posts?perPage=10&page=3", ""), 200, `"id":"p20"`, `"hasMore":false,"cursor":null,"page":3,"perPage":10`)
	expect(t, do(t, e, "GET", "/api/db/shared/tables/posts?limit=-1", ""), 400, "must be non-negative")
	expect(t, do(t, e, "GET", "/api/db/ledger/tables/entries?sort=amount:desc", ""), 200, `{"items":[{"id":"e1"`, `"total":2,"page":1,"perPage":100,"hasMore":false,"cursor":"e2"}`)
	expect(t, do(t, e, "GET", "/api/db/ledger/tables/entries?limit=1&after=e1", ""), 200, `"items":[{"id":"e2"`, `"hasMore":true,"cursor":"e2"}`)
}

func TestPublicAuthAndUsers(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	r := do(t, e, "POST", "/api/auth/signup", `{"email":"A@x.test","password":"Passw0rd!1","data":{"displayName":"A"}}`)
	expect(t, r, 201, `"email":"a@x.test"`, `"displayName":"A"`, `"verified":false`, `"accessToken":"eyJ`, `"refreshToken":"eyJ`)
	if strings.Contains(string(r.body), "passwordHash") {
		t.Fatal("signup leaks passwordHash")
	}
	expect(t, do(t, e, "POST", "/api/auth/signup", `{"email":"a@x.test","password":"Passw0rd!1"}`), 409, "email-already-exists")
	if err := e.AddUsers(context.Background(), edgebasetest.NumberedUsers(3)...); err != nil {
		t.Fatal(err)
	}
	expect(t, do(t, e, "GET", "/api/auth/admin/users?limit=3", ""), 200, `"cursor":"3"`)
	expect(t, do(t, e, "GET", "/api/auth/admin/users?limit=3&cursor=3", ""), 200, `"cursor":null`)
	expect(t, do(t, e, "GET", "/api/auth/admin/users", "", "X-EdgeBase-Service-Key", "bad"), 401)
	d1 := admin(t, e, "dump-d1", "")
	expect(t, d1, 200, `"_sessions":[{"id":`, `"status":"confirmed"`, `"passwordHash":"pbkdf2:sha256:100000:`, `"passwordHash":"pbkdf2:sha256:1000:`)
	expect(t, admin(t, e, "resync-users-public", ""), 200, `{"ok":true,"totalSynced":4,"source":"d1"}`)
	expect(t, admin(t, e, "dump-d1", ""), 200, `"email":"user1@peer.test","displayName":"User 1"`)
}

func TestPublicStorage(t *testing.T) {
	e := newEmu(t, edgebasetest.Options{})
	ctx := context.Background()
	var objs []edgebasetest.Object
	for i := 0; i < 7; i++ {
		objs = append(objs, edgebasetest.Object{Key: fmt.Sprintf("uploads/k%d", i), ContentType: "text/plain", Data: []byte{byte('a' + i)}})
	}
	if err := e.AddObjects(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	r := do(t, e, "GET", "/api/storage/uploads?limit=3", "")
	expect(t, r, 200, `"key":"k0"`, `"contentType":"application/octet-stream"`, `"truncated":true`)
	cur := r.json(t)["cursor"].(string)
	expect(t, do(t, e, "GET", "/api/storage/uploads?limit=3&cursor="+cur, ""), 200, `"key":"k3"`, `"key":"k5"`)
	expect(t, do(t, e, "GET", "/api/storage/uploads?limit=3&offset=6", ""), 200, `"key":"k6"`, `"cursor":null,"truncated":false`)
	g := do(t, e, "GET", "/api/storage/uploads/k2", "")
	expect(t, g, 200, "c")
	if g.header.Get("Content-Type") != "text/plain" || g.header.Get("ETag") == "" || g.header.Get("Last-Modified") == "" {
		t.Fatalf("headers %v", g.header)
	}
	expect(t, do(t, e, "GET", "/api/storage/nobucket", ""), 404, "not-found")
	expect(t, do(t, e, "GET", "/api/storage/uploads?limit=x", ""), 400, "validation-failed")
}

func TestCleanupPluginDropsPrefixedTables(t *testing.T) {
	cfg := edgebasetest.DefaultConfig()
	cfg.Database("ledger").Tables = append(cfg.Database("ledger").Tables,
		edgebasetest.Table{Name: "plug/a", Schema: []edgebasetest.Field{{Name: "x", Type: "string"}}, FTS: []string{"x"}},
		edgebasetest.Table{Name: "plug/b", Schema: []edgebasetest.Field{{Name: "x", Type: "string"}}})
	cfg.Database("shared").Tables = append(cfg.Database("shared").Tables,
		edgebasetest.Table{Name: "plug/c", Schema: []edgebasetest.Field{{Name: "x", Type: "string"}}})
	e := newEmu(t, edgebasetest.Options{Config: &cfg})
	ctx := context.Background()
	if err := e.AddRows(ctx, "ledger", "plug/a", edgebasetest.Row{"x": "1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.AddRows(ctx, "shared", "plug/c", edgebasetest.Row{"x": "1"}); err != nil {
		t.Fatal(err)
	}
	expect(t, admin(t, e, "restore-control-d1", `{"tables":{"_meta":[{"key":"plugin_version:plug","value":"1"}]},"skipWipe":true}`), 200)
	expect(t, admin(t, e, "cleanup-plugin", `{"prefix":"plug/","doName":"ledger"}`), 200,
		`{"ok":true,"prefix":"plug","target":{"doName":"ledger"},"removed":{"tables":["plug/a","plug/b"],"metaKeys":["schemaHash:plug/a","migration_version:plug/a","schemaHash:plug/b","migration_version:plug/b","plugin_version:plug"]}}`)
	d := admin(t, e, "dump-do", `{"doName":"ledger","type":"database"}`)
	if strings.Contains(string(d.body), "plug/") {
		t.Fatalf("plugin tables left: %s", d.body)
	}
	expect(t, admin(t, e, "cleanup-plugin", `{"prefix":"plug","namespace":"shared"}`), 200, `"tables":["plug/c"]`)
	expect(t, admin(t, e, "cleanup-plugin", `{"prefix":"plug","doName":"ledger"}`), 200, `"tables":[]`)
	if strings.Contains(string(admin(t, e, "dump-control-d1", "").body), "plugin_version:plug") {
		t.Fatal("plugin_version row left")
	}
}

func TestFingerprintAndDiff(t *testing.T) {
	ctx := context.Background()
	a := newEmu(t, edgebasetest.Options{})
	b := newEmu(t, edgebasetest.Options{})
	for _, e := range []*edgebasetest.Emulator{a, b} {
		if err := edgebasetest.SeedHTTP(ctx, nil, e.URL(), e.ServiceKey(), edgebasetest.HTTPSeed{Users: 3, Instances: 2, Files: 4}); err != nil {
			t.Fatal(err)
		}
	}
	opts := func(e *edgebasetest.Emulator, ignore bool) edgebasetest.FingerprintOptions {
		o := edgebasetest.FingerprintOptions{ServiceKey: e.ServiceKey(), Instances: []string{"workspace:ws-1", "workspace:ws-2"}}
		if ignore {
			o.IgnoreColumns = []string{"id", "createdAt", "updatedAt"}
		}
		return o
	}
	fa, err := edgebasetest.TakeFingerprint(ctx, a.URL(), opts(a, true))
	if err != nil {
		t.Fatal(err)
	}
	fb, err := edgebasetest.TakeFingerprint(ctx, b.URL()+"/", opts(b, true))
	if err != nil {
		t.Fatal(err)
	}
	if d := edgebasetest.Diff(fa, fb); d != "" || !fa.Equal(fb) {
		t.Fatalf("same seed, different fingerprints:\n%s", d)
	}
	// The storage lines do not depend on ids: they equal the peer's for
	// seed.sh files 1-4 (recorded with fingerprint.sh on the peer).
	want := []string{
		`object "uploads/f/1.txt" 51 40dacf047cd39123acd23cfc41c4394521991883b51836eb928847f98af4cb54 "text/plain"`,
		`object "avatars/f/2.txt" 88 718b1af2430e0e14bf0e17be8c711cebc42b69847212ea68d53b4feef1d00651 "text/plain"`,
	}
	for _, w := range want {
		if !strings.Contains(fa.String(), w+"\n") {
			t.Errorf("fingerprint lacks %s:\n%s", w, fa)
		}
	}
	// Ids differ between the two servers, so a full fingerprint differs,
	// and a change shows up as a -/+ pair.
	full, err := edgebasetest.TakeFingerprint(ctx, a.URL(), opts(a, false))
	if err != nil {
		t.Fatal(err)
	}
	if full.Equal(fa) {
		t.Fatal("ignoring columns changed nothing")
	}
	if err := b.AddObjects(ctx, edgebasetest.Object{Key: "uploads/f/1.txt", ContentType: "text/csv", Data: []byte("changed")}); err != nil {
		t.Fatal(err)
	}
	fb2, err := edgebasetest.TakeFingerprint(ctx, b.URL(), opts(b, true))
	if err != nil {
		t.Fatal(err)
	}
	d := edgebasetest.Diff(fa, fb2)
	if !strings.Contains(d, `- object "uploads/f/1.txt" 51`) || !strings.Contains(d, `+ object "uploads/f/1.txt" 7`) || !strings.Contains(d, `"text/csv"`) {
		t.Fatalf("diff:\n%s", d)
	}
}
