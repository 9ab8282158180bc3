package edgebasetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Seeding writes straight into the SQLite files (no HTTP), leaving the
// state exactly as the peer's public API would have left it: D1 tables with
// their _meta schemaHash rows, DO files with __miniflare_do_name, _meta
// (migration_version, schemaHash, doName) and the config's tables. Seeded
// DOs are cold.

// Row is one row to seed: column → value. Values may be nil, string, bool
// (stored 0/1), int, int64, uint64, float64, []byte (BLOB) or
// json.RawMessage (stored as text). Missing id/createdAt/updatedAt are
// generated.
type Row map[string]any

// Object is one R2 object to seed. Key is the full R2 key
// "<bucket>/<path>". With Data nil the object holds Size bytes of
// deterministic content (see GeneratedContent) derived from Seed (default:
// Key) without writing them anywhere.
type Object struct {
	Key         string
	ContentType string // "" stores none (served as application/octet-stream)
	Data        []byte
	Size        int64
	Seed        string
}

func sqlValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, int64, float64, []byte:
		return x, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return float64(x), nil
		}
		return int64(x), nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case json.RawMessage:
		return string(x), nil
	}
	return nil, fmt.Errorf("unsupported value type %T", v)
}

func (e *Emulator) rowStmt(t *Table, r Row) (stmt, error) {
	cols := map[string]bool{}
	for _, f := range t.effectiveSchema() {
		cols[f.Name] = true
	}
	full := Row{}
	for k, v := range r {
		full[k] = v
	}
	now := e.timestamp()
	if _, ok := full["id"]; !ok && cols["id"] {
		full["id"] = e.newID()
	}
	for _, c := range []string{"createdAt", "updatedAt"} {
		if _, ok := full[c]; !ok && cols[c] {
			full[c] = now
		}
	}
	var names, ph []string
	var args []any
	// Column order follows the schema, then any extra keys sorted.
	seen := map[string]bool{}
	add := func(k string) error {
		v, err := sqlValue(full[k])
		if err != nil {
			return fmt.Errorf("column %s: %w", k, err)
		}
		names = append(names, esc(k))
		ph = append(ph, "?")
		args = append(args, v)
		seen[k] = true
		return nil
	}
	for _, f := range t.effectiveSchema() {
		if _, ok := full[f.Name]; ok {
			if err := add(f.Name); err != nil {
				return stmt{}, err
			}
		}
	}
	var extra []string
	for k := range full {
		if !seen[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		if err := add(k); err != nil {
			return stmt{}, err
		}
	}
	return stmt{sql: "INSERT OR REPLACE INTO " + esc(t.Name) + " (" + strings.Join(names, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")", args: args}, nil
}

// AddRows inserts rows into table of target: a D1 namespace ("shared"), a
// single-instance DO block ("ledger") or an instance DO ("workspace:ws-1").
// Instance DOs are created as the public API would create them.
func (e *Emulator) AddRows(ctx context.Context, target, table string, rows ...Row) error {
	ns, id, hasID := parseDOName(target)
	d := e.cfg.Database(ns)
	if d == nil {
		return fmt.Errorf("edgebasetest: add rows: namespace %q not in config", ns)
	}
	if hasID != d.Dynamic() || (hasID && id == "") {
		return fmt.Errorf("edgebasetest: add rows: %q does not name a DB of block %q", target, ns)
	}
	t := d.Table(table)
	if t == nil {
		return fmt.Errorf("edgebasetest: add rows: table %q not in block %q", table, ns)
	}
	stmts := make([]stmt, 0, len(rows))
	for _, r := range rows {
		st, err := e.rowStmt(t, r)
		if err != nil {
			return fmt.Errorf("edgebasetest: add rows %s.%s: %w", target, table, err)
		}
		stmts = append(stmts, st)
	}
	if !hasID && d.RoutesToD1() {
		e.d1.mu.Lock()
		defer e.d1.mu.Unlock()
		db, err := e.d1.ensureNamespace(ctx, d)
		if err != nil {
			return fmt.Errorf("edgebasetest: add rows %s: %w", target, err)
		}
		if err := d1Batch(ctx, db, stmts); err != nil {
			return fmt.Errorf("edgebasetest: add rows %s.%s: %w", target, table, err)
		}
		return nil
	}
	if err := e.seedDO(ctx, target, stmts); err != nil {
		return fmt.Errorf("edgebasetest: add rows %s.%s: %w", target, table, err)
	}
	return nil
}

// seedDO creates/initializes the DO named name and runs stmts in one
// transaction, without warming it.
func (e *Emulator) seedDO(ctx context.Context, name string, stmts []stmt) error {
	in := e.dos.instance(e.dos.ids.fromName(name))
	in.mu.Lock()
	defer in.mu.Unlock()
	db, err := e.dos.handle(in)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, miniflareNameDDL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO __miniflare_do_name (id, name) VALUES (1, ?)", name); err != nil {
		return err
	}
	if err := e.dos.initializeSchema(ctx, tx, name); err != nil {
		return err
	}
	if v, ok, err := getMeta(ctx, tx, "doName"); err != nil {
		return err
	} else if !ok || v != name {
		if err := setDOMeta(ctx, tx, "doName", name); err != nil {
			return err
		}
	}
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// CreateInstance materializes an (empty) DO as the public API's first GET
// would, e.g. CreateInstance(ctx, "workspace:ws-9").
func (e *Emulator) CreateInstance(ctx context.Context, name string) error {
	if err := e.seedDO(ctx, name, nil); err != nil {
		return fmt.Errorf("edgebasetest: create instance %s: %w", name, err)
	}
	return nil
}

// AddUsers inserts auth users as a signup would (without sessions). Their
// password hashes use 1,000 PBKDF2 iterations (the peer uses 100,000) so
// seeding stays fast.
func (e *Emulator) AddUsers(ctx context.Context, users ...User) error {
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureAuth(ctx)
	if err != nil {
		return fmt.Errorf("edgebasetest: add users: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("edgebasetest: add users: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, u := range users {
		pw := u.Password
		if pw == "" {
			pw = "Passw0rd!" + u.Email
		}
		if u.ID == "" {
			u.ID = e.newID()
		}
		if _, err := e.insertUser(ctx, tx, u, passwordHash(pw, saltFor(u.ID), 1000), false, ""); err != nil {
			return fmt.Errorf("edgebasetest: add user %s: %w", u.Email, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("edgebasetest: add users: %w", err)
	}
	return nil
}

// NumberedUsers returns n users like the peer's seed.sh creates:
// user{i}@peer.test, "User {i}", password "Passw0rd!{i}-peer".
func NumberedUsers(n int) []User {
	out := make([]User, n)
	for i := range out {
		k := i + 1
		out[i] = User{Email: fmt.Sprintf("user%d@peer.test", k), DisplayName: fmt.Sprintf("User %d", k), Password: fmt.Sprintf("Passw0rd!%d-peer", k)}
	}
	return out
}

// AddObjects stores R2 objects.
func (e *Emulator) AddObjects(ctx context.Context, objs ...Object) error {
	for _, o := range objs {
		var err error
		if o.Data != nil {
			_, err = e.r2.put(ctx, o.Key, o.ContentType, bytes.NewReader(o.Data), e.now())
		} else {
			seed := o.Seed
			if seed == "" {
				seed = o.Key
			}
			_, err = e.r2.putGenerated(ctx, o.Key, o.ContentType, seed, o.Size, e.now())
		}
		if err != nil {
			return fmt.Errorf("edgebasetest: add object %s: %w", o.Key, err)
		}
	}
	return nil
}

// ObjectContent returns the bytes of a stored object (for tests).
func (e *Emulator) ObjectContent(ctx context.Context, key string) ([]byte, string, error) {
	o, err := e.r2.head(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("edgebasetest: object %s: %w", key, err)
	}
	b, err := e.r2.readAll(o)
	return b, o.ContentType, err
}

// StoredContentType returns the content type stored for an R2 key
// (application/octet-stream for an object stored without one), which a
// 0.4+ server does not serve for masked types; for
// FingerprintOptions.StoredType.
func (e *Emulator) StoredContentType(ctx context.Context, key string) (string, error) {
	o, err := e.r2.head(ctx, key)
	if err != nil {
		return "", fmt.Errorf("edgebasetest: object %s: %w", key, err)
	}
	if o.ContentType == "" {
		return "application/octet-stream", nil
	}
	return o.ContentType, nil
}

// BenchObjectSize is seed-bench.sh's size of object i: 70 % 4 KiB, 20 %
// 64 KiB, 9 % 256 KiB, 1 % 1 MiB, each plus i % 7 bytes.
func BenchObjectSize(i int) int64 {
	var s int64
	switch r := i % 100; {
	case r < 70:
		s = 4096
	case r < 90:
		s = 65536
	case r < 99:
		s = 262144
	default:
		s = 1048576
	}
	return s + int64(i%7)
}

// BenchObject is seed-bench.sh's object i (same key, bucket and bytes).
func BenchObject(i int) Object {
	bucket := "avatars"
	if i%2 == 1 {
		bucket = "uploads"
	}
	return Object{Key: fmt.Sprintf("%s/bench/%d.bin", bucket, i), ContentType: "application/octet-stream", Size: BenchObjectSize(i), Seed: fmt.Sprintf("peer-bench-%d", i)}
}

// SeedBench mirrors seed-bench.sh n m on a BenchConfig(n) emulator:
// ceil(n/10) users bench{i}@peer.test, n posts + 3 tags, n ledger entries,
// 3 rows in each doNNN.itemsNNN, and objects 1..m (BenchObject).
func (e *Emulator) SeedBench(ctx context.Context, n, m int) error {
	users := make([]User, (n+9)/10)
	for i := range users {
		users[i] = User{Email: fmt.Sprintf("bench%d@peer.test", i+1), DisplayName: fmt.Sprintf("Bench %d", i+1), Password: fmt.Sprintf("Passw0rd!%d-peer", i+1)}
	}
	if err := e.AddUsers(ctx, users...); err != nil {
		return err
	}
	posts := make([]Row, n)
	entries := make([]Row, n)
	for k := 0; k < n; k++ {
		posts[k] = Row{"title": fmt.Sprintf("post %d", k+1), "body": strings.Repeat(fmt.Sprintf("body of post %d ", k+1), 4)}
		entries[k] = Row{"amount": float64(k) + 1.25, "memo": fmt.Sprintf("entry %d", k+1)}
	}
	if err := e.AddRows(ctx, "shared", "posts", posts...); err != nil {
		return err
	}
	if err := e.AddRows(ctx, "shared", "tags", Row{"name": "red"}, Row{"name": "green"}, Row{"name": "blue"}); err != nil {
		return err
	}
	if err := e.AddRows(ctx, "ledger", "entries", entries...); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		s := fmt.Sprintf("%03d", i)
		rows := make([]Row, 3)
		for j := range rows {
			rows[j] = Row{"title": fmt.Sprintf("do%s item %d", s, j+1), "n": float64(j + 1)}
		}
		if err := e.AddRows(ctx, "do"+s, "items"+s, rows...); err != nil {
			return err
		}
	}
	objs := make([]Object, 0, m)
	for i := 1; i <= m; i++ {
		objs = append(objs, BenchObject(i))
	}
	return e.AddObjects(ctx, objs...)
}

// DemoSummary describes what SeedDemo stored.
type DemoSummary struct {
	Users     int
	Instances []string // instance DO names (workspace:ws-N)
	Rows      int
	Objects   int
	Bytes     int64
}

// DemoInstances are the instance DOs SeedDemo creates.
var DemoInstances = []string{"workspace:ws-1", "workspace:ws-2", "workspace:ws-3", "workspace:ws-4"}

// SeedDemo fills a DefaultConfig emulator with varied data: 12 users;
// shared.posts/tags (D1) with unicode, NULLs and long text; ledger.entries
// (DO) with awkward floats, NULLs and BLOBs; four instance DOs
// workspace:ws-1..4 (ws-3 holds integers beyond 2^53 and BLOBs); and 240
// R2 objects in both buckets with unicode keys, spaces, %, #, ?, +, deep
// paths, 0- and 1-byte objects, binary content and various content types.
func (e *Emulator) SeedDemo(ctx context.Context) (DemoSummary, error) {
	var sum DemoSummary
	users := make([]User, 12)
	for i := range users {
		users[i] = User{Email: fmt.Sprintf("demo%02d@example.test", i+1), DisplayName: fmt.Sprintf("Demo User %d", i+1)}
	}
	users[0].DisplayName = "Zoë Ünicode 🚀"
	users[1].Role = "admin"
	if err := e.AddUsers(ctx, users...); err != nil {
		return sum, err
	}
	sum.Users = len(users)
	add := func(target, table string, rows ...Row) error {
		sum.Rows += len(rows)
		return e.AddRows(ctx, target, table, rows...)
	}
	var posts []Row
	for i := 1; i <= 40; i++ {
		r := Row{"id": fmt.Sprintf("post-%03d", i), "title": fmt.Sprintf("Post %d", i), "body": fmt.Sprintf("Body of post %d", i)}
		switch i % 8 {
		case 1:
			r["body"] = nil
		case 2:
			r["title"] = "日本語のタイトル " + fmt.Sprint(i)
		case 3:
			r["body"] = strings.Repeat("long text ", 500)
		case 4:
			r["body"] = "quotes \" and \\ backslash, tab\t newline\n and \u2028 separator"
		case 5:
			r["title"] = "emoji 😀🎉 " + fmt.Sprint(i)
		case 6:
			r["body"] = ""
		}
		posts = append(posts, r)
	}
	if err := add("shared", "posts", posts...); err != nil {
		return sum, err
	}
	if err := add("shared", "tags", Row{"id": "tag-red", "name": "red"}, Row{"id": "tag-green", "name": "green"}, Row{"id": "tag-blue", "name": "blue"}, Row{"id": "tag-uni", "name": "ünïcödé"}); err != nil {
		return sum, err
	}
	entries := []Row{
		{"id": "e-01", "amount": 1.25, "memo": "entry 1"},
		{"id": "e-02", "amount": 0.1, "memo": "one tenth"},
		{"id": "e-03", "amount": -3.5e-7, "memo": "tiny negative"},
		{"id": "e-04", "amount": 1e21, "memo": "huge"},
		{"id": "e-05", "amount": 123456789.123456789, "memo": "precision"},
		{"id": "e-06", "amount": nil, "memo": nil},
		{"id": "e-07", "amount": 42.0, "memo": []byte{0x00, 0x01, 0xfe, 0xff}},
		{"id": "e-08", "amount": 5e-324, "memo": "smallest denormal"},
		{"id": "e-09", "amount": 0.0, "memo": ""},
		{"id": "e-10", "amount": 2.5, "memo": []byte{}},
	}
	if err := add("ledger", "entries", entries...); err != nil {
		return sum, err
	}
	for n, inst := range DemoInstances {
		var rows []Row
		for j := 1; j <= 3+n; j++ {
			rows = append(rows, Row{"id": fmt.Sprintf("%s-task-%d", strings.TrimPrefix(inst, "workspace:"), j), "title": fmt.Sprintf("%s task %d", inst, j), "done": j%2 == 0})
		}
		if inst == "workspace:ws-3" {
			rows = append(rows,
				Row{"id": "ws-3-big-1", "title": "int beyond 2^53", "done": int64(9007199254740993)},
				Row{"id": "ws-3-big-2", "title": "max int64", "done": int64(math.MaxInt64)},
				Row{"id": "ws-3-big-3", "title": "min int64", "done": int64(math.MinInt64)},
				Row{"id": "ws-3-null", "title": "null done", "done": nil},
				Row{"id": "ws-3-blob", "title": "blob in done", "done": []byte("\x00binary\xff")},
			)
		}
		if err := add(inst, "tasks", rows...); err != nil {
			return sum, err
		}
	}
	sum.Instances = append([]string(nil), DemoInstances...)
	objs := DemoObjects()
	if err := e.AddObjects(ctx, objs...); err != nil {
		return sum, err
	}
	sum.Objects = len(objs)
	for _, o := range objs {
		if o.Data != nil {
			sum.Bytes += int64(len(o.Data))
		} else {
			sum.Bytes += o.Size
		}
	}
	return sum, nil
}

// DemoObjects returns SeedDemo's 240 R2 objects.
func DemoObjects() []Object {
	types := []string{"text/plain", "image/png", "application/json", "application/pdf", "application/octet-stream", "text/csv; charset=utf-8", "image/jpeg", ""}
	var out []Object
	for i := 1; i <= 220; i++ {
		bucket := "uploads"
		if i%2 == 0 {
			bucket = "avatars"
		}
		out = append(out, Object{Key: fmt.Sprintf("%s/files/%03d.dat", bucket, i), ContentType: types[i%len(types)], Size: int64((i*997)%20000 + 2)})
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	special := []Object{
		{Key: "uploads/日本語/ファイル.txt", ContentType: "text/plain; charset=utf-8", Data: []byte("こんにちは\n")},
		{Key: "uploads/emoji😀.bin", ContentType: "application/octet-stream", Data: []byte("emoji")},
		{Key: "uploads/é.txt", ContentType: "text/plain", Data: []byte("accent")},
		{Key: "uploads/with space.txt", ContentType: "text/plain", Data: []byte("space")},
		{Key: "uploads/100%.txt", ContentType: "text/plain", Data: []byte("percent")},
		{Key: "uploads/hash#1.txt", ContentType: "text/plain", Data: []byte("hash")},
		{Key: "uploads/what?.txt", ContentType: "text/plain", Data: []byte("question")},
		{Key: "uploads/a+b=c&d.txt", ContentType: "text/plain", Data: []byte("plus")},
		{Key: "avatars/deep/a/b/c/d/e/f/g/h.png", ContentType: "image/png", Data: []byte("\x89PNG\r\n\x1a\n")},
		{Key: "uploads/empty.bin", ContentType: "application/octet-stream", Data: []byte{}},
		{Key: "uploads/one.bin", ContentType: "application/octet-stream", Data: []byte{0x7f}},
		{Key: "uploads/bytes.bin", ContentType: "application/octet-stream", Data: all},
		{Key: "avatars/big.bin", ContentType: "application/x-big", Size: 1 << 20},
		{Key: "avatars/no-type", Data: []byte("no content type")},
		{Key: "uploads/semi;colon,comma.txt", ContentType: "text/plain", Data: []byte("punct")},
		{Key: "uploads/tilde~apos'paren(1).txt", ContentType: "text/plain", Data: []byte("more punct")},
		{Key: "uploads/UPPER/lower.TXT", ContentType: "text/plain", Data: []byte("case")},
		{Key: "uploads/upper/lower.txt", ContentType: "text/plain", Data: []byte("case 2")},
		{Key: "avatars/ünïcödé/🎉/x.json", ContentType: "application/json", Data: []byte(`{"a":1}`)},
		{Key: "avatars/tab\there.txt", ContentType: "text/plain", Data: []byte("tab")},
	}
	return append(out, special...)
}
