package edgebasetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
)

// routeAdmin serves /admin/api/backup/*: service-key check first (for any
// path, as the peer's middleware is mounted on '*'), then the routes.
func (e *Emulator) routeAdmin(ctx context.Context, q *request) *response {
	switch e.validateKey(q.r, "backup:*:*:exec") {
	case keyMissing:
		return errorResponse(403, "Service Key required for backup operations.")
	case keyInvalid:
		return errorResponse(401, "Invalid or missing Service Key.")
	}
	m := q.r.Method
	post := m == http.MethodPost
	get := m == http.MethodGet || m == http.MethodHead
	p := q.adminPath
	switch {
	case p == "list-dos" && post:
		return e.listDOs(ctx, q)
	case p == "config" && get:
		if e.newer() {
			return jsonResponse(200, redactConfig(e.cfg.object()))
		}
		return jsonResponse(200, e.cfg.object())
	case p == "cleanup-plugin" && post:
		return e.cleanupPlugin(ctx, q)
	case p == "wipe-do" && post:
		return e.wipeDO(ctx, q)
	case p == "dump-do" && post:
		return e.dumpDO(ctx, q)
	case p == "restore-do" && post:
		return e.restoreDO(ctx, q)
	case p == "dump-d1" && post:
		return e.dumpD1(ctx)
	case p == "restore-d1" && post:
		return e.restoreD1(ctx, q)
	case p == "dump-control-d1" && post:
		return e.dumpControlD1(ctx)
	case p == "restore-control-d1" && post:
		return e.restoreControlD1(ctx, q)
	case p == "dump-data" && post:
		return e.dumpData(ctx, q)
	case p == "restore-data" && post:
		return e.restoreData(ctx, q)
	case p == "dump-storage" && post:
		return e.dumpStorage(ctx, q)
	case p == "restore-storage" && post:
		return e.restoreStorage(ctx, q)
	case p == "resync-users-public" && post:
		return e.resyncUsersPublic(ctx)
	case strings.HasPrefix(p, "export/") && !strings.Contains(strings.TrimPrefix(p, "export/"), "/") && p != "export/" && get:
		return e.export(ctx, q, strings.TrimPrefix(p, "export/"))
	}
	if get {
		return adminRedirect()
	}
	return notFoundPath(q.r)
}

// ─── zod-style body validation ───

type zodIssues []string

func (z *zodIssues) add(path, msg string) {
	if path != "" {
		*z = append(*z, path+": "+msg)
		return
	}
	*z = append(*z, msg)
}

func (z zodIssues) response() *response {
	if len(z) == 0 {
		return nil
	}
	return errorResponse(400, strings.Join(z, ", "))
}

func expected(kind string, v any, present bool) string {
	got := "undefined"
	if present {
		got = jsTypeName(v)
	}
	return "Invalid input: expected " + kind + ", received " + got
}

// bodyObject applies the route's JSON-body validation prologue: a body
// that is not declared as JSON, or does not parse, is an untyped error
// (500) on the peer; a non-object is a zod 400.
func bodyObject(q *request) (object, *response) {
	if !q.isJSON() {
		return nil, unexpected()
	}
	v, err := q.json()
	if err != nil {
		return nil, unexpected()
	}
	o, ok := v.(object)
	if !ok {
		return nil, errorResponse(400, expected("object", v, true))
	}
	return o, nil
}

func zString(z *zodIssues, o object, key string) string {
	v, ok := o.get(key)
	s, isStr := v.(string)
	if !ok || !isStr {
		z.add(key, expected("string", v, ok))
	}
	return s
}

func zOptString(z *zodIssues, o object, key string) string {
	v, ok := o.get(key)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		z.add(key, expected("string", v, true))
	}
	return s
}

func zEnum(z *zodIssues, o object, key string, opts ...string) string {
	v, _ := o.get(key)
	s, _ := v.(string)
	for _, opt := range opts {
		if s == opt {
			return s
		}
	}
	quoted := make([]string, len(opts))
	for i, opt := range opts {
		quoted[i] = `"` + opt + `"`
	}
	z.add(key, "Invalid option: expected one of "+strings.Join(quoted, "|"))
	return s
}

// zTables validates z.record(z.string(), z.array(z.record(...))).
func zTables(z *zodIssues, o object, key string) object {
	v, ok := o.get(key)
	t, isObj := v.(object)
	if !ok || !isObj {
		z.add(key, expected("record", v, ok))
		return nil
	}
	for _, m := range t {
		arr, isArr := m.Value.([]any)
		if !isArr {
			z.add(key+"."+m.Key, expected("array", m.Value, true))
			continue
		}
		for i, row := range arr {
			if _, isRow := row.(object); !isRow {
				z.add(fmt.Sprintf("%s.%s[%d]", key, m.Key, i), expected("record", row, true))
			}
		}
	}
	return t
}

func jsTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0 && x == x
	case string:
		return x != ""
	}
	return true
}

func rowsOf(v any) []object {
	arr, _ := v.([]any)
	out := make([]object, 0, len(arr))
	for _, r := range arr {
		if o, ok := r.(object); ok {
			out = append(out, o)
		}
	}
	return out
}

// ─── DO routes ───

func doFailure(prefix string, r doResult) *response {
	return errorResponse(r.status, prefix+string(marshalJS(r.body)))
}

func (e *Emulator) listDOs(ctx context.Context, q *request) *response {
	var hexIDs []any
	if q.isJSON() {
		v, err := q.json()
		if err != nil {
			return unexpected()
		}
		o, ok := v.(object)
		if !ok {
			return errorResponse(400, expected("object", v, true))
		}
		var z zodIssues
		if h, has := o.get("hexIds"); has {
			arr, isArr := h.([]any)
			if !isArr {
				z.add("hexIds", expected("array", h, true))
			}
			for i, s := range arr {
				if _, isStr := s.(string); !isStr {
					z.add(fmt.Sprintf("hexIds[%d]", i), expected("string", s, true))
				}
			}
			hexIDs = arr
		}
		if r := z.response(); r != nil {
			return r
		}
	} else if v, err := q.json(); err == nil {
		if o, ok := v.(object); ok {
			h, _ := o.get("hexIds")
			switch x := h.(type) {
			case []any:
				hexIDs = x
			case string:
				if x != "" {
					return jsonResponse(200, object{{"dos", []any{}}, {"total", float64(0)}})
				}
			}
		}
	}
	dos := []any{}
	entry := func(name, typ, ns string) object {
		return object{{"doName", name}, {"type", typ}, {"namespace", ns}}
	}
	if len(hexIDs) > 0 {
		for _, h := range hexIDs {
			id, _ := h.(string)
			res, err := e.dos.call(ctx, doCall{hex: id}, func(in *doInstance, db sqlDB) (doResult, error) {
				return e.dos.dump(ctx, in, db, e.timestamp())
			})
			if err == nil && res.ok() {
				if o, ok := res.body.(object); ok {
					if n, _ := o.get("doName"); jsTruthy(n) {
						dos = append(dos, entry(jsToString(n), "database", "DATABASE"))
						continue
					}
				}
			}
			// AuthDO answers every dump with doName 'unknown'.
			if e.authIDFactory().valid(id) {
				dos = append(dos, entry("unknown", "auth", "AUTH"))
			}
		}
		return jsonResponse(200, object{{"dos", dos}, {"total", float64(len(dos))}})
	}
	seen := map[string]bool{}
	for _, n := range append([]string{"shared"}, e.dbNames()...) {
		if !seen[n] {
			seen[n] = true
			dos = append(dos, entry(n, "database", "DATABASE"))
		}
	}
	return jsonResponse(200, object{{"dos", dos}, {"total", float64(len(dos))}})
}

func (e *Emulator) dbNames() []string {
	out := make([]string, len(e.cfg.Databases))
	for i, d := range e.cfg.Databases {
		out[i] = d.Name
	}
	return out
}

func (e *Emulator) authIDFactory() doIDFactory { return newDOIDFactory(e.worker, "AuthDO") }

// doNameType validates {doName, type} (+ extra checks).
func doNameType(q *request, withTables bool) (string, string, object, *response) {
	o, resp := bodyObject(q)
	if resp != nil {
		return "", "", nil, resp
	}
	var z zodIssues
	name := zString(&z, o, "doName")
	typ := zEnum(&z, o, "type", "database", "auth")
	var tables object
	if withTables {
		tables = zTables(&z, o, "tables")
	}
	if r := z.response(); r != nil {
		return "", "", nil, r
	}
	if name == "" {
		return "", "", nil, errorResponse(400, "doName is required.")
	}
	return name, typ, tables, nil
}

func (e *Emulator) dumpDO(ctx context.Context, q *request) *response {
	name, typ, _, resp := doNameType(q, false)
	if resp != nil {
		return resp
	}
	if typ == "auth" {
		return jsonResponse(200, object{{"doName", name}, {"tables", object{}}, {"users", []any{}}})
	}
	res, err := e.dos.call(ctx, doCall{name: name}, func(in *doInstance, db sqlDB) (doResult, error) {
		return e.dos.dump(ctx, in, db, e.timestamp())
	})
	if err != nil {
		return unexpected()
	}
	if !res.ok() {
		return doFailure("DO dump failed: ", res)
	}
	return jsonResponse(200, res.body)
}

func (e *Emulator) restoreDO(ctx context.Context, q *request) *response {
	name, typ, tables, resp := doNameType(q, true)
	if resp != nil {
		return resp
	}
	if typ == "auth" {
		return jsonResponse(200, object{{"ok", true}, {"message", "Auth DO migrated to D1. Restore skipped."}})
	}
	res, err := e.dos.call(ctx, doCall{name: name}, func(in *doInstance, db sqlDB) (doResult, error) {
		return e.dos.restore(ctx, in, db, tables)
	})
	if err != nil {
		return unexpected()
	}
	if !res.ok() {
		return doFailure("DO restore failed: ", res)
	}
	return jsonResponse(200, res.body)
}

const authGone = `{"code":410,"message":"Auth DO has been migrated to D1. All auth operations use AUTH_DB directly."}`

func (e *Emulator) wipeDO(ctx context.Context, q *request) *response {
	name, typ, _, resp := doNameType(q, false)
	if resp != nil {
		return resp
	}
	if typ == "auth" {
		return errorResponse(410, "DO wipe failed: "+authGone)
	}
	res, err := e.dos.call(ctx, doCall{name: name}, func(in *doInstance, db sqlDB) (doResult, error) {
		if err := e.dos.dropEverything(ctx, db); err != nil {
			return doInternalError("/internal/drop-all"), nil
		}
		return doResult{status: 200, body: object{{"ok", true}}}, nil
	})
	if err != nil {
		return unexpected()
	}
	if !res.ok() {
		return doFailure("DO wipe failed: ", res)
	}
	return jsonResponse(200, object{{"ok", true}, {"doName", name}})
}

// ─── AUTH_DB and CONTROL_DB ───

func (e *Emulator) dumpD1(ctx context.Context) *response {
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureAuth(ctx)
	if err != nil {
		return unexpected()
	}
	tables := object{}
	for _, t := range AuthTables {
		rows, err := queryObjects(ctx, db, d1Value, "SELECT * FROM "+esc(t))
		if err != nil {
			rows = []object{}
		}
		tables = append(tables, kv{t, rows})
	}
	return jsonResponse(200, object{{"type", "d1"}, {"tables", tables}, {"timestamp", e.timestamp()}})
}

func tablesBody(q *request) (object, object, *response) {
	o, resp := bodyObject(q)
	if resp != nil {
		return nil, nil, resp
	}
	var z zodIssues
	tables := zTables(&z, o, "tables")
	if r := z.response(); r != nil {
		return nil, nil, r
	}
	return o, tables, nil
}

func (e *Emulator) restoreD1(ctx context.Context, q *request) *response {
	o, tables, resp := tablesBody(q)
	if resp != nil {
		return resp
	}
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureAuth(ctx)
	if err != nil {
		return unexpected()
	}
	if sw, _ := o.get("skipWipe"); !jsTruthy(sw) {
		var wipe []stmt
		for _, t := range authWipeOrder {
			wipe = append(wipe, stmt{sql: "DELETE FROM " + esc(t)})
		}
		if err := d1Batch(ctx, db, wipe); err != nil {
			return unexpected()
		}
	}
	for _, t := range authInsertOrder {
		v, _ := tables.get(t)
		if err := insertBatches(ctx, db, t, rowsOf(v)); err != nil {
			return unexpected()
		}
	}
	return jsonResponse(200, object{{"ok", true}, {"restored", float64(len(tables))}})
}

func (e *Emulator) dumpControlD1(ctx context.Context) *response {
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureControl(ctx)
	if err != nil {
		return unexpected()
	}
	rows, err := queryObjects(ctx, db, d1Value, `SELECT * FROM "_meta"`)
	if err != nil {
		rows = []object{}
	}
	return jsonResponse(200, object{{"type", "d1"}, {"tables", object{{"_meta", rows}}}, {"timestamp", e.timestamp()}})
}

func (e *Emulator) restoreControlD1(ctx context.Context, q *request) *response {
	o, tables, resp := tablesBody(q)
	if resp != nil {
		return resp
	}
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureControl(ctx)
	if err != nil {
		return unexpected()
	}
	if sw, _ := o.get("skipWipe"); !jsTruthy(sw) {
		if err := d1Batch(ctx, db, []stmt{{sql: `DELETE FROM "_meta"`}}); err != nil {
			return unexpected()
		}
	}
	v, _ := tables.get("_meta")
	rows := rowsOf(v)
	if err := insertBatches(ctx, db, "_meta", rows); err != nil {
		return unexpected()
	}
	restored := 0
	if len(rows) > 0 {
		restored = 1
	}
	return jsonResponse(200, object{{"ok", true}, {"restored", float64(restored)}})
}

// ─── data namespaces ───

// dumpNamespace is dumpNamespaceTables (lib/namespace-dump.ts).
func (e *Emulator) dumpNamespace(ctx context.Context, d *Database, tableNames []string, includeMeta bool) (object, *response) {
	tables := object{}
	switch {
	case d.Provider == "postgres" || d.Provider == "neon":
		return nil, errorResponse(500, fmt.Sprintf("PostgreSQL connection not available for '%s'.", d.Name))
	case d.RoutesToD1():
		e.d1.mu.Lock()
		defer e.d1.mu.Unlock()
		db, err := e.d1.ensureNamespace(ctx, d)
		if err != nil {
			return nil, unexpected()
		}
		for _, t := range tableNames {
			rows, err := queryObjects(ctx, db, d1Value, "SELECT * FROM "+esc(t))
			if err != nil {
				rows = []object{}
			}
			tables = append(tables, kv{t, rows})
		}
		if includeMeta {
			rows, err := queryObjects(ctx, db, d1Value, `SELECT * FROM "_meta"`)
			if err != nil {
				rows = []object{}
			}
			tables = append(tables, kv{"_meta", rows})
		}
		return tables, nil
	}
	res, err := e.dos.call(ctx, doCall{name: d.Name}, func(in *doInstance, db sqlDB) (doResult, error) {
		return e.dos.dump(ctx, in, db, e.timestamp())
	})
	if err != nil {
		return nil, unexpected()
	}
	if !res.ok() {
		return nil, doFailure("Namespace dump failed: ", res)
	}
	payload, _ := res.body.(object)
	pt, _ := payload.get("tables")
	ptab, _ := pt.(object)
	pick := func(name string) any {
		if v, ok := ptab.get(name); ok {
			return v
		}
		return []any{}
	}
	for _, t := range tableNames {
		tables = append(tables, kv{t, pick(t)})
	}
	if includeMeta {
		tables = append(tables, kv{"_meta", pick("_meta")})
	}
	return tables, nil
}

func tableNamesOf(d *Database) []string {
	out := make([]string, len(d.Tables))
	for i, t := range d.Tables {
		out[i] = t.Name
	}
	return out
}

func (e *Emulator) namespaceBody(q *request, withTables bool) (object, *Database, object, *response) {
	o, resp := bodyObject(q)
	if resp != nil {
		return nil, nil, nil, resp
	}
	var z zodIssues
	ns := zString(&z, o, "namespace")
	var tables object
	if withTables {
		tables = zTables(&z, o, "tables")
	}
	if r := z.response(); r != nil {
		return nil, nil, nil, r
	}
	if ns == "" {
		return nil, nil, nil, errorResponse(400, "namespace is required.")
	}
	d := e.cfg.Database(ns)
	if d == nil {
		return nil, nil, nil, errorResponse(404, fmt.Sprintf("Namespace '%s' not found in config.", ns))
	}
	return o, d, tables, nil
}

func (e *Emulator) dumpData(ctx context.Context, q *request) *response {
	_, d, _, resp := e.namespaceBody(q, false)
	if resp != nil {
		return resp
	}
	names := tableNamesOf(d)
	tables, resp := e.dumpNamespace(ctx, d, names, true)
	if resp != nil {
		return resp
	}
	return jsonResponse(200, object{{"type", "data"}, {"namespace", d.Name}, {"tables", tables}, {"tableOrder", names}, {"timestamp", e.timestamp()}})
}

func (e *Emulator) restoreData(ctx context.Context, q *request) *response {
	o, d, tables, resp := e.namespaceBody(q, true)
	if resp != nil {
		return resp
	}
	if d.Provider == "postgres" || d.Provider == "neon" {
		return errorResponse(500, fmt.Sprintf("PostgreSQL connection not available for '%s'.", d.Name))
	}
	if !hasD1Binding(&e.cfg, d.Name) {
		return errorResponse(500, fmt.Sprintf("D1 binding '%s' not available for '%s'.", d1BindingName(d.Name), d.Name))
	}
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureNamespace(ctx, d)
	if err != nil {
		return unexpected()
	}
	order := append(tableNamesOf(d), "_meta")
	if sw, _ := o.get("skipWipe"); !jsTruthy(sw) {
		var wipe []stmt
		for _, t := range order {
			wipe = append(wipe, stmt{sql: "DELETE FROM " + esc(t)})
		}
		if err := d1Batch(ctx, db, wipe); err != nil {
			return unexpected()
		}
	}
	for _, t := range order {
		v, _ := tables.get(t)
		if err := insertBatches(ctx, db, t, rowsOf(v)); err != nil {
			return unexpected()
		}
	}
	return jsonResponse(200, object{{"ok", true}, {"namespace", d.Name}, {"restored", float64(len(tables))}})
}

// ─── R2 ───

// zQueryEnum validates an optional enum query parameter.
func zQueryEnum(q *request, key string, opts ...string) *response {
	qs := q.r.URL.Query()
	if !qs.Has(key) {
		return nil
	}
	v := qs.Get(key)
	for _, o := range opts {
		if v == o {
			return nil
		}
	}
	quoted := make([]string, len(opts))
	for i, o := range opts {
		quoted[i] = `"` + o + `"`
	}
	return errorResponse(400, key+": Invalid option: expected one of "+strings.Join(quoted, "|"))
}

func (e *Emulator) dumpStorage(ctx context.Context, q *request) *response {
	if r := zQueryEnum(q, "action", "list", "get"); r != nil {
		return r
	}
	qs := q.r.URL.Query()
	switch qs.Get("action") {
	case "list":
		// The peer lists without include:['httpMetadata'], so every object
		// reports application/octet-stream here. 0.4+ leaves upload-grant
		// markers out, of the total too.
		var buf bytes.Buffer
		buf.WriteString(`{"objects":[`)
		n, after := 0, ""
		for {
			objs, more, err := e.r2.list(ctx, "", after, 1000)
			if err != nil {
				return unexpected()
			}
			for _, o := range objs {
				after = o.Key
				if e.newer() && isUploadGrant(o.Key) {
					continue
				}
				if n > 0 {
					buf.WriteByte(',')
				}
				writeJS(&buf, object{{"key", o.Key}, {"size", float64(o.Size)}, {"etag", o.ETag}, {"contentType", "application/octet-stream"}}, "", "")
				n++
			}
			if !more {
				break
			}
		}
		buf.WriteString(`],"total":`)
		buf.WriteString(jsNumber(float64(n)))
		buf.WriteString(`,"timestamp":`)
		jsString(&buf, e.timestamp())
		buf.WriteString("}")
		return &response{status: 200, header: http.Header{"Content-Type": {"application/json"}}, body: buf.Bytes()}
	case "get":
		key := qs.Get("key")
		if key == "" {
			return errorResponse(400, "key query parameter is required.")
		}
		if e.newer() && isUploadGrant(key) {
			return internalKeyRefused(key)
		}
		o, err := e.r2.head(ctx, key)
		if errors.Is(err, errNoObject) {
			return errorResponse(404, "Object not found: "+key)
		}
		if err != nil {
			return unexpected()
		}
		resp := e.objectResponse(o)
		if resp.status == 200 {
			resp.header["X-R2-Key"] = []string{key}
		}
		return resp
	}
	return errorResponse(400, `action query parameter must be "list" or "get".`)
}

func (e *Emulator) restoreStorage(ctx context.Context, q *request) *response {
	if r := zQueryEnum(q, "action", "wipe", "put"); r != nil {
		return r
	}
	qs := q.r.URL.Query()
	switch qs.Get("action") {
	case "wipe":
		// 0.4+ keeps upload-grant markers and does not count them.
		deleted, after := 0, ""
		for {
			objs, more, err := e.r2.list(ctx, "", after, 1000)
			if err != nil {
				return unexpected()
			}
			keys := make([]string, 0, len(objs))
			for _, o := range objs {
				after = o.Key
				if e.newer() && isUploadGrant(o.Key) {
					continue
				}
				keys = append(keys, o.Key)
			}
			if err := e.r2.delete(ctx, keys); err != nil {
				return unexpected()
			}
			deleted += len(keys)
			if !more {
				break
			}
		}
		return jsonResponse(200, object{{"ok", true}, {"deleted", float64(deleted)}})
	case "put":
		key := qs.Get("key")
		if key == "" {
			return errorResponse(400, "key query parameter is required.")
		}
		if e.newer() && isUploadGrant(key) {
			return internalKeyRefused(key)
		}
		o, err := e.r2.put(ctx, key, e.storedType(q.r.Header.Get("Content-Type")), bytes.NewReader(q.body), e.now())
		if err != nil {
			return unexpected()
		}
		return jsonResponse(200, object{{"ok", true}, {"key", key}, {"size", float64(o.Size)}})
	}
	return errorResponse(400, `action query parameter must be "wipe" or "put".`)
}

// ─── resync, export, cleanup-plugin ───

func (e *Emulator) resyncUsersPublic(ctx context.Context) *response {
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureAuth(ctx)
	if err != nil {
		return unexpected()
	}
	users, err := queryObjects(ctx, db, func(v any) any { return v }, `SELECT id, email, displayName, avatarUrl, role, isAnonymous, createdAt, updatedAt FROM _users`)
	if err != nil {
		return errorResponse(500, "Resync failed: "+err.Error())
	}
	now := e.timestamp()
	synced := 0
	for _, u := range users {
		get := func(k string) any { v, _ := u.get(k); return v }
		role := get("role")
		if role == nil {
			role = "user"
		}
		anon := 0
		if iv, ok := get("isAnonymous").(int64); ok && iv != 0 {
			anon = 1
		}
		created := get("createdAt")
		if created == nil {
			created = now
		}
		_, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO _users_public (id, email, displayName, avatarUrl, role, isAnonymous, createdAt, updatedAt)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, get("id"), get("email"), get("displayName"), get("avatarUrl"), role, anon, created, now)
		if err == nil {
			synced++
		}
	}
	return jsonResponse(200, object{{"ok", true}, {"totalSynced", float64(synced)}, {"source", "d1"}})
}

func (e *Emulator) export(ctx context.Context, q *request, rawName string) *response {
	name := rawName
	format := q.r.URL.Query().Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" {
		return errorResponse(400, fmt.Sprintf(`Unsupported export format: %s. Only "json" is supported.`, format))
	}
	var d *Database
	for i := range e.cfg.Databases {
		if e.cfg.Databases[i].Table(name) != nil {
			d = &e.cfg.Databases[i]
			break
		}
	}
	if d == nil {
		return errorResponse(404, "Table not found: "+name)
	}
	tables, resp := e.dumpNamespace(ctx, d, []string{name}, false)
	if resp != nil {
		return resp
	}
	records, _ := tables.get(name)
	var buf bytes.Buffer
	writeJS(&buf, records, "  ", "")
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Disposition", `attachment; filename="`+name+`-export.json"`)
	return &response{status: 200, header: h, body: buf.Bytes()}
}

var ftsCompanion = regexp.MustCompile(`_fts(?:_.+)?$`)

// pluginPlan selects the tables of prefix/ and the meta keys to delete.
func pluginPlan(all []string, prefix string) (tables, drop, metaKeys []string) {
	for _, n := range all {
		if n != "_meta" && strings.HasPrefix(n, prefix+"/") && !ftsCompanion.MatchString(n) {
			tables = append(tables, n)
		}
	}
	sort.Strings(tables)
	for _, t := range tables {
		drop = append(drop, t+"_fts", t)
		metaKeys = append(metaKeys, "schemaHash:"+t, "migration_version:"+t)
	}
	return tables, drop, metaKeys
}

func (e *Emulator) cleanupPlugin(ctx context.Context, q *request) *response {
	o, resp := bodyObject(q)
	if resp != nil {
		return resp
	}
	var z zodIssues
	rawPrefix := zString(&z, o, "prefix")
	ns := zOptString(&z, o, "namespace")
	id := zOptString(&z, o, "id")
	doName := zOptString(&z, o, "doName")
	if r := z.response(); r != nil {
		return r
	}
	prefix := strings.TrimRight(strings.TrimSpace(rawPrefix), "/")
	if prefix == "" {
		return errorResponse(400, "prefix is required.")
	}
	var tables, metaKeys []string
	inDO := func(name string) *response {
		var r *response
		tables, metaKeys, r = e.cleanupPluginInDO(ctx, name, prefix)
		return r
	}
	var target any
	switch {
	case doName != "":
		target = object{{"doName", doName}}
		if r := inDO(doName); r != nil {
			return r
		}
	case ns != "":
		t := object{{"namespace", ns}}
		if id != "" {
			t = append(t, kv{"id", id})
		}
		target = t
		d := e.cfg.Database(ns)
		switch {
		case d != nil && (d.Provider == "postgres" || d.Provider == "neon"):
			return errorResponse(500, fmt.Sprintf("PostgreSQL binding '%s' not found.", "DB_POSTGRES_"+strings.ReplaceAll(strings.ToUpper(ns), "-", "_")))
		case d != nil && id == "" && d.RoutesToD1():
			var err error
			if tables, metaKeys, err = e.cleanupPluginInD1(ctx, ns, prefix); err != nil {
				return unexpected()
			}
		default:
			name := ns
			if id != "" {
				if strings.Contains(id, ":") {
					return unexpected()
				}
				name = ns + ":" + id
			}
			if r := inDO(name); r != nil {
				return r
			}
		}
	}
	e.d1.mu.Lock()
	cdb, err := e.d1.ensureControl(ctx)
	if err == nil {
		_, err = cdb.ExecContext(ctx, `DELETE FROM _meta WHERE key = ?`, "plugin_version:"+prefix)
	}
	e.d1.mu.Unlock()
	if err != nil {
		return unexpected()
	}
	if tables == nil {
		tables = []string{}
	}
	metaKeys = append(metaKeys, "plugin_version:"+prefix)
	return jsonResponse(200, object{
		{"ok", true}, {"prefix", prefix}, {"target", target},
		{"removed", object{{"tables", tables}, {"metaKeys", metaKeys}}},
	})
}

// cleanupPluginInDO drops a plugin's tables and _meta keys in one DO.
func (e *Emulator) cleanupPluginInDO(ctx context.Context, name, prefix string) (tables, metaKeys []string, _ *response) {
	res, err := e.dos.call(ctx, doCall{name: name}, func(in *doInstance, db sqlDB) (doResult, error) {
		t, mk, err := dropPlugin(ctx, db, prefix)
		if err != nil {
			return doResult{status: 500, body: object{{"code", float64(500)}, {"message", err.Error()}}}, nil
		}
		return doResult{status: 200, body: object{{"tables", t}, {"metaKeys", mk}}}, nil
	})
	if err != nil {
		return nil, nil, unexpected()
	}
	if !res.ok() {
		b, _ := res.body.(object)
		msg, _ := b.get("message")
		m, _ := msg.(string)
		if m == "" {
			m = "DO SQL execution failed."
		}
		return nil, nil, errorResponse(res.status, m)
	}
	if res.status == 200 {
		b, _ := res.body.(object)
		tv, _ := b.get("tables")
		mv, _ := b.get("metaKeys")
		tables, _ = tv.([]string)
		metaKeys, _ = mv.([]string)
	}
	return tables, metaKeys, nil
}

// cleanupPluginInD1 drops a plugin's tables and _meta keys in a
// namespace's D1 database.
func (e *Emulator) cleanupPluginInD1(ctx context.Context, ns, prefix string) (tables, metaKeys []string, err error) {
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.db(d1BindingName(ns))
	if err != nil {
		return nil, nil, err
	}
	return dropPlugin(ctx, db, prefix)
}

// dropPlugin drops the tables of a plugin's prefix and deletes its _meta
// keys in db, returning what it removed.
func dropPlugin(ctx context.Context, db sqlDB, prefix string) (tables, metaKeys []string, err error) {
	all, err := queryStrings(ctx, db, userTablesSQL)
	if err != nil {
		return nil, nil, err
	}
	tables, drop, metaKeys := pluginPlan(all, prefix)
	for _, t := range drop {
		if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+esc(t)); err != nil {
			return nil, nil, err
		}
	}
	for _, k := range metaKeys {
		if _, err := db.ExecContext(ctx, `DELETE FROM "_meta" WHERE "key" = ?`, k); err != nil {
			return nil, nil, err
		}
	}
	return tables, metaKeys, nil
}
