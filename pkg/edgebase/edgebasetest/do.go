package edgebasetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Durable Objects: one SQLite file per DatabaseDO instance, laid out like
// Miniflare's state (<state>/v3/do/<worker>-DatabaseDO/<hex-id>.sqlite) with
// the hex id workerd would give the name. What the peer keeps in the DO's
// memory (doName, initialized) is modelled too, because list-dos hex mode
// and the needsCreate gate depend on it: an instance stays "warm" for
// EvictAfter after its last request, like workerd's 10 s idle eviction.

const doClass = "DatabaseDO"

type sqlDB = *sql.DB

type doInstance struct {
	hex  string
	path string

	mu sync.Mutex // the DO input gate: one request at a time
	db *sql.DB

	warmUntil   time.Time // zero: cold (memory state below is stale)
	doName      string
	initialized bool
	locked      int // remaining restore failures (Quirks.ColdRestoreLocked)
}

type doStore struct {
	dir        string
	ids        doIDFactory
	cfg        *Config
	now        func() time.Time
	evictAfter time.Duration
	quirkLock  int

	mu      sync.Mutex
	byHex   map[string]*doInstance
	openSet map[*doInstance]uint64 // open handles by last use
	tick    uint64
	maxOpen int
}

func newDOStore(stateDir, worker string, cfg *Config, now func() time.Time, evictAfter time.Duration, quirkLock int) *doStore {
	return &doStore{
		dir:        filepath.Join(stateDir, "v3", "do", worker+"-"+doClass),
		ids:        newDOIDFactory(worker, doClass),
		cfg:        cfg,
		now:        now,
		evictAfter: evictAfter,
		quirkLock:  quirkLock,
		byHex:      map[string]*doInstance{},
		openSet:    map[*doInstance]uint64{},
		maxOpen:    64,
	}
}

func (s *doStore) instance(hex string) *doInstance {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.byHex[hex]
	if !ok {
		in = &doInstance{hex: hex, path: filepath.Join(s.dir, hex+".sqlite")}
		s.byHex[hex] = in
	}
	return in
}

// handle opens in's file if needed; the caller holds in.mu. Open handles
// are capped: the least recently used idle ones are closed.
func (s *doStore) handle(in *doInstance) (*sql.DB, error) {
	s.mu.Lock()
	s.tick++
	if in.db != nil {
		s.openSet[in] = s.tick
		s.mu.Unlock()
		return in.db, nil
	}
	s.mu.Unlock()
	db, err := openSQLite(in.path, "DELETE")
	if err != nil {
		return nil, err
	}
	in.db = db
	s.mu.Lock()
	s.openSet[in] = s.tick
	var victims []*doInstance
	if len(s.openSet) > s.maxOpen {
		type aged struct {
			in   *doInstance
			tick uint64
		}
		var all []aged
		for o, t := range s.openSet {
			if o != in {
				all = append(all, aged{o, t})
			}
		}
		sort.Slice(all, func(i, j int) bool { return all[i].tick < all[j].tick })
		for _, a := range all[:min(len(all), len(s.openSet)-s.maxOpen/2)] {
			victims = append(victims, a.in)
		}
	}
	s.mu.Unlock()
	for _, o := range victims {
		if o.mu.TryLock() {
			s.closeHandle(o)
			o.mu.Unlock()
		}
	}
	return db, nil
}

// closeHandle closes o's file; the caller holds o.mu.
func (s *doStore) closeHandle(o *doInstance) {
	if o.db == nil {
		return
	}
	_ = o.db.Close()
	o.db = nil
	s.mu.Lock()
	delete(s.openSet, o)
	s.mu.Unlock()
}

func (s *doStore) close() {
	s.mu.Lock()
	all := make([]*doInstance, 0, len(s.byHex))
	for _, in := range s.byHex {
		all = append(all, in)
	}
	s.mu.Unlock()
	for _, in := range all {
		in.mu.Lock()
		s.closeHandle(in)
		in.mu.Unlock()
	}
}

// restart makes every instance cold, as a dev-server restart does.
func (s *doStore) restart() {
	s.mu.Lock()
	all := make([]*doInstance, 0, len(s.byHex))
	for _, in := range s.byHex {
		all = append(all, in)
	}
	s.mu.Unlock()
	for _, in := range all {
		in.mu.Lock()
		in.warmUntil = time.Time{}
		in.mu.Unlock()
	}
}

func (s *doStore) warm(in *doInstance, now time.Time) bool {
	if in.warmUntil.IsZero() {
		return false
	}
	return s.evictAfter < 0 || now.Before(in.warmUntil)
}

// miniflareNameDDL is what Miniflare writes into every DO started by name.
const miniflareNameDDL = "CREATE TABLE IF NOT EXISTS __miniflare_do_name (id INTEGER PRIMARY KEY, name TEXT)"

// doCall is one Worker→DO request.
type doCall struct {
	name             string // callDO: idFromName(name) and X-DO-Name: name
	hex              string // callDOByHexId: idFromString(hex), no X-DO-Name
	createAuthorized bool   // X-DO-Create-Authorized
}

// doResult is a DO response: status plus JSON value.
type doResult struct {
	status int
	body   any
}

func (r doResult) ok() bool { return r.status >= 200 && r.status < 300 }

var errBadDOID = errors.New("edgebasetest: invalid Durable Object id")

// call runs fn inside the DO after the peer's fetch() prologue (name
// memory, lazy init and the needsCreate gate).
func (s *doStore) call(ctx context.Context, c doCall, fn func(in *doInstance, db *sql.DB) (doResult, error)) (doResult, error) {
	hex := c.hex
	if c.name != "" {
		hex = s.ids.fromName(c.name)
	} else if !s.ids.valid(hex) {
		return doResult{}, errBadDOID
	}
	in := s.instance(hex)
	in.mu.Lock()
	defer in.mu.Unlock()
	db, err := s.handle(in)
	if err != nil {
		return doResult{}, err
	}
	now := s.now()
	if !s.warm(in, now) {
		in.doName, in.initialized, in.locked = "", false, 0
		if c.name != "" {
			if _, err := db.ExecContext(ctx, miniflareNameDDL); err != nil {
				return doResult{}, err
			}
			if _, err := db.ExecContext(ctx, "INSERT OR IGNORE INTO __miniflare_do_name (id, name) VALUES (1, ?)", c.name); err != nil {
				return doResult{}, err
			}
		}
	}
	in.warmUntil = now.Add(s.evictAfter)
	if c.name != "" {
		in.doName = c.name
	}
	if !in.initialized {
		ns, id, hasID := parseDOName(in.doName)
		var block *Database
		if in.doName != "" {
			block = s.cfg.Database(ns)
		}
		if block != nil {
			if block.Dynamic() && !hasID {
				return gateError(fmt.Sprintf("instanceId is required for dynamic namespace '%s'", ns)), nil
			}
			if !block.Dynamic() && hasID {
				return gateError(fmt.Sprintf("instanceId is not allowed for single-instance namespace '%s'", ns)), nil
			}
		}
		static := in.doName == "" || strings.HasPrefix(in.doName, "_") || (block != nil && !block.Dynamic() && !hasID)
		if !static && !c.createAuthorized {
			if _, err := db.ExecContext(ctx, "SELECT 1 FROM _meta LIMIT 1"); err != nil {
				body := object{{"needsCreate", true}, {"namespace", ns}}
				if in.doName == "" {
					body[1].Value = "shared"
				}
				if hasID {
					body = append(body, kv{"id", id})
				}
				return doResult{status: 201, body: body}, nil
			}
			// The peer leaves this probe's cursor open; until it is
			// garbage-collected a restore's DROP TABLE hits SQLITE_LOCKED.
			in.locked = s.quirkLock
		}
		if err := s.initializeSchema(ctx, db, in.doName); err != nil {
			return doResult{}, err
		}
		in.initialized = true
		if in.doName != "" {
			if err := setDOMeta(ctx, db, "doName", in.doName); err != nil {
				return doResult{}, err
			}
		}
	}
	return fn(in, db)
}

func gateError(msg string) doResult {
	return doResult{status: 400, body: object{{"code", float64(400)}, {"message", msg}, {"error", "INVALID_DB_INSTANCE_ID"}}}
}

// doInternalError is the DO's answer to an unexpected exception.
func doInternalError(path string) doResult {
	return doResult{status: 500, body: object{{"code", float64(500)}, {"message", fmt.Sprintf("Database request failed while handling '%s'. Check the worker logs for the original exception.", path)}}}
}

// parseDOName splits "ns:id" at the first colon.
func parseDOName(name string) (ns, id string, hasID bool) {
	ns, id, hasID = strings.Cut(name, ":")
	return ns, id, hasID
}

func setDOMeta(ctx context.Context, db querier, key, value string) error {
	_, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO "_meta" ("key", "value") VALUES (?, ?)`, key, value)
	return err
}

func (s *doStore) tablesFor(doName string) []Table {
	ns, _, _ := parseDOName(doName)
	if d := s.cfg.Database(ns); d != nil {
		return d.Tables
	}
	return nil
}

// initializeSchema is DatabaseDO.initializeSchema: _meta, then every table
// of the DO's namespace.
func (s *doStore) initializeSchema(ctx context.Context, db querier, doName string) error {
	_, _ = db.ExecContext(ctx, "PRAGMA foreign_keys = ON")
	if _, err := db.ExecContext(ctx, metaDDL); err != nil {
		return err
	}
	tables := s.tablesFor(doName)
	for i := range tables {
		if err := initDOTable(ctx, db, &tables[i]); err != nil {
			return err
		}
	}
	return nil
}

func initDOTable(ctx context.Context, db querier, t *Table) error {
	hash := t.schemaHash()
	cur, ok, err := getMeta(ctx, db, "schemaHash:"+t.Name)
	if err != nil {
		return err
	}
	switch {
	case !ok:
		for _, q := range t.tableDDL() {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if err := setDOMeta(ctx, db, "migration_version:"+t.Name, t.migrationVersion()); err != nil {
			return err
		}
		if err := setDOMeta(ctx, db, "schemaHash:"+t.Name, hash); err != nil {
			return err
		}
	case cur != hash:
		if err := addMissingColumns(ctx, db, t); err != nil {
			return err
		}
		if err := setDOMeta(ctx, db, "schemaHash:"+t.Name, hash); err != nil {
			return err
		}
		if err := runMigrations(ctx, db, t); err != nil {
			return err
		}
	default:
		if err := runMigrations(ctx, db, t); err != nil {
			return err
		}
	}
	return ensureFTSAndIndexes(ctx, db, t)
}

func runMigrations(ctx context.Context, db querier, t *Table) error {
	if len(t.Migrations) == 0 {
		return nil
	}
	curS, _, err := getMeta(ctx, db, "migration_version:"+t.Name)
	if err != nil {
		return err
	}
	cur := 1
	fmt.Sscanf(curS, "%d", &cur)
	ms := append([]Migration(nil), t.Migrations...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for _, m := range ms {
		if m.Version <= cur {
			continue
		}
		if _, err := db.ExecContext(ctx, m.Up); err != nil {
			return fmt.Errorf("Migration v%d failed: %w", m.Version, err)
		}
		if err := setDOMeta(ctx, db, "migration_version:"+t.Name, fmt.Sprint(m.Version)); err != nil {
			return err
		}
	}
	return nil
}

const userTablesSQL = `SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name`

var ftsShadowSuffixes = []string{"_config", "_content", "_data", "_docsize", "_idx"}

// dump is GET /internal/backup/dump.
func (s *doStore) dump(ctx context.Context, in *doInstance, db querier, timestamp string) (doResult, error) {
	names, err := queryStrings(ctx, db, userTablesSQL)
	if err != nil {
		return doResult{}, err
	}
	fts, err := queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type='table' AND sql LIKE '%fts5%'`)
	if err != nil {
		return doResult{}, err
	}
	isShadow := func(n string) bool {
		for _, f := range fts {
			for _, suf := range ftsShadowSuffixes {
				if n == f+suf {
					return true
				}
			}
		}
		return false
	}
	schema, tables := object{}, object{}
	for _, n := range names {
		if isShadow(n) {
			continue
		}
		ddl, err := queryStrings(ctx, db, `SELECT sql FROM sqlite_master WHERE type='table' AND name=?`, n)
		if err != nil {
			return doResult{}, err
		}
		if len(ddl) > 0 && ddl[0] != "" {
			schema = append(schema, kv{n, ddl[0]})
		}
		rows, err := queryObjects(ctx, db, doValue, "SELECT * FROM "+esc(n))
		if err != nil {
			return doResult{}, err
		}
		tables = append(tables, kv{n, rows})
	}
	return doResult{status: 200, body: object{
		{"doName", in.doName}, {"doType", "database"}, {"schema", schema}, {"tables", tables}, {"timestamp", timestamp},
	}}, nil
}

// doBind converts a JSON.parse value to what workerd's SQL API binds:
// numbers as REAL, booleans as text, other objects via String().
func doBind(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, float64:
		return x, nil
	case bool:
		return jsToString(x), nil
	case object:
		if _, ok := x.get("__blob__"); ok {
			data, _ := x.get("data")
			s := "undefined"
			if data != nil {
				s = jsToString(data)
			} else if _, has := x.get("data"); has {
				s = "null"
			}
			b, err := atob(s)
			if err != nil {
				return nil, err
			}
			if b == nil {
				b = []byte{}
			}
			return b, nil
		}
		return jsToString(x), nil
	default:
		return jsToString(x), nil
	}
}

// dropAll drops views, triggers and tables (the restore's step 1 and the
// effect of storage.deleteAll()).
func dropAll(ctx context.Context, db querier, includeReserved bool) error {
	q := userTablesSQL
	if includeReserved {
		q = `SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	}
	tables, err := queryStrings(ctx, db, q)
	if err != nil {
		return err
	}
	views, err := queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type='view' ORDER BY name`)
	if err != nil {
		return err
	}
	triggers, err := queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type='trigger' ORDER BY name`)
	if err != nil {
		return err
	}
	for _, v := range views {
		if _, err := db.ExecContext(ctx, "DROP VIEW IF EXISTS "+esc(v)); err != nil {
			return err
		}
	}
	for _, t := range triggers {
		if _, err := db.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+esc(t)); err != nil {
			return err
		}
	}
	for _, t := range tables {
		if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+esc(t)); err != nil {
			return err
		}
	}
	return nil
}

// restore is POST /internal/backup/restore: one transaction that drops
// everything, recreates the schema from the current config and inserts the
// payload's tables that exist afterwards.
func (s *doStore) restore(ctx context.Context, in *doInstance, db *sql.DB, tables object) (doResult, error) {
	if in.locked > 0 {
		in.locked--
		return doInternalError("/internal/backup/restore"), nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return doResult{}, err
	}
	fail := func() (doResult, error) {
		_ = tx.Rollback()
		return doInternalError("/internal/backup/restore"), nil
	}
	if err := dropAll(ctx, tx, false); err != nil {
		return fail()
	}
	in.initialized = false
	if err := s.initializeSchema(ctx, tx, in.doName); err != nil {
		return fail()
	}
	in.initialized = true
	for _, t := range tables {
		rows, _ := t.Value.([]any)
		if len(rows) == 0 {
			continue
		}
		exists, err := queryStrings(ctx, tx, `SELECT name FROM sqlite_master WHERE type='table' AND name=?`, t.Key)
		if err != nil {
			return fail()
		}
		if len(exists) == 0 {
			continue
		}
		aff, err := columnAffinities(ctx, tx, t.Key)
		if err != nil {
			return fail()
		}
		for _, r := range rows {
			row, _ := r.(object)
			st, err := insertStmt(t.Key, row, aff, doBind)
			if err != nil {
				return fail()
			}
			if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
				return fail()
			}
		}
	}
	if in.doName != "" {
		if err := setDOMeta(ctx, tx, "doName", in.doName); err != nil {
			return fail()
		}
	}
	if err := tx.Commit(); err != nil {
		return fail()
	}
	return doResult{status: 200, body: object{{"ok", true}, {"restored", float64(len(tables))}}}, nil
}

// dropEverything is storage.deleteAll(): no table survives, not even
// Miniflare's __miniflare_do_name.
func (s *doStore) dropEverything(ctx context.Context, db *sql.DB) error {
	return dropAll(ctx, db, true)
}

// DOInstance describes one DatabaseDO instance found in the state dir.
type DOInstance struct {
	HexID string // 64-hex id, the file name
	Name  string // from __miniflare_do_name, else _meta doName, else ""
	Class string // "DatabaseDO"
	// HasData reports whether the instance stores anything besides
	// Miniflare's own name table (the Cloudflare API's hasStoredData).
	HasData bool
	Path    string
}

// list scans the DO directory like list-do-names.sh does.
func (s *doStore) list(ctx context.Context) ([]DOInstance, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("edgebasetest: list DOs: %w", err)
	}
	var out []DOInstance
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".sqlite") || n == "metadata.sqlite" {
			continue
		}
		hex := strings.TrimSuffix(n, ".sqlite")
		in := s.instance(hex)
		in.mu.Lock()
		info, err := s.describe(ctx, in)
		in.mu.Unlock()
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

func (s *doStore) describe(ctx context.Context, in *doInstance) (DOInstance, error) {
	info := DOInstance{HexID: in.hex, Class: doClass, Path: in.path}
	db, err := s.handle(in)
	if err != nil {
		return info, err
	}
	if v, err := queryStrings(ctx, db, "SELECT name FROM __miniflare_do_name LIMIT 1"); err == nil && len(v) > 0 {
		info.Name = v[0]
	}
	if info.Name == "" {
		if v, ok, err := getMeta(ctx, db, "doName"); err == nil && ok {
			info.Name = v
		}
	}
	tables, err := queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type='table' AND name <> '__miniflare_do_name' AND name NOT LIKE '_cf_%'`)
	if err != nil {
		return info, err
	}
	info.HasData = len(tables) > 0
	return info, nil
}
