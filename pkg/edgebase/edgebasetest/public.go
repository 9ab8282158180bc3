package edgebasetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The public REST subset: enough to seed and fingerprint a server over HTTP
// the same way against the peer and the emulator.

// dbPath is /api/db/{ns}[/{id}]/tables/{table}[/{rest}].
type dbPath struct {
	ns, id, table, rest string
	hasID               bool
}

func parseDBPath(r *http.Request) (dbPath, bool) {
	raw := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/api/db/"), "/")
	parts := make([]string, len(raw))
	for i, p := range raw {
		s, err := url.PathUnescape(p)
		if err != nil {
			return dbPath{}, false
		}
		parts[i] = s
	}
	var p dbPath
	switch {
	case len(parts) >= 3 && parts[1] == "tables":
		p.ns, p.table = parts[0], parts[2]
		parts = parts[3:]
	case len(parts) >= 4 && parts[2] == "tables":
		p.ns, p.id, p.hasID, p.table = parts[0], parts[1], true, parts[3]
		parts = parts[4:]
	default:
		return dbPath{}, false
	}
	if p.table == "" || len(parts) > 1 {
		return dbPath{}, false
	}
	if len(parts) == 1 {
		p.rest = parts[0]
	}
	return p, true
}

func (e *Emulator) routeDB(ctx context.Context, q *request) *response {
	r := q.r
	p, ok := parseDBPath(r)
	if !ok {
		return notFoundPath(r)
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	if !(get && p.rest == "") && !(post && (p.rest == "" || p.rest == "batch")) {
		return notFoundPath(r)
	}
	action := "write"
	if get {
		action = "read"
	}
	isSK := false
	switch e.validateKey(r, "db:table:"+p.table+":"+action) {
	case keyValid:
		isSK = true
	case keyInvalid:
		return errorResponse(401, fmt.Sprintf("Invalid X-EdgeBase-Service-Key for scope 'db:table:%s:%s'.", p.table, action))
	}
	d := e.cfg.Database(p.ns)
	switch {
	case d == nil:
		return errorResponse(404, fmt.Sprintf("Database '%s' not found in config", p.ns))
	case p.hasID && strings.TrimSpace(p.id) == "":
		return errorResponse(400, "instanceId must not be empty")
	case p.hasID && strings.Contains(p.id, ":"):
		return errorResponse(400, "instanceId must not contain ':'")
	case d.Dynamic() && !p.hasID:
		return errorResponse(400, fmt.Sprintf("instanceId is required for dynamic namespace '%s'", p.ns))
	case !d.Dynamic() && p.hasID:
		return errorResponse(400, fmt.Sprintf("instanceId is not allowed for single-instance namespace '%s'", p.ns))
	}
	if !p.hasID && d.RoutesToD1() {
		return e.d1Table(ctx, q, d, p)
	}
	if d.Provider == "postgres" || d.Provider == "neon" {
		return errorResponse(500, fmt.Sprintf("PostgreSQL connection not available for '%s'.", d.Name))
	}
	name := p.ns
	if p.hasID {
		name += ":" + p.id
	}
	run := func(authorized bool) (doResult, error) {
		return e.dos.call(ctx, doCall{name: name, createAuthorized: authorized}, func(in *doInstance, db sqlDB) (doResult, error) {
			t := e.anyTable(p.table)
			if t == nil {
				return doResult{status: 404, body: object{{"code", float64(404)}, {"message", fmt.Sprintf(`Table "%s" not found in this DO.`, p.table)}}}, nil
			}
			exists, err := queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?`, p.table)
			if err != nil {
				return doResult{}, err
			}
			if len(exists) == 0 {
				if err := initDOTable(ctx, db, t); err != nil {
					return doResult{}, err
				}
			}
			resp := e.tableOp(ctx, q, db, t, p.rest, true)
			return doResult{status: resp.status, body: rawJSON(resp.body)}, nil
		})
	}
	res, err := run(false)
	if err == nil && res.status == 201 {
		if b, ok := res.body.(object); ok {
			if nc, _ := b.get("needsCreate"); nc == true {
				if d.Dynamic() && !isSK && !d.Access {
					return jsonResponse(403, object{{"code", float64(403)}, {"message", "DB creation not allowed."}, {"error", "CANNOT_CREATE_DB"}})
				}
				res, err = run(true)
			}
		}
	}
	if err != nil {
		return errorResponse(500, fmt.Sprintf("Database request failed while handling '%s'. Check the worker logs for the original exception.", "/tables/"+p.table))
	}
	return jsonResponse(res.status, res.body)
}

// anyTable finds a table config in any block (the DO's getTableConfig).
func (e *Emulator) anyTable(name string) *Table {
	for i := range e.cfg.Databases {
		if t := e.cfg.Databases[i].Table(name); t != nil {
			return t
		}
	}
	return nil
}

func (e *Emulator) d1Table(ctx context.Context, q *request, d *Database, p dbPath) *response {
	t := d.Table(p.table)
	if t == nil {
		return errorResponse(404, fmt.Sprintf("Table '%s' not found in database '%s'.", p.table, d.Name))
	}
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureNamespace(ctx, d)
	if err != nil {
		return errorResponse(500, fmt.Sprintf("Internal server error while handling '%s'. Check the worker logs for the original exception.", q.r.URL.Path))
	}
	return e.tableOp(ctx, q, db, t, p.rest, false)
}

// tableOp runs list, insert or batch on one table (DO or D1 flavour).
func (e *Emulator) tableOp(ctx context.Context, q *request, db querier, t *Table, rest string, isDO bool) *response {
	fail := func() *response {
		if isDO {
			return errorResponse(500, fmt.Sprintf("Database request failed while handling '%s'. Check the worker logs for the original exception.", "/tables/"+t.Name))
		}
		return errorResponse(500, fmt.Sprintf("Internal server error while handling '%s'. Check the worker logs for the original exception.", q.r.URL.Path))
	}
	switch {
	case q.r.Method != http.MethodPost:
		resp, err := e.listRows(ctx, q, db, t, isDO)
		if err != nil {
			return fail()
		}
		return resp
	case rest == "batch":
		v, err := q.json()
		o, ok := v.(object)
		if err != nil || !ok {
			return errorResponse(400, fmt.Sprintf("Invalid JSON body for batch operations on table '%s'.", t.Name))
		}
		ins, _ := o.get("inserts")
		items := rowsOf(ins)
		_, hasUpd := o.get("updates")
		_, hasDel := o.get("deletes")
		if hasUpd || hasDel {
			return errorResponse(400, "edgebasetest: batch updates and deletes are not emulated")
		}
		if len(items) > 500 {
			return errorResponse(400, fmt.Sprintf("Batch limit exceeded: %d operations (max 500).", len(items)))
		}
		for _, it := range items {
			if resp := validateInsert(t, it, isDO, true); resp != nil {
				return resp
			}
		}
		inserted := []any{}
		var stmts []stmt
		var ids, times []string
		for _, it := range items {
			st, id, now := e.insertRecord(t, it)
			stmts = append(stmts, st)
			ids = append(ids, id)
			times = append(times, now)
		}
		if err := execAll(ctx, db, stmts); err != nil {
			return fail()
		}
		for i, id := range ids {
			if isDO {
				// The DO answers with {...item, id, createdAt, updatedAt}
				// as sent, not as stored.
				inserted = append(inserted, doBatchRecord(t, items[i], id, times[i]))
				continue
			}
			rows, err := e.fetchRows(ctx, db, t, isDO, id)
			if err != nil {
				return fail()
			}
			for _, r := range rows {
				inserted = append(inserted, r)
			}
		}
		return jsonResponse(200, object{{"inserted", inserted}})
	default:
		v, err := q.json()
		o, ok := v.(object)
		if err != nil || !ok {
			return errorResponse(400, fmt.Sprintf("Invalid JSON body for insert into table '%s'.", t.Name))
		}
		if resp := validateInsert(t, o, isDO, false); resp != nil {
			return resp
		}
		st, id, _ := e.insertRecord(t, o)
		if err := execAll(ctx, db, []stmt{st}); err != nil {
			if strings.Contains(err.Error(), "UNIQUE constraint failed") {
				return errorResponse(409, "Record already exists.")
			}
			return fail()
		}
		rows, err := e.fetchRows(ctx, db, t, isDO, id)
		if err != nil || len(rows) == 0 {
			return fail()
		}
		return jsonResponse(201, rows[0])
	}
}

func execAll(ctx context.Context, db querier, stmts []stmt) error {
	if sdb, ok := db.(sqlDB); ok {
		return d1Batch(ctx, sdb, stmts)
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s.sql, s.args...); err != nil {
			return err
		}
	}
	return nil
}

func (e *Emulator) fetchRows(ctx context.Context, db querier, t *Table, isDO bool, id string) ([]object, error) {
	conv := d1Value
	if isDO {
		conv = doValue
	}
	rows, err := queryObjects(ctx, db, conv, "SELECT * FROM "+esc(t.Name)+` WHERE "id" = ?`, id)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		rows[i] = normalizeRow(t, rows[i])
	}
	return rows, nil
}

// validateInsert checks required fields and types like the peer's
// validateInsert; the first problem is reported.
func validateInsert(t *Table, item object, isDO, batch bool) *response {
	data := object{}
	var first string
	for _, f := range t.effectiveSchema() {
		if f.Name == "id" || f.Name == "createdAt" || f.Name == "updatedAt" {
			continue
		}
		v, ok := item.get(f.Name)
		msg := ""
		switch {
		case !ok || v == nil:
			if f.Required && f.Default == nil {
				msg = "Field is required."
			}
		default:
			switch f.Type {
			case "string", "text", "datetime":
				if _, is := v.(string); !is {
					msg = "Must be a string."
				}
			case "number":
				if _, is := v.(float64); !is {
					msg = "Must be a number."
				}
			case "boolean":
				if _, is := v.(bool); !is {
					msg = "Must be a boolean."
				}
			}
		}
		if msg != "" {
			data = append(data, kv{f.Name, object{{"code", "invalid"}, {"message", msg}}})
			if first == "" {
				first = fmt.Sprintf("Invalid '%s'. %s", f.Name, msg)
			}
		}
	}
	if first == "" {
		return nil
	}
	switch {
	case batch && isDO:
		first = "Batch insert request failed validation. See data for field-level errors."
	case batch:
		first = fmt.Sprintf("Batch insert payload for table '%s' failed validation. See data for field-level errors.", t.Name)
	}
	body := object{{"code", float64(400)}, {"message", first}}
	if isDO {
		body = append(body, kv{"slug", "validation-failed"})
	}
	body = append(body, kv{"data", data})
	return jsonResponse(400, body)
}

// insertRecord builds the INSERT of one REST record: id, timestamps,
// defaults, schema columns only, booleans as 0/1, JSON fields serialized.
func (e *Emulator) insertRecord(t *Table, item object) (stmt, string, string) {
	id := ""
	if v, ok := item.get("id"); ok {
		if s, isStr := v.(string); isStr {
			id = s
		}
	}
	if id == "" {
		id = e.newID()
	}
	now := e.timestamp()
	var cols, ph []string
	var args []any
	for _, f := range t.effectiveSchema() {
		var v any
		has := false
		switch f.Name {
		case "id":
			v, has = id, true
		case "createdAt", "updatedAt":
			v, has = now, true
		default:
			v, has = item.get(f.Name)
			if !has && f.Default != nil {
				dv, err := parseJS(f.Default)
				if err == nil {
					v, has = dv, true
				}
			}
		}
		if !has {
			continue
		}
		switch x := v.(type) {
		case bool:
			if x {
				v = int64(1)
			} else {
				v = int64(0)
			}
		case object, []any:
			v = string(marshalJS(x))
		}
		cols = append(cols, esc(f.Name))
		ph = append(ph, "?")
		args = append(args, v)
	}
	return stmt{sql: "INSERT INTO " + esc(t.Name) + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")", args: args}, id, now
}

// normalizeRow converts booleans, numbers and JSON fields per schema, as the
// peer's list/get responses do.
func normalizeRow(t *Table, row object) object {
	if t.Schema == nil {
		return row
	}
	out := make(object, len(row))
	for i, c := range row {
		out[i] = c
		f := t.field(c.Key)
		if f == nil {
			continue
		}
		switch f.Type {
		case "boolean":
			switch c.Value {
			case float64(1), "1", "true", true:
				out[i].Value = true
			case float64(0), "0", "false", false:
				out[i].Value = false
			case nil:
			default:
				out[i].Value = jsTruthy(c.Value)
			}
		case "number":
			if c.Value != nil {
				out[i].Value = jsNumberOf(c.Value)
			}
		case "json":
			if s, ok := c.Value.(string); ok {
				if v, err := parseJS([]byte(s)); err == nil {
					out[i].Value = v
				}
			}
		}
	}
	return out
}

// jsNumberOf is Number(v).
func jsNumberOf(v any) any {
	switch x := v.(type) {
	case float64:
		return x
	case bool:
		if x {
			return float64(1)
		}
		return float64(0)
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return float64(0)
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return math.NaN()
		}
		return f
	}
	return math.NaN()
}

// parseJSInt is parseInt(s, 10); ok is false for NaN.
func parseJSInt(s string) (int, bool) {
	s = strings.TrimLeft(s, " \t\n\r")
	neg := false
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		neg = s[0] == '-'
		s = s[1:]
	}
	n, digits := 0, 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		if n < math.MaxInt32 {
			n = n*10 + int(c-'0')
		}
		digits++
	}
	if digits == 0 {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// listParams are a row listing's paging parameters.
type listParams struct {
	limit, offset, page, perPage *int
	after, before, sort          string
}

// pick is the first of a and b that is set, else def.
func pick(a, b *int, def int) int {
	if a != nil {
		return *a
	}
	if b != nil {
		return *b
	}
	return def
}

func parseListParams(qs url.Values) (listParams, *response) {
	num := func(name, msg string, min int) (*int, *response) {
		v := qs.Get(name)
		if v == "" {
			return nil, nil
		}
		n, ok := parseJSInt(v)
		if !ok {
			return nil, errorResponse(400, fmt.Sprintf("Invalid %s parameter: must be a number", name))
		}
		if n < min {
			return nil, errorResponse(400, fmt.Sprintf("Invalid %s parameter: %s", name, msg))
		}
		return &n, nil
	}
	p := listParams{after: qs.Get("after"), before: qs.Get("before"), sort: qs.Get("sort")}
	var r *response
	if p.limit, r = num("limit", "must be non-negative", 0); r != nil {
		return p, r
	}
	if p.limit != nil && *p.limit > 1000 {
		*p.limit = 1000
	}
	if p.offset, r = num("offset", "must be non-negative", 0); r != nil {
		return p, r
	}
	if p.page, r = num("page", "must be a positive number", 1); r != nil {
		return p, r
	}
	p.perPage, r = num("perPage", "must be non-negative", 0)
	return p, r
}

// cursorMode reports whether the listing pages by id (after/before)
// rather than by offset.
func (p listParams) cursorMode() bool { return p.after != "" || p.before != "" }

// query builds the SELECT of one page of table.
func (p listParams) query(table string) (string, []any) {
	effLimit := min(pick(p.limit, p.perPage, 100), 1000)
	sqlq := "SELECT * FROM " + esc(table)
	var args []any
	switch {
	case p.after != "":
		sqlq += ` WHERE "id" > ?`
		args = append(args, p.after)
	case p.before != "":
		sqlq += ` WHERE "id" < ?`
		args = append(args, p.before)
	}
	var order []string
	hasID := false
	if p.sort != "" {
		for _, part := range strings.Split(p.sort, ",") {
			field, dir, _ := strings.Cut(part, ":")
			d := "ASC"
			if strings.ToUpper(dir) == "DESC" {
				d = "DESC"
			}
			if field == "id" {
				hasID = true
			}
			order = append(order, esc(field)+" "+d)
		}
	}
	tie := `"id" ASC`
	if p.before != "" {
		tie = `"id" DESC`
	}
	if len(order) == 0 || !hasID {
		order = append(order, tie)
	}
	sqlq += " ORDER BY " + strings.Join(order, ", ")
	if p.cursorMode() {
		return sqlq + " LIMIT ?", append(args, effLimit)
	}
	off := pick(p.offset, nil, (pick(p.page, nil, 1)-1)*effLimit)
	return sqlq + " LIMIT ? OFFSET ?", append(args, effLimit, off)
}

func (e *Emulator) listRows(ctx context.Context, q *request, db querier, t *Table, isDO bool) (*response, error) {
	p, r := parseListParams(q.r.URL.Query())
	if r != nil {
		return r, nil
	}
	sqlq, args := p.query(t.Name)
	conv := d1Value
	if isDO {
		conv = doValue
	}
	rows, err := queryObjects(ctx, db, conv, sqlq, args...)
	if err != nil {
		return nil, err
	}
	items := make([]any, len(rows))
	for i := range rows {
		rows[i] = normalizeRow(t, rows[i])
		items[i] = rows[i]
	}
	cursorMode := p.cursorMode()
	var total any
	if !cursorMode {
		var n int64
		cnt, err := queryStrings(ctx, db, "SELECT COUNT(*) as total FROM "+esc(t.Name))
		if err != nil {
			return nil, err
		}
		if len(cnt) > 0 {
			n, _ = strconv.ParseInt(cnt[0], 10, 64)
		}
		total = float64(n)
	}
	hasMore := len(rows) == pick(p.limit, p.perPage, 100)
	var lastID any
	if len(rows) > 0 {
		lastID, _ = rows[len(rows)-1].get("id")
	}
	pageV := float64(pick(p.page, nil, 1))
	if isDO {
		resp := object{{"items", items}}
		if !cursorMode {
			resp = append(resp, kv{"total", total}, kv{"page", pageV}, kv{"perPage", float64(pick(p.perPage, p.limit, 100))})
		}
		resp = append(resp, kv{"hasMore", hasMore})
		if len(rows) > 0 {
			resp = append(resp, kv{"cursor", lastID})
		}
		return jsonResponse(200, resp), nil
	}
	var cursor any
	if hasMore && len(rows) > 0 {
		cursor = jsToString(lastID)
	}
	return jsonResponse(200, object{{"items", items}, {"total", total}, {"hasMore", hasMore}, {"cursor", cursor}, {"page", pageV}, {"perPage", float64(pick(p.limit, p.perPage, 100))}}), nil
}

// ─── storage ───

func (e *Emulator) routeStorage(ctx context.Context, q *request) *response {
	r := q.r
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/api/storage/")
	bucketEsc, restEsc, hasRest := strings.Cut(raw, "/")
	bucket, err1 := url.PathUnescape(bucketEsc)
	rest, err2 := url.PathUnescape(restEsc)
	if err1 != nil || err2 != nil || bucket == "" {
		return notFoundPath(r)
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	var action string
	switch {
	case get && !hasRest:
		action = "list"
	case get && rest != "":
		action = "get"
	case r.Method == http.MethodPost && hasRest && rest == "upload":
		action = "upload"
	default:
		return notFoundPath(r)
	}
	if !e.cfg.HasBucket(bucket) {
		return slugError(404, fmt.Sprintf("Storage bucket '%s' is not configured.", bucket), "not-found")
	}
	scope := "read"
	if action == "upload" {
		scope = "write"
	}
	if e.validateKey(r, "storage:bucket:"+bucket+":"+scope) == keyInvalid {
		return slugError(401, fmt.Sprintf("Invalid X-EdgeBase-Service-Key for storage scope 'storage:bucket:%s:%s'.", bucket, scope), "unauthenticated")
	}
	switch action {
	case "list":
		return e.storageList(ctx, q, bucket)
	case "get":
		o, err := e.r2.head(ctx, bucket+"/"+rest)
		if errors.Is(err, errNoObject) {
			return slugError(404, "File not found.", "not-found")
		}
		if err != nil {
			return unexpected()
		}
		resp := e.objectResponse(o)
		if resp.status == 200 {
			resp.header.Set("ETag", o.ETag)
			resp.header.Set("Last-Modified", o.Uploaded.UTC().Format(http.TimeFormat))
		}
		return resp
	}
	return e.storageUpload(ctx, q, bucket)
}

func fileMeta(o *r2Object, contentType string) object {
	_, key, _ := strings.Cut(o.Key, "/")
	var by any
	if v, ok := o.Custom.get("uploadedBy"); ok {
		by = v
	}
	custom := o.Custom
	if custom == nil {
		custom = object{}
	}
	return object{
		{"key", key}, {"size", float64(o.Size)}, {"contentType", contentType}, {"etag", o.ETag},
		{"uploadedAt", isoTime(o.Uploaded)}, {"uploadedBy", by}, {"customMetadata", custom},
	}
}

func (e *Emulator) storageList(ctx context.Context, q *request, bucket string) *response {
	qs := q.r.URL.Query()
	intParam := func(name string, def int) (int, *response) {
		v := qs.Get(name)
		if v == "" {
			return def, nil
		}
		n, ok := parseJSInt(v)
		if !ok || n < 0 {
			return 0, slugError(400, fmt.Sprintf("Invalid %s: must be a non-negative integer.", strings.ReplaceAll(name, "limit", "storage limit")), "validation-failed")
		}
		return n, nil
	}
	limit, r := intParam("limit", 100)
	if r != nil {
		return r
	}
	offset, r := intParam("offset", 0)
	if r != nil {
		return r
	}
	limit = max(1, min(limit, 1000))
	prefix := bucket + "/" + qs.Get("prefix")
	cursor := qs.Get("cursor")
	startAfter := ""
	if strings.HasPrefix(cursor, "offset:") {
		n, ok := parseJSInt(strings.TrimPrefix(cursor, "offset:"))
		if !ok || n < 0 {
			return slugError(400, "Invalid storage cursor offset: must be a non-negative integer.", "validation-failed")
		}
		offset = n
	} else if cursor != "" {
		k, err := r2CursorKey(cursor)
		if err != nil {
			return slugError(400, "Invalid cursor.", "validation-failed")
		}
		startAfter = k
	}
	var objs []*r2Object
	var truncated bool
	var next any
	if offset > 0 {
		all, more, err := e.r2.list(ctx, prefix, "", offset+limit)
		if err != nil {
			return unexpected()
		}
		if offset < len(all) {
			objs = all[offset:]
		}
		truncated = more
		if truncated {
			next = "offset:" + strconv.Itoa(offset+limit)
		}
	} else {
		var err error
		objs, truncated, err = e.r2.list(ctx, prefix, startAfter, limit)
		if err != nil {
			return unexpected()
		}
		if truncated && len(objs) > 0 {
			next = r2Cursor(objs[len(objs)-1].Key)
		}
	}
	files := make([]any, len(objs))
	for i, o := range objs {
		// R2 list results carry no httpMetadata on the peer.
		files[i] = fileMeta(o, "application/octet-stream")
	}
	return jsonResponse(200, object{{"files", files}, {"cursor", next}, {"truncated", truncated}})
}

func (e *Emulator) storageUpload(ctx context.Context, q *request, bucket string) *response {
	_, params, err := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	missing := slugError(400, "Missing required fields: file and key.", "validation-failed")
	if err != nil || params["boundary"] == "" {
		return missing
	}
	mr := multipart.NewReader(bytes.NewReader(q.body), params["boundary"])
	var key, ct string
	var data []byte
	gotFile := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return missing
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return missing
		}
		switch part.FormName() {
		case "key":
			key = string(b)
		case "file":
			gotFile = true
			data = b
			ct = part.Header.Get("Content-Type")
		}
	}
	if !gotFile || key == "" {
		return missing
	}
	ct = e.storedType(ct)
	o, err := e.r2.put(ctx, bucket+"/"+key, ct, bytes.NewReader(data), e.now())
	if err != nil {
		return unexpected()
	}
	return jsonResponse(201, fileMeta(o, ct))
}

// doBatchRecord is the DO batch answer for one insert: the item as sent
// with id set (in place, as a JS spread does), then createdAt, updatedAt
// and missing defaults.
func doBatchRecord(t *Table, item object, id, now string) object {
	rec := append(object(nil), item...)
	set := func(k string, v any) {
		for i := range rec {
			if rec[i].Key == k {
				rec[i].Value = v
				return
			}
		}
		rec = append(rec, kv{k, v})
	}
	set("id", id)
	for _, f := range t.effectiveSchema() {
		switch f.Name {
		case "createdAt", "updatedAt":
			set(f.Name, now)
		default:
			if _, ok := rec.get(f.Name); !ok && f.Default != nil {
				if v, err := parseJS(f.Default); err == nil {
					set(f.Name, v)
				}
			}
		}
	}
	return rec
}
