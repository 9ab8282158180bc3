package edgebasetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// authD1Schema is the peer's AUTH_D1_SCHEMA (lib/auth-d1.ts), statement for
// statement, so sqlite_master holds the same DDL text.
const authD1Schema = `
CREATE TABLE IF NOT EXISTS _email_index (
  email TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  shardId INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  createdAt TEXT NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS _oauth_index (
  provider TEXT NOT NULL,
  providerUserId TEXT NOT NULL,
  userId TEXT NOT NULL,
  shardId INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  createdAt TEXT NOT NULL DEFAULT (datetime('now')),
  PRIMARY KEY (provider, providerUserId)
);

CREATE TABLE IF NOT EXISTS _anon_index (
  userId TEXT PRIMARY KEY,
  shardId INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  createdAt TEXT NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS _admins (
  id TEXT PRIMARY KEY,
  email TEXT UNIQUE NOT NULL,
  passwordHash TEXT NOT NULL,
  createdAt TEXT NOT NULL,
  updatedAt TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS _admin_sessions (
  id TEXT PRIMARY KEY,
  adminId TEXT NOT NULL,
  refreshToken TEXT NOT NULL,
  expiresAt TEXT NOT NULL,
  createdAt TEXT NOT NULL,
  FOREIGN KEY (adminId) REFERENCES _admins(id)
);

CREATE TABLE IF NOT EXISTS _push_devices (
  userId TEXT NOT NULL,
  deviceId TEXT NOT NULL,
  token TEXT NOT NULL,
  platform TEXT NOT NULL,
  updatedAt TEXT NOT NULL,
  deviceInfo TEXT,
  metadata TEXT,
  PRIMARY KEY (userId, deviceId)
);
CREATE INDEX IF NOT EXISTS idx_push_devices_userId ON _push_devices(userId);

CREATE TABLE IF NOT EXISTS _phone_index (
  phone TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  shardId INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  createdAt TEXT NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS _passkey_index (
  credentialId TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  shardId INTEGER NOT NULL,
  createdAt TEXT NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS _users_public (
  id TEXT PRIMARY KEY,
  email TEXT,
  displayName TEXT,
  avatarUrl TEXT,
  role TEXT DEFAULT 'user',
  isAnonymous INTEGER DEFAULT 0,
  createdAt TEXT NOT NULL,
  updatedAt TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_users_public_email ON _users_public(email);

CREATE TABLE IF NOT EXISTS _meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS _users (
  id TEXT PRIMARY KEY,
  email TEXT,
  passwordHash TEXT,
  displayName TEXT,
  avatarUrl TEXT,
  emailVisibility TEXT DEFAULT 'private',
  role TEXT DEFAULT 'user',
  verified INTEGER DEFAULT 0,
  isAnonymous INTEGER DEFAULT 0,
  customClaims TEXT,
  phone TEXT,
  phoneVerified INTEGER DEFAULT 0,
  metadata TEXT,
  appMetadata TEXT,
  disabled INTEGER DEFAULT 0,
  status TEXT DEFAULT 'active',
  locale TEXT DEFAULT 'en',
  lastSignedInAt TEXT,
  createdAt TEXT NOT NULL,
  updatedAt TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_users_email ON _users(email) WHERE email IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_users_phone ON _users(phone) WHERE phone IS NOT NULL;

CREATE TABLE IF NOT EXISTS _sessions (
  id TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  refreshToken TEXT NOT NULL,
  previousRefreshToken TEXT,
  rotatedAt TEXT,
  expiresAt TEXT NOT NULL,
  createdAt TEXT NOT NULL,
  metadata TEXT,
  FOREIGN KEY (userId) REFERENCES _users(id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_sessions_refreshToken ON _sessions(refreshToken);
CREATE INDEX IF NOT EXISTS idx_sessions_userId ON _sessions(userId);
CREATE INDEX IF NOT EXISTS idx_sessions_expiresAt ON _sessions(expiresAt);

CREATE TABLE IF NOT EXISTS _oauth_accounts (
  id TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  provider TEXT NOT NULL,
  providerUserId TEXT NOT NULL,
  createdAt TEXT NOT NULL,
  FOREIGN KEY (userId) REFERENCES _users(id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_oauth_provider_user ON _oauth_accounts(provider, providerUserId);
CREATE INDEX IF NOT EXISTS idx_oauth_userId ON _oauth_accounts(userId);

CREATE TABLE IF NOT EXISTS _email_tokens (
  token TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  type TEXT NOT NULL,
  expiresAt TEXT NOT NULL,
  createdAt TEXT NOT NULL,
  FOREIGN KEY (userId) REFERENCES _users(id)
);
CREATE INDEX IF NOT EXISTS idx_email_tokens_userId ON _email_tokens(userId);
CREATE INDEX IF NOT EXISTS idx_email_tokens_expiresAt ON _email_tokens(expiresAt);

CREATE TABLE IF NOT EXISTS _mfa_factors (
  id TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  type TEXT NOT NULL DEFAULT 'totp',
  secret TEXT NOT NULL,
  verified INTEGER DEFAULT 0,
  createdAt TEXT NOT NULL,
  FOREIGN KEY (userId) REFERENCES _users(id)
);
CREATE INDEX IF NOT EXISTS idx_mfa_factors_userId ON _mfa_factors(userId);

CREATE TABLE IF NOT EXISTS _mfa_recovery_codes (
  id TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  codeHash TEXT NOT NULL,
  used INTEGER DEFAULT 0,
  createdAt TEXT NOT NULL,
  FOREIGN KEY (userId) REFERENCES _users(id)
);
CREATE INDEX IF NOT EXISTS idx_mfa_recovery_userId ON _mfa_recovery_codes(userId);

CREATE TABLE IF NOT EXISTS _webauthn_credentials (
  id TEXT PRIMARY KEY,
  userId TEXT NOT NULL,
  credentialId TEXT NOT NULL,
  credentialPublicKey TEXT NOT NULL,
  counter INTEGER DEFAULT 0,
  transports TEXT,
  createdAt TEXT NOT NULL,
  FOREIGN KEY (userId) REFERENCES _users(id)
);
CREATE INDEX IF NOT EXISTS idx_webauthn_userId ON _webauthn_credentials(userId);
CREATE UNIQUE INDEX IF NOT EXISTS idx_webauthn_credentialId ON _webauthn_credentials(credentialId);
`

const metaDDL = "CREATE TABLE IF NOT EXISTS _meta (\n  key TEXT PRIMARY KEY,\n  value TEXT NOT NULL\n);"

// AuthTables are the 16 AUTH_DB tables dump-d1 returns, in its order.
var AuthTables = []string{
	"_email_index", "_oauth_index", "_anon_index", "_phone_index", "_passkey_index",
	"_admins", "_admin_sessions", "_users_public", "_meta",
	"_users", "_sessions", "_oauth_accounts", "_email_tokens", "_mfa_factors", "_mfa_recovery_codes", "_webauthn_credentials",
}

var authWipeOrder = []string{
	"_admin_sessions", "_webauthn_credentials", "_mfa_recovery_codes", "_mfa_factors", "_email_tokens",
	"_oauth_accounts", "_sessions", "_anon_index", "_oauth_index", "_email_index", "_phone_index",
	"_passkey_index", "_users_public", "_meta", "_admins", "_users",
}

var authInsertOrder = []string{
	"_users", "_admins", "_meta", "_users_public", "_email_index", "_oauth_index", "_anon_index",
	"_phone_index", "_passkey_index", "_sessions", "_oauth_accounts", "_email_tokens", "_mfa_factors",
	"_mfa_recovery_codes", "_webauthn_credentials", "_admin_sessions",
}

func splitStatements(s string) []string {
	var out []string
	for _, st := range strings.Split(s, ";\n") {
		st = strings.TrimSpace(st)
		st = strings.TrimSuffix(st, ";")
		if st != "" {
			out = append(out, st)
		}
	}
	return out
}

// d1Store holds the local D1 databases. The peer's dev server gives every
// D1 binding the database id "local", so AUTH_DB, CONTROL_DB and every
// DB_D1_<NS> are one SQLite file (Appendix A.2); Options.SeparateD1 gives
// each binding its own file, as on Cloudflare.
type d1Store struct {
	dir      string
	worker   string
	separate bool

	mu  sync.Mutex // serializes D1 work, as the single local D1 object does
	dbs map[string]*sql.DB

	// Per-process schema caches of the Worker (reset by Restart).
	authInit    bool
	controlInit bool
	nsInit      map[string]bool
}

func newD1Store(stateDir, worker string, separate bool) *d1Store {
	return &d1Store{
		dir:      filepath.Join(stateDir, "v3", "d1", "miniflare-D1DatabaseObject"),
		worker:   worker,
		separate: separate,
		dbs:      map[string]*sql.DB{},
		nsInit:   map[string]bool{},
	}
}

var d1IDs = newDOIDFactory("miniflare", "D1DatabaseObject")

// databaseName maps a binding to the wrangler database_name.
func (s *d1Store) databaseID(binding string) string {
	if !s.separate {
		return "local"
	}
	switch binding {
	case "AUTH_DB":
		return s.worker + "-auth"
	case "CONTROL_DB":
		return s.worker + "-control"
	}
	return s.worker + "-db-" + strings.ToLower(strings.TrimPrefix(binding, "DB_D1_"))
}

// db returns the database behind binding; the caller holds s.mu.
func (s *d1Store) db(binding string) (*sql.DB, error) {
	id := s.databaseID(binding)
	if db, ok := s.dbs[id]; ok {
		return db, nil
	}
	db, err := openSQLite(filepath.Join(s.dir, d1IDs.fromName(id)+".sqlite"), "WAL")
	if err != nil {
		return nil, err
	}
	s.dbs[id] = db
	return db, nil
}

func (s *d1Store) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, db := range s.dbs {
		errs = append(errs, db.Close())
		delete(s.dbs, id)
	}
	return errors.Join(errs...)
}

func (s *d1Store) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authInit, s.controlInit = false, false
	s.nsInit = map[string]bool{}
}

// batch runs statements in one transaction, like D1's db.batch.
func d1Batch(ctx context.Context, db *sql.DB, stmts []stmt) error {
	if len(stmts) == 0 {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

type stmt struct {
	sql  string
	args []any
}

func (s *d1Store) ensureAuth(ctx context.Context) (*sql.DB, error) {
	db, err := s.db("AUTH_DB")
	if err != nil {
		return nil, err
	}
	if s.authInit {
		return db, nil
	}
	var stmts []stmt
	for _, q := range splitStatements(authD1Schema) {
		stmts = append(stmts, stmt{sql: q})
	}
	if err := d1Batch(ctx, db, stmts); err != nil {
		return nil, err
	}
	_, _ = db.ExecContext(ctx, "ALTER TABLE _users ADD COLUMN lastSignedInAt TEXT") // present already: ignored like the peer
	s.authInit = true
	return db, nil
}

func (s *d1Store) ensureControl(ctx context.Context) (*sql.DB, error) {
	db, err := s.db("CONTROL_DB")
	if err != nil {
		return nil, err
	}
	if s.controlInit {
		return db, nil
	}
	if err := d1Batch(ctx, db, []stmt{{sql: strings.TrimSuffix(metaDDL, ";")}}); err != nil {
		return nil, err
	}
	s.controlInit = true
	return db, nil
}

// d1BindingName is the binding the peer uses for a D1 namespace.
func d1BindingName(ns string) string { return "DB_D1_" + strings.ToUpper(ns) }

// hasBinding reports whether the dev server provisions DB_D1_<NS>: only
// namespaces that route to D1 get one.
func hasD1Binding(cfg *Config, ns string) bool {
	d := cfg.Database(ns)
	return d != nil && d.RoutesToD1()
}

// ensureNamespace is ensureD1Schema (lib/d1-schema-init.ts), cached per
// namespace for the life of the Worker process.
func (s *d1Store) ensureNamespace(ctx context.Context, d *Database) (*sql.DB, error) {
	db, err := s.db(d1BindingName(d.Name))
	if err != nil {
		return nil, err
	}
	if s.nsInit[d.Name] {
		return db, nil
	}
	if _, err := db.ExecContext(ctx, metaDDL); err != nil {
		return nil, err
	}
	for i := range d.Tables {
		if err := initD1Table(ctx, db, &d.Tables[i]); err != nil {
			return nil, err
		}
	}
	s.nsInit[d.Name] = true
	return db, nil
}

func getMeta(ctx context.Context, db querier, key string) (string, bool, error) {
	vals, err := queryStrings(ctx, db, `SELECT "value" FROM "_meta" WHERE "key" = ?`, key)
	if err != nil {
		return "", false, err
	}
	if len(vals) == 0 {
		return "", false, nil
	}
	return vals[0], true, nil
}

func initD1Table(ctx context.Context, db *sql.DB, t *Table) error {
	hash := t.schemaHash()
	stored, ok, err := getMeta(ctx, db, "schemaHash:"+t.Name)
	if err != nil {
		return err
	}
	switch {
	case ok && stored == hash:
		return ensureFTSAndIndexes(ctx, db, t)
	case !ok:
		var stmts []stmt
		for _, q := range t.tableDDL() {
			stmts = append(stmts, stmt{sql: q})
		}
		if err := d1Batch(ctx, db, stmts); err != nil {
			return err
		}
		if len(t.Migrations) > 0 {
			if err := setD1Meta(ctx, db, "migration_version:"+t.Name, t.migrationVersion()); err != nil {
				return err
			}
		}
	default:
		if err := addMissingColumns(ctx, db, t); err != nil {
			return err
		}
		if err := ensureFTSAndIndexes(ctx, db, t); err != nil {
			return err
		}
	}
	return setD1Meta(ctx, db, "schemaHash:"+t.Name, hash)
}

func setD1Meta(ctx context.Context, db querier, key, value string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO "_meta" ("key", "value") VALUES (?, ?) ON CONFLICT ("key") DO UPDATE SET "value" = ?`, key, value, value)
	return err
}

func addMissingColumns(ctx context.Context, db querier, t *Table) error {
	have, err := queryStrings(ctx, db, `SELECT name FROM pragma_table_info(?)`, t.Name)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, c := range have {
		exists[c] = true
	}
	for _, f := range t.effectiveSchema() {
		if exists[f.Name] {
			continue
		}
		f.Unique, f.PrimaryKey = false, false
		f.Required = f.Required && f.Default != nil
		if _, err := db.ExecContext(ctx, "ALTER TABLE "+esc(t.Name)+" ADD COLUMN "+columnDef(f)); err != nil {
			return err
		}
	}
	return nil
}

func ensureFTSAndIndexes(ctx context.Context, db querier, t *Table) error {
	for _, q := range t.indexDDL() {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if len(t.FTS) == 0 {
		return nil
	}
	for _, q := range t.ftsDDL() {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// d1Bind converts a JSON.parse value to what D1 binds: numbers and
// booleans as REAL, arrays as BLOB bytes; objects are rejected.
func d1Bind(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, float64:
		return x, nil
	case bool:
		if x {
			return float64(1), nil
		}
		return float64(0), nil
	case []any:
		b := make([]byte, len(x))
		for i, e := range x {
			f, _ := e.(float64)
			b[i] = byte(int64(f))
		}
		return b, nil
	default:
		return nil, fmt.Errorf("D1_TYPE_ERROR: Type 'object' not supported for value '[object Object]'")
	}
}

func insertStmt(table string, row object, aff map[string]byte, bind func(any) (any, error)) (stmt, error) {
	cols := make([]string, len(row))
	ph := make([]string, len(row))
	args := make([]any, len(row))
	for i, c := range row {
		cols[i] = esc(c.Key)
		ph[i] = "?"
		v, err := bind(c.Value)
		if err != nil {
			return stmt{}, err
		}
		if f, ok := v.(float64); ok && aff[c.Key] == affText {
			v = sqliteRealText(f)
		}
		args[i] = v
	}
	return stmt{sql: "INSERT OR REPLACE INTO " + esc(table) + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")", args: args}, nil
}

// Column affinities (https://sqlite.org/datatype3.html#determination_of_column_affinity).
const (
	affBlob byte = iota
	affText
	affNumeric
	affInteger
	affReal
)

func affinityOf(decl string) byte {
	d := strings.ToUpper(decl)
	switch {
	case strings.Contains(d, "INT"):
		return affInteger
	case strings.Contains(d, "CHAR"), strings.Contains(d, "CLOB"), strings.Contains(d, "TEXT"):
		return affText
	case d == "", strings.Contains(d, "BLOB"):
		return affBlob
	case strings.Contains(d, "REAL"), strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"):
		return affReal
	}
	return affNumeric
}

// columnAffinities maps every column of table to its affinity.
func columnAffinities(ctx context.Context, db querier, table string) (map[string]byte, error) {
	rows, err := db.QueryContext(ctx, "SELECT name, type FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]byte{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		out[name] = affinityOf(typ)
	}
	return out, rows.Err()
}

// sqliteRealText is how the SQLite inside workerd and Miniflare's D1
// turns a REAL into TEXT when a TEXT column receives a number: printf
// "%!.15g" (5 -> "5.0", 2^53 -> "9.00719925474099e+15", 1e21 ->
// "1.0e+21"). Newer SQLite builds, including the one linked here, print
// more digits, so the emulator converts before binding.
func sqliteRealText(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case f == 0:
		return "0.0"
	}
	s := strconv.FormatFloat(f, 'e', 14, 64) // d.dddddddddddddde±XX
	mant, exp, _ := strings.Cut(s, "e")
	e, _ := strconv.Atoi(exp)
	if e < -4 || e >= 15 {
		mant = strings.TrimRight(mant, "0")
		if strings.HasSuffix(mant, ".") {
			mant += "0"
		}
		sign := "+"
		if e < 0 {
			sign, e = "-", -e
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, e)
	}
	fixed := strconv.FormatFloat(f, 'f', 14-e, 64)
	if strings.Contains(fixed, ".") {
		fixed = strings.TrimRight(fixed, "0")
		if strings.HasSuffix(fixed, ".") {
			fixed += "0"
		}
	} else {
		fixed += ".0"
	}
	return fixed
}

// insertBatches inserts rows in batches of 100 statements, each batch its
// own transaction, as the peer's D1 restore does.
func insertBatches(ctx context.Context, db *sql.DB, table string, rows []object) error {
	const batch = 100
	if len(rows) == 0 {
		return nil
	}
	aff, err := columnAffinities(ctx, db, table)
	if err != nil {
		return err
	}
	for i := 0; i < len(rows); i += batch {
		end := min(i+batch, len(rows))
		stmts := make([]stmt, 0, end-i)
		for _, r := range rows[i:end] {
			st, err := insertStmt(table, r, aff, d1Bind)
			if err != nil {
				return err
			}
			stmts = append(stmts, st)
		}
		if err := d1Batch(ctx, db, stmts); err != nil {
			return err
		}
	}
	return nil
}
