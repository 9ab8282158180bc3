package contract

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

const B = "/admin/api/backup"

// step is one request and what must come back. Every step's full answer
// is also compared with its golden (recorded from the peer).
type step struct {
	name    string
	req     req
	status  int
	message string // substring the body must contain ("" = none)
}

func post(path, body string) req { return req{method: http.MethodPost, path: B + path, body: body} }
func get(path string) req        { return req{method: http.MethodGet, path: path} }

// The table. Order matters: later steps see the effects of earlier ones.
var steps = []step{
	// ── auth (spec 1.2, checklist 1-2) ──
	{"auth-no-header", req{method: "POST", path: B + "/list-dos", key: "-"}, 403, "Service Key required for backup operations."},
	{"auth-empty-header", req{method: "POST", path: B + "/list-dos", key: "<empty>"}, 401, "Invalid or missing Service Key."},
	{"auth-wrong-key", req{method: "POST", path: B + "/list-dos", key: "wrong"}, 401, "Invalid or missing Service Key."},
	{"auth-bearer-not-accepted", req{method: "POST", path: B + "/list-dos", key: "-", header: map[string]string{"Authorization": "Bearer " + rootKey}}, 403, "Service Key required"},
	{"auth-scoped-backup", req{method: "POST", path: B + "/list-dos", key: edgebasetest.ContractBackupKey}, 200, ""},
	{"auth-scoped-wrong-scope", req{method: "POST", path: B + "/list-dos", key: edgebasetest.ContractReaderKey}, 401, "Invalid or missing Service Key."},
	{"auth-scoped-expired", req{method: "POST", path: B + "/list-dos", key: edgebasetest.ContractExpiredKey}, 401, ""},
	{"auth-scoped-unknown-kid", req{method: "POST", path: B + "/list-dos", key: "jb_nobody_x"}, 401, ""},
	{"auth-scoped-reader-public-read", req{method: "GET", path: "/api/db/shared/tables/tags?limit=1", key: edgebasetest.ContractReaderKey}, 200, ""},
	{"auth-public-invalid-key", req{method: "GET", path: "/api/db/shared/tables/tags?limit=1", key: "wrong"}, 401, "Invalid X-EdgeBase-Service-Key for scope 'db:table:tags:read'."},

	// ── routing ──
	{"route-unknown-post", post("/nope", ""), 404, "Path '/admin/api/backup/nope' was not found on this EdgeBase server."},
	{"route-unknown-get", get(B + "/nope"), 307, ""},
	{"route-get-on-post-route", get(B + "/list-dos"), 307, ""},
	{"route-post-on-get-route", post("/config", ""), 404, ""},
	{"route-unknown-no-key", req{method: "POST", path: B + "/nope", key: "-"}, 403, ""},
	{"route-root-unknown", get("/nope"), 404, "Path '/nope' was not found"},
	{"health", get("/api/health"), 200, `"status":"ok"`},

	// ── config (2.2) ──
	{"config", get(B + "/config"), 200, `"inlineSecret":"jb_backup_contract-secret-1"`},

	// ── list-dos config scan (2.1) ──
	{"list-dos-no-body", req{method: "POST", path: B + "/list-dos", ct: "-"}, 200, `"total":4`},
	{"list-dos-empty-object", post("/list-dos", "{}"), 200, ""},
	{"list-dos-empty-hexids", post("/list-dos", `{"hexIds":[]}`), 200, ""},
	{"list-dos-malformed-json", post("/list-dos", "garbage"), 500, "Backup operation failed unexpectedly."},
	{"list-dos-hexids-not-array", post("/list-dos", `{"hexIds":"x"}`), 400, "hexIds: Invalid input: expected array, received string"},

	// ── dump-do (2.5) ──
	{"dump-do-ledger", post("/dump-do", `{"doName":"ledger","type":"database"}`), 200, `"__miniflare_do_name":[{"id":1,"name":"ledger"}]`},
	{"dump-do-instance", post("/dump-do", `{"doName":"workspace:ws-1","type":"database"}`), 200, `"schemaHash:tasks"`},
	{"list-dos-hexids-warm", post("/list-dos", `{"hexIds":["{{hex:workspace:ws-1}}","{{hex:ledger}}","{{hex:workspace:ws-2}}","zz","0000000000000000000000000000000000000000000000000000000000000000","{{authhex:anything}}"]}`), 200, ""},
	{"dump-do-bare-dynamic", post("/dump-do", `{"doName":"workspace","type":"database"}`), 400, "INVALID_DB_INSTANCE_ID"},
	{"dump-do-needs-create", post("/dump-do", `{"doName":"workspace:ws-99","type":"database"}`), 200, `{"needsCreate":true,"namespace":"workspace","id":"ws-99"}`},
	{"dump-do-static-with-id", post("/dump-do", `{"doName":"ledger:x","type":"database"}`), 400, "instanceId is not allowed for single-instance namespace 'ledger'"},
	{"dump-do-unconfigured", post("/dump-do", `{"doName":"foo","type":"database"}`), 200, `{"needsCreate":true,"namespace":"foo"}`},
	{"dump-do-empty-name", post("/dump-do", `{"doName":"","type":"database"}`), 400, "doName is required."},
	{"dump-do-missing-type", post("/dump-do", `{"doName":"ledger"}`), 400, `type: Invalid option: expected one of \"database\"|\"auth\"`},
	{"dump-do-missing-both", post("/dump-do", `{}`), 400, "doName: Invalid input: expected string, received undefined, type:"},
	{"dump-do-array-body", post("/dump-do", `[]`), 400, "Invalid input: expected object, received array"},
	{"dump-do-malformed", post("/dump-do", "garbage"), 500, ""},
	{"dump-do-not-json-content-type", req{method: "POST", path: B + "/dump-do", body: `{"doName":"ledger","type":"database"}`, ct: "text/plain"}, 500, ""},
	{"dump-do-auth-stub", post("/dump-do", `{"doName":"ledger","type":"auth"}`), 200, `{"doName":"ledger","tables":{},"users":[]}`},
	{"dump-do-shared-static", post("/dump-do", `{"doName":"shared","type":"database"}`), 200, `"posts":[]`},
	{"dump-do-underscore", post("/dump-do", `{"doName":"_system","type":"database"}`), 200, ""},
	{"dump-do-fts", post("/dump-do", `{"doName":"search","type":"database"}`), 200, `"notes_fts"`},

	// ── restore-do (2.6) ──
	{"restore-do-needs-create", post("/restore-do", `{"doName":"workspace:ws-77","type":"database","tables":{"tasks":[{"id":"t1","title":"x"}]}}`), 200, `"needsCreate":true`},
	{"restore-do-unknown-column", post("/restore-do", `{"doName":"ledger","type":"database","tables":{"entries":[{"id":"x","bogus":1}]}}`), 500, `DO restore failed: {\"code\":500,\"message\":\"Database request failed while handling '/internal/backup/restore'.`},
	{"restore-do-still-intact", post("/dump-do", `{"doName":"ledger","type":"database"}`), 200, `"entry 5"`},
	{"restore-do-missing-tables", post("/restore-do", `{"doName":"ledger","type":"database"}`), 400, "tables: Invalid input: expected record, received undefined"},
	{"restore-do-bad-rows", post("/restore-do", `{"doName":"ledger","type":"database","tables":{"a":[1,null],"b":null,"c":[[]],"d":{}}}`), 400, "tables.a[0]: Invalid input: expected record, received number"},
	{"restore-do-auth", post("/restore-do", `{"doName":"ledger","type":"auth","tables":{}}`), 200, "Auth DO migrated to D1. Restore skipped."},
	{"restore-do-values", post("/restore-do", `{"doName":"ledger","type":"database","schema":{"ignored":"x"},"tables":{"entries":[`+
		`{"id":"a","amount":2.5,"memo":5},{"id":"b","amount":9007199254740993,"memo":9007199254740993},{"id":"c","amount":1.0,"memo":1e21},`+
		`{"id":"d","amount":1e-7,"memo":0.000001},{"id":"e","amount":true,"memo":false},{"id":"f","amount":{"__blob__":true,"data":""},"memo":{"__blob__":true,"data":"AAECAwT/"}},`+
		`{"id":"g","amount":-0.0,"memo":{"a":1}},{"id":"h","memo":[1,2,[3,null]]},{"id":"i","memo":{"__blob__":"yes","data":"QQ"}},{"id":"j","memo":"ünï\u2028\"q\"\n"}],`+
		`"nosuch":[{"a":1}],"empty":[],"__miniflare_do_name":[{"id":1,"name":"zzz"}],"_meta":[{"key":"doName","value":"other"},{"key":"custom","value":"v"}]}}`), 200, `{"ok":true,"restored":5}`},
	{"restore-do-values-dump", post("/dump-do", `{"doName":"ledger","type":"database"}`), 200, `{"__blob__":true,"data":"AAECAwT/"}`},
	{"restore-do-create-instance", get("/api/db/workspace/ws-77/tables/tasks?limit=1"), 200, `"items":[]`},
	{"restore-do-after-create", post("/restore-do", `{"doName":"workspace:ws-77","type":"database","tables":{"tasks":[{"id":"t1","title":"x","done":1}]}}`), 200, `{"ok":true,"restored":1}`},
	{"restore-do-after-create-dump", post("/dump-do", `{"doName":"workspace:ws-77","type":"database"}`), 200, `"title":"x"`},

	// ── wipe-do (2.4) ──
	{"wipe-do", post("/wipe-do", `{"doName":"workspace:ws-3","type":"database"}`), 200, `{"ok":true,"doName":"workspace:ws-3"}`},
	{"wipe-do-dump-warm", post("/dump-do", `{"doName":"workspace:ws-3","type":"database"}`), 200, `"schema":{},"tables":{}`},
	{"wipe-do-auth", post("/wipe-do", `{"doName":"workspace:ws-3","type":"auth"}`), 410, "Auth DO has been migrated to D1."},
	{"wipe-do-bare-dynamic", post("/wipe-do", `{"doName":"workspace","type":"database"}`), 400, "DO wipe failed:"},
	{"wipe-do-unconfigured", post("/wipe-do", `{"doName":"nope:zz","type":"database"}`), 200, ""},
	{"wipe-do-empty-name", post("/wipe-do", `{"doName":"","type":"database"}`), 400, "doName is required."},
	{"wipe-do-bad-type", post("/wipe-do", `{"doName":"x","type":"bogus"}`), 400, "type: Invalid option"},

	// ── AUTH_DB / CONTROL_DB (2.7-2.9) ──
	{"dump-d1", post("/dump-d1", ""), 200, `"_email_index":[`},
	{"dump-d1-ignores-body", post("/dump-d1", "garbage"), 200, ""},
	{"dump-control-d1", post("/dump-control-d1", ""), 200, `"schemaHash:posts"`},
	{"restore-d1-missing-tables", post("/restore-d1", "{}"), 400, "tables: Invalid input: expected record, received undefined"},
	{"restore-d1-table-not-array", post("/restore-d1", `{"tables":{"_users":{}}}`), 400, "tables._users: Invalid input: expected array, received object"},
	{"restore-d1-fk-violation", post("/restore-d1", `{"tables":{"_sessions":[{"id":"s1","userId":"nouser","refreshToken":"r","expiresAt":"x","createdAt":"y"}]},"skipWipe":true}`), 500, ""},
	{"restore-d1-unknown-table", post("/restore-d1", `{"tables":{"zzz":[{"a":1}]},"skipWipe":true}`), 200, `{"ok":true,"restored":1}`},
	{"restore-control-d1-missing", post("/restore-control-d1", "{}"), 400, ""},
	{"restore-control-d1-skipwipe", post("/restore-control-d1", `{"tables":{"_meta":[{"key":"plugin_version:p","value":"1.0.0"}],"other":[{"a":1}]},"skipWipe":true}`), 200, `{"ok":true,"restored":1}`},
	{"restore-control-d1-empty", post("/restore-control-d1", `{"tables":{"_meta":[]},"skipWipe":true}`), 200, `{"ok":true,"restored":0}`},
	{"dump-control-d1-after", post("/dump-control-d1", ""), 200, `"plugin_version:p"`},

	// ── data namespaces (2.10-2.11) ──
	{"dump-data-missing", post("/dump-data", "{}"), 400, "namespace: Invalid input: expected string, received undefined"},
	{"dump-data-empty", post("/dump-data", `{"namespace":""}`), 400, "namespace is required."},
	{"dump-data-unknown", post("/dump-data", `{"namespace":"nope"}`), 404, "Namespace 'nope' not found in config."},
	{"dump-data-do-backed", post("/dump-data", `{"namespace":"ledger"}`), 200, `"tableOrder":["entries"]`},
	{"dump-data-dynamic", post("/dump-data", `{"namespace":"workspace"}`), 400, "Namespace dump failed:"},
	{"dump-data-d1", post("/dump-data", `{"namespace":"shared"}`), 200, `"tableOrder":["posts","tags"]`},
	{"restore-data-unknown", post("/restore-data", `{"namespace":"nope","tables":{}}`), 404, "Namespace 'nope' not found in config."},
	{"restore-data-empty-ns", post("/restore-data", `{"namespace":"","tables":{}}`), 400, "namespace is required."},
	{"restore-data-missing-tables", post("/restore-data", `{"namespace":"shared"}`), 400, "tables: Invalid input"},
	{"restore-data-do-backed", post("/restore-data", `{"namespace":"ledger","tables":{}}`), 500, "D1 binding 'DB_D1_LEDGER' not available for 'ledger'."},
	{"restore-data-values", post("/restore-data", `{"namespace":"shared","skipWipe":true,"tableOrder":["x"],"tables":{"tags":[{"id":"n1","name":5},{"id":"n2","name":2.5},{"id":"n3","name":9007199254740993},{"id":"n4","name":true},{"id":"n5","name":1e21},{"id":"n6","name":"x","createdAt":0.1},{"id":"n8","name":[1,2]}],"zzz":[{"a":1}]}}`), 200, `{"ok":true,"namespace":"shared","restored":2}`},
	{"restore-data-object-value", post("/restore-data", `{"namespace":"shared","skipWipe":true,"tables":{"tags":[{"id":"n7","name":{"a":1}}]}}`), 500, ""},
	{"restore-data-unknown-column", post("/restore-data", `{"namespace":"shared","skipWipe":true,"tables":{"posts":[{"id":"p1","title":"a","bogus":1}]}}`), 500, ""},
	{"export-d1-values", get(B + "/export/tags"), 200, `"name": "5.0"`},

	// ── export (7) ──
	{"export-do-backed", get(B + "/export/entries?format=json"), 200, ""},
	{"export-empty-format", get(B + "/export/posts?format="), 200, ""},
	{"export-csv", get(B + "/export/tags?format=csv"), 400, `Unsupported export format: csv. Only \"json\" is supported.`},
	{"export-unknown", get(B + "/export/nope"), 404, "Table not found: nope"},
	{"export-meta", get(B + "/export/_meta"), 404, "Table not found: _meta"},
	{"export-dynamic", get(B + "/export/tasks"), 400, "Namespace dump failed:"},
	{"export-post", post("/export/tags", ""), 404, ""},
	{"export-fts", get(B + "/export/notes"), 200, ""},

	// ── R2 (2.12-2.13) ──
	{"dump-storage-no-action", post("/dump-storage", ""), 400, `action query parameter must be \"list\" or \"get\".`},
	{"dump-storage-bad-action", post("/dump-storage?action=bad", ""), 400, `action: Invalid option: expected one of \"list\"|\"get\"`},
	{"dump-storage-get-no-key", post("/dump-storage?action=get", ""), 400, "key query parameter is required."},
	{"dump-storage-get-missing", post("/dump-storage?action=get&key=nope%2Fx", ""), 404, "Object not found: nope/x"},
	{"restore-storage-no-action", post("/restore-storage", ""), 400, `action query parameter must be \"wipe\" or \"put\".`},
	{"restore-storage-bad-action", post("/restore-storage?action=bad", ""), 400, "action: Invalid option"},
	{"restore-storage-put-no-key", post("/restore-storage?action=put", ""), 400, "key query parameter is required."},
	{"put-odd-key", req{method: "POST", path: B + "/restore-storage?action=put&key=uploads%2Fa%20b%2Bc%25d%23e%3Ff.txt", body: "odd key", ct: "image/png"}, 200, `"key":"uploads/a b+c%d#e?f.txt"`},
	{"put-unicode-key", req{method: "POST", path: B + "/restore-storage?action=put&key=uploads%2F%E6%97%A5%E6%9C%AC%E8%AA%9E%2F%E3%83%95%E3%82%A1%E3%82%A4%E3%83%AB.txt", body: "unicode", ct: "text/plain; charset=utf-8"}, 200, ""},
	{"put-emoji-key", req{method: "POST", path: B + "/restore-storage?action=put&key=uploads%2Femoji%F0%9F%98%80.bin", body: "emoji", ct: "application/octet-stream"}, 200, ""},
	{"put-no-content-type", req{method: "POST", path: B + "/restore-storage?action=put&key=uploads%2Fnoct", body: "x", ct: "-"}, 200, ""},
	{"put-empty", req{method: "POST", path: B + "/restore-storage?action=put&key=avatars%2Fzero", ct: "text/plain"}, 200, `"size":0`},
	{"put-deep", req{method: "POST", path: B + "/restore-storage?action=put&key=avatars%2Fdeep%2Fa%2Fb%2Fc%2Fd%2Fe.json", body: `{"a":1}`, ct: "application/json"}, 200, ""},
	{"dump-storage-list", post("/dump-storage?action=list", ""), 200, `"contentType":"application/octet-stream"`},
	{"get-odd-key", post("/dump-storage?action=get&key=uploads%2Fa%20b%2Bc%25d%23e%3Ff.txt", ""), 200, "odd key"},
	{"get-unicode-key", post("/dump-storage?action=get&key=uploads%2F%E6%97%A5%E6%9C%AC%E8%AA%9E%2F%E3%83%95%E3%82%A1%E3%82%A4%E3%83%AB.txt", ""), 200, "unicode"},
	{"get-emoji-key", post("/dump-storage?action=get&key=uploads%2Femoji%F0%9F%98%80.bin", ""), 200, ""},
	{"get-no-content-type", post("/dump-storage?action=get&key=uploads%2Fnoct", ""), 200, ""},
	{"get-seeded", post("/dump-storage?action=get&key=uploads%2Ff%2F1.txt", ""), 200, "peer file 1"},
	{"get-empty", post("/dump-storage?action=get&key=avatars%2Fzero", ""), 200, ""},
	{"public-storage-list", get("/api/storage/uploads?limit=3"), 200, `"truncated":true`},
	{"public-storage-list-cursor", get("/api/storage/uploads?limit=3&cursor=dXBsb2Fkcy9mLzEudHh0"), 200, ""},
	{"public-storage-list-all", get("/api/storage/avatars?limit=1000"), 200, `"truncated":false`},
	{"public-storage-get", get("/api/storage/uploads/f/3.txt"), 200, "peer file 3"},
	{"public-storage-get-odd", get("/api/storage/uploads/a%20b%2Bc%25d%23e%3Ff.txt"), 200, "odd key"},
	{"public-storage-get-missing", get("/api/storage/uploads/nope.txt"), 404, "File not found."},
	{"public-storage-no-bucket", get("/api/storage/nobucket"), 404, "Storage bucket 'nobucket' is not configured."},

	// ── resync, cleanup-plugin (2.3, 2.14) ──
	{"resync-users-public", post("/resync-users-public", ""), 200, `{"ok":true,"totalSynced":3,"source":"d1"}`},
	{"cleanup-plugin-empty", post("/cleanup-plugin", `{"prefix":"  /"}`), 400, "prefix is required."},
	{"cleanup-plugin-missing", post("/cleanup-plugin", `{}`), 400, "prefix: Invalid input: expected string, received undefined"},
	{"cleanup-plugin-no-target", post("/cleanup-plugin", `{"prefix":"p/"}`), 200, `"target":null`},
	{"cleanup-plugin-d1", post("/cleanup-plugin", `{"prefix":"p","namespace":"shared"}`), 200, ""},
	{"cleanup-plugin-instance", post("/cleanup-plugin", `{"prefix":"p","namespace":"workspace","id":"ws-1"}`), 200, ""},
	{"cleanup-plugin-do", post("/cleanup-plugin", `{"prefix":"p","doName":"ledger"}`), 200, ""},
	{"cleanup-plugin-control-gone", post("/dump-control-d1", ""), 200, ""},

	// ── public REST subset ──
	{"public-list-d1", get("/api/db/shared/tables/posts?limit=2"), 200, `"total":10,"hasMore":true`},
	{"public-list-d1-after", get("/api/db/shared/tables/posts?limit=3&offset=8"), 200, `"hasMore":false,"cursor":null`},
	{"public-list-do", get("/api/db/ledger/tables/entries?limit=2&sort=id:asc"), 200, ""},
	{"public-list-instance", get("/api/db/workspace/ws-2/tables/tasks"), 200, `"done":true`},
	{"public-list-bad-limit", get("/api/db/shared/tables/posts?limit=abc"), 400, "Invalid limit parameter: must be a number"},
	{"public-unknown-db", get("/api/db/nope/tables/x"), 404, "Database 'nope' not found in config"},
	{"public-dynamic-without-id", get("/api/db/workspace/tables/tasks"), 400, "instanceId is required for dynamic namespace 'workspace'"},
	{"public-static-with-id", get("/api/db/ledger/x/tables/entries"), 400, "instanceId is not allowed for single-instance namespace 'ledger'"},
	{"public-insert-d1", req{method: "POST", path: "/api/db/shared/tables/tags", body: `{"id":"tag-x","name":"x","extra":1}`}, 201, `"id":"tag-x"`},
	{"public-insert-missing-field", req{method: "POST", path: "/api/db/shared/tables/tags", body: `{}`}, 400, "Invalid 'name'. Field is required."},
	{"public-insert-unknown-table", req{method: "POST", path: "/api/db/shared/tables/nope", body: `{"a":1}`}, 404, "Table 'nope' not found in database 'shared'."},
	{"public-insert-do-type", req{method: "POST", path: "/api/db/ledger/tables/entries", body: `{"memo":5}`}, 400, "Invalid 'memo'. Must be a string."},
	{"public-insert-fts", req{method: "POST", path: "/api/db/search/tables/notes", body: `{"id":"n1","title":"hello world","body":"full text"}`}, 201, ""},
	{"public-batch-fts", req{method: "POST", path: "/api/db/search/tables/notes/batch", body: `{"inserts":[{"id":"n2","title":"second","body":"more text"}]}`}, 200, `"inserted":[`},
	{"dump-do-fts-rows", post("/dump-do", `{"doName":"search","type":"database"}`), 200, `"notes_fts":[{"title":"hello world","body":"full text"}`},
	{"signup-duplicate", req{method: "POST", path: "/api/auth/signup", body: `{"email":"user1@peer.test","password":"Passw0rd!1-peer"}`}, 409, "Email already registered."},
	{"signup-short-password", req{method: "POST", path: "/api/auth/signup", body: `{"email":"x@peer.test","password":"x"}`}, 400, "Password must be at least 8 characters."},
	{"admin-users", get("/api/auth/admin/users?limit=2"), 200, `"cursor":"2"`},
	{"admin-users-last", get("/api/auth/admin/users?limit=2&cursor=2"), 200, `"cursor":null`},
	{"admin-users-no-key", req{method: "GET", path: "/api/auth/admin/users", key: "-"}, 403, "X-EdgeBase-Service-Key is required for admin auth operations."},

	// ── wipe (last: destroys data) ──
	{"restore-storage-wipe", post("/restore-storage?action=wipe", ""), 200, `{"ok":true,"deleted":`},
	{"dump-storage-list-empty", post("/dump-storage?action=list", ""), 200, `{"objects":[],"total":0`},
	{"restore-d1-wipe-all", post("/restore-d1", `{"tables":{}}`), 200, `{"ok":true,"restored":0}`},
	{"dump-d1-empty", post("/dump-d1", ""), 200, `"_users":[]`},
}

// seed gives every target the same data (sequentially, so row order and
// hence dumps match).
func seed(t *testing.T, tg *target) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := edgebasetest.SeedHTTP(ctx, client, tg.url, rootKey, edgebasetest.HTTPSeed{Users: 3, Instances: 3, Files: 6, Parallel: 1}); err != nil {
		t.Fatalf("seed %s: %v", tg.name, err)
	}
}

func runSteps(t *testing.T, tg *target, steps []step) {
	for _, s := range steps {
		r := tg.do(t, s.req)
		if a, ok := newerAnswers[s.name]; ok && tg.profile == edgebasetest.Profile05 {
			// This step is where a newer server differs: its own answer
			// applies, not the peer's golden.
			a.check(t, s.name, s.req, r)
			continue
		}
		if r.status != s.status {
			t.Errorf("%s: %s %s: status %d, want %d; body %s", s.name, s.req.method, s.req.path, r.status, s.status, truncate(r.body))
		}
		if s.message != "" && !strings.Contains(string(r.body), s.message) {
			t.Errorf("%s: body lacks %q: %s", s.name, s.message, truncate(r.body))
		}
		checkGolden(t, tg, s.name, r)
	}
}

// answer is what a step must give when no golden applies.
type answer struct {
	status   int
	contains []string          // substrings of the body
	lacks    []string          // strings the body must not hold
	header   map[string]string // header -> substring of its value; "" = the header is absent
	why      string            // the protocol point behind the difference
}

func (a answer) check(t *testing.T, name string, rq req, r resp) {
	t.Helper()
	if r.status != a.status {
		t.Errorf("%s: %s %s: status %d, want %d; body %s", name, rq.method, rq.path, r.status, a.status, truncate(r.body))
	}
	for _, c := range a.contains {
		if !strings.Contains(string(r.body), c) {
			t.Errorf("%s: body lacks %q: %s", name, c, truncate(r.body))
		}
	}
	for _, c := range a.lacks {
		if strings.Contains(string(r.body), c) {
			t.Errorf("%s: body holds %q: %s", name, c, truncate(r.body))
		}
	}
	for h, want := range a.header {
		got, present := r.header.Get(h), len(r.header.Values(h)) > 0
		switch {
		case want == "" && present:
			t.Errorf("%s: header %s: %q, want none", name, h, got)
		case want != "" && !strings.Contains(got, want):
			t.Errorf("%s: header %s: %q, want it to contain %q", name, h, got, want)
		}
	}
}

// newerAnswers lists every step of the table whose answer differs on a
// 0.4.x-0.5.x server (the Profile05 emulator), with what it answers there
// and why. Every other step must answer exactly the peer's golden in both
// profiles. DIFFERENCES.md lists the same steps (checked below).
var newerAnswers = map[string]answer{
	"config": {status: 200,
		contains: []string{`"inlineSecret":"[REDACTED]"`, `"access":{"canCreate":"[REDACTED]","access":"[REDACTED]"}`,
			`"uploads":{"access":{"read":"[REDACTED]","write":"[REDACTED]","delete":"[REDACTED]"}}`, `"secretRef":"SERVICE_KEY"`},
		lacks: []string{"contract-secret"},
		why:   "B.3: a redacted snapshot; inline secrets and functions become [REDACTED]"},
	"get-unicode-key": {status: 200, contains: []string{"unicode"},
		header: map[string]string{"Content-Type": "text/plain", "Content-Disposition": "", "X-R2-Key": "uploads/"},
		why:    "B.2: put stored text/plain; charset=utf-8 normalised to text/plain"},
	"get-emoji-key": {status: 200, contains: []string{"emoji"},
		header: map[string]string{"Content-Type": "application/octet-stream", "Content-Disposition": `attachment; filename="emoji____.bin"; filename*=UTF-8''emoji%F0%9F%98%80.bin`,
			"Content-Security-Policy": "sandbox"},
		why: "B.2: application/octet-stream is not passive: served as a sandboxed attachment"},
	"get-no-content-type": {status: 200, contains: []string{"x"},
		header: map[string]string{"Content-Type": "application/octet-stream", "Content-Disposition": `attachment; filename="noct"`, "Content-Security-Policy": "sandbox"},
		why:    "B.2: a put without a type stores application/octet-stream, served as an attachment"},
}

// newerChecks run only against a Profile05 target seeded like the others
// plus three upload-grant markers: B.1, B.2 and B.4 where the shared table
// cannot show them.
var newerChecks = []struct {
	name string
	req  req
	want answer
}{
	{"newer-list-hides-grants", post("/dump-storage?action=list", ""), answer{status: 200, contains: []string{`"total":6`}, lacks: []string{"__edgebase_internal__"}, why: "B.1"}},
	{"newer-get-grant", post("/dump-storage?action=get&key={{grant:0}}", ""), answer{status: 400, contains: []string{`"code":400`, "signed-upload-grants"}, why: "B.1"}},
	{"newer-put-grant", req{method: "POST", path: B + "/restore-storage?action=put&key={{grant:1}}", body: "x", ct: "application/octet-stream"}, answer{status: 400, contains: []string{`"code":400`}, why: "B.1"}},
	{"newer-put-html", req{method: "POST", path: B + "/restore-storage?action=put&key=uploads%2Fpage.html", body: "<p>hi</p>", ct: "Text/HTML; charset=UTF-8"}, answer{status: 200, contains: []string{`"ok":true`}, why: "B.2"}},
	{"newer-get-html-masked", post("/dump-storage?action=get&key=uploads%2Fpage.html", ""), answer{status: 200, contains: []string{"<p>hi</p>"},
		header: map[string]string{"Content-Type": "application/octet-stream", "Content-Disposition": `attachment; filename="page.html"`, "Content-Security-Policy": "default-src 'none'", "X-R2-Key": "uploads/page.html"}, why: "B.2"}},
	{"newer-public-get-html-masked", get("/api/storage/uploads/page.html"), answer{status: 200, contains: []string{"<p>hi</p>"},
		header: map[string]string{"Content-Type": "application/octet-stream", "Content-Disposition": `attachment; filename="page.html"`, "Content-Security-Policy": "sandbox"}, why: "B.2"}},
	{"newer-put-png", req{method: "POST", path: B + "/restore-storage?action=put&key=avatars%2Fp.png", body: "png", ct: "IMAGE/PNG"}, answer{status: 200, why: "B.2"}},
	{"newer-get-png-passive", post("/dump-storage?action=get&key=avatars%2Fp.png", ""), answer{status: 200,
		header: map[string]string{"Content-Type": "image/png", "Content-Disposition": "", "Content-Security-Policy": ""}, why: "B.2"}},
	{"newer-scoped-without-backup-scope", req{method: "POST", path: B + "/list-dos", key: edgebasetest.ContractReaderKey}, answer{status: 401, contains: []string{`{"code":401,"message":"Invalid or missing Service Key."}`}, why: "B.4, §1.2"}},
	{"newer-scoped-backup-key", req{method: "POST", path: B + "/dump-storage?action=list", key: edgebasetest.ContractBackupKey}, answer{status: 200, contains: []string{`"total":8`}, why: "B.4"}},
	{"newer-wipe-keeps-grants", post("/restore-storage?action=wipe", ""), answer{status: 200, contains: []string{`{"ok":true,"deleted":8}`}, why: "B.1"}},
	{"newer-list-after-wipe", post("/dump-storage?action=list", ""), answer{status: 200, contains: []string{`{"objects":[],"total":0`}, why: "B.1"}},
}

func truncate(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// coldSteps run after a restart of the target.
var coldSteps = []step{
	{"cold-list-dos-hexids", post("/list-dos", `{"hexIds":["{{hex:workspace:ws-1}}","{{hex:workspace:ws-2}}","{{hex:ledger}}"]}`), 200, `{"dos":[],"total":0}`},
	{"cold-dump-wiped-instance", post("/dump-do", `{"doName":"workspace:ws-3","type":"database"}`), 200, `{"needsCreate":true,"namespace":"workspace","id":"ws-3"}`},
	{"cold-dump-restored-instance", post("/dump-do", `{"doName":"workspace:ws-77","type":"database"}`), 200, `"__miniflare_do_name":[{"id":1,"name":"workspace:ws-77"}]`},
	{"cold-list-dos-hexids-warm-again", post("/list-dos", `{"hexIds":["{{hex:workspace:ws-77}}","{{hex:workspace:ws-1}}"]}`), 200, `"total":1`},
}

// freshSteps run on a never-used target: restoring control and auth D1
// _meta (which name the D1 tables' schema hashes) makes restore-data fail
// with "no such table" (Appendix A.2), and the namespace stays broken.
var freshSteps = []step{
	{"fresh-restore-control-d1", post("/restore-control-d1", `{"tables":{"_meta":[{"key":"schemaHash:posts","value":"f45effbb"},{"key":"schemaHash:tags","value":"e487bb41"}]}}`), 200, `{"ok":true,"restored":1}`},
	{"fresh-restore-d1", post("/restore-d1", `{"tables":{"_meta":[{"key":"schemaHash:posts","value":"f45effbb"},{"key":"schemaHash:tags","value":"e487bb41"}]}}`), 200, ""},
	{"fresh-restore-data-no-such-table", post("/restore-data", `{"namespace":"shared","tables":{"posts":[{"id":"p1","title":"a"}]}}`), 500, "Backup operation failed unexpectedly."},
	{"fresh-public-get-broken", get("/api/db/shared/tables/posts"), 500, "Internal server error while handling '/api/db/shared/tables/posts'."},
	{"fresh-dump-data-silent", post("/dump-data", `{"namespace":"shared"}`), 200, `"posts":[]`},
}

func TestContract(t *testing.T) {
	var targets []func(*testing.T) *target
	if os.Getenv("EDGEVAULT_CONTRACT_ONLY") != "peer" {
		targets = append(targets, emulatorTarget, newerEmulatorTarget)
	}
	if peerWanted(t) {
		targets = append(targets, peerTarget)
	} else {
		t.Log("real-server variant not run: set EDGEVAULT_PEER=1")
	}
	fps := map[string]*edgebasetest.Fingerprint{}
	for _, mk := range targets {
		tg := mk(t)
		t.Run(tg.name, func(t *testing.T) {
			seed(t, tg)
			fps[tg.name] = fingerprint(t, tg)
			runSteps(t, tg, steps)
			tg.restart(t)
			runSteps(t, tg, coldSteps)
			runSteps(t, tg.fresh(t), freshSteps)
		})
	}
	if a, b := fps["emulator"], fps["peer"]; a != nil && b != nil {
		if d := edgebasetest.Diff(b, a); d != "" {
			t.Errorf("fingerprints of the peer and the emulator seeded alike differ:\n%s", d)
		}
	}
}

// TestContractNewer checks the Appendix B behaviour the shared table
// cannot show, against the Profile05 emulator (no real 0.4+ server can be
// run here).
func TestContractNewer(t *testing.T) {
	tg := newerEmulatorTarget(t)
	seed(t, tg)
	grants, err := tg.em.AddUploadGrants(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	tg.grants = grants
	for _, c := range newerChecks {
		c.want.check(t, c.name, c.req, tg.do(t, c.req))
	}
	for _, g := range grants {
		if _, _, err := tg.em.ObjectContent(context.Background(), g); err != nil {
			t.Errorf("grant %s did not survive the wipe: %v", g, err)
		}
	}
}

// Every step that differs on the newer profile names its reason and is
// listed in DIFFERENCES.md, so the document and the table cannot drift.
func TestNewerDifferencesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../pkg/edgebase/edgebasetest/DIFFERENCES.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range steps {
		names[s.name] = true
	}
	for name, a := range newerAnswers {
		if !names[name] {
			t.Errorf("newerAnswers names %q, which is not a step", name)
		}
		if a.why == "" {
			t.Errorf("%s: no reason given", name)
		}
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("DIFFERENCES.md does not list the step %q that differs on Profile05", name)
		}
	}
	for _, c := range newerChecks {
		if !strings.Contains(string(doc), "`"+c.name+"`") {
			t.Errorf("DIFFERENCES.md does not list the newer check %q", c.name)
		}
	}
}

func fingerprint(t *testing.T, tg *target) *edgebasetest.Fingerprint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fp, err := edgebasetest.TakeFingerprint(ctx, tg.url, edgebasetest.FingerprintOptions{
		ServiceKey:    rootKey,
		Instances:     []string{"workspace:ws-1", "workspace:ws-2", "workspace:ws-3"},
		IgnoreColumns: []string{"id", "createdAt", "updatedAt"},
		Client:        client,
	})
	if err != nil {
		t.Fatalf("fingerprint %s: %v", tg.name, err)
	}
	checkGolden(t, tg, "fingerprint", resp{status: 200, header: http.Header{}, body: []byte(fp.String())})
	if tg.scriptFingerprint != nil {
		// Without ignored columns the Go fingerprint must reproduce the
		// peer's own fingerprint.sh line for line.
		full, err := edgebasetest.TakeFingerprint(ctx, tg.url, edgebasetest.FingerprintOptions{
			ServiceKey: rootKey, Client: client,
			Instances: []string{"workspace:ws-1", "workspace:ws-2", "workspace:ws-3"},
		})
		if err != nil {
			t.Fatalf("fingerprint %s: %v", tg.name, err)
		}
		lines, err := tg.scriptFingerprint(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, l := range full.Lines {
			have[l] = true
		}
		for _, l := range lines {
			if !have[l] {
				t.Errorf("fingerprint.sh line %q missing from the Go fingerprint:\n%s", l, full)
			}
		}
	}
	return fp
}
