package edgebasetest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Config mirrors the EdgeBase config that GET /admin/api/backup/config
// returns. Slices keep the order of the source config, which the peer uses
// for list-dos, export lookup and tableOrder.
type Config struct {
	Databases   []Database
	Auth        json.RawMessage // e.g. {"emailAuth":true}; nil = absent
	Buckets     []string        // storage.buckets (every bucket allows read/write/delete)
	ServiceKeys []ServiceKey
	// Extra holds further top-level members (rateLimiting, cors, ...) that
	// are echoed verbatim after the known ones.
	Extra []RawMember
	// Functions and Undefined name members of the source config that JSON
	// cannot carry, by dotted path (e.g. "auth.hooks.beforeSignUp");
	// missing parent objects are created. The 0.2.8 snapshot drops them
	// as JSON.stringify does; the 0.4+ snapshot shows RedactedValue in
	// their place. Access functions of DB blocks (Database.Access) and
	// buckets are modelled already.
	Functions []string
	Undefined []string
}

// RawMember is one verbatim top-level config member.
type RawMember struct {
	Key   string
	Value json.RawMessage
}

// Database is one DB block.
type Database struct {
	Name     string
	Provider string // "" (D1 for single-instance blocks), "d1", "do", "postgres", "neon"
	Instance bool   // instance: true
	// Access records that the block has access functions (canCreate/access).
	// The peer serializes them as "access": {} and treats the block as
	// dynamic.
	Access bool
	Tables []Table
}

// Dynamic reports whether the block is multi-tenant (one DO per id).
func (d *Database) Dynamic() bool { return d.Instance || d.Access }

// RoutesToD1 reports whether the peer stores the block in D1.
func (d *Database) RoutesToD1() bool {
	switch d.Provider {
	case "d1":
		return true
	case "do", "postgres", "neon":
		return false
	}
	return !d.Dynamic()
}

// Table is one table of a DB block.
type Table struct {
	Name       string
	Schema     []Field // nil = schemaless (auto fields only)
	Indexes    []Index
	FTS        []string
	Migrations []Migration
}

// Field is one schema field. Disabled writes `name: false`.
type Field struct {
	Name       string
	Type       string // string, text, number, boolean, datetime, json
	Required   bool
	Unique     bool
	PrimaryKey bool
	Default    json.RawMessage
	Examples   json.RawMessage // documentation only; redacted in 0.4.2+ snapshots
	References string
	Check      string
	Disabled   bool
}

// Index is one schema index.
type Index struct {
	Fields []string
	Unique bool
}

// Migration is one table migration (SQLite `up`).
type Migration struct {
	Version int
	Up      string
}

// ServiceKey is one serviceKeys.keys entry.
type ServiceKey struct {
	Kid          string
	Tier         string   // root | scoped
	Scopes       []string // e.g. ["*"], ["backup:*:*:exec"]
	SecretSource string   // dashboard | inline
	SecretRef    string   // env name for dashboard secrets (SERVICE_KEY = Options.ServiceKey)
	InlineSecret string
	Enabled      *bool
	ExpiresAt    string   // constraints.expiresAt (ISO)
	Env          []string // constraints.env
	IPCidr       []string // constraints.ipCidr
}

// Database returns the block called name.
func (c *Config) Database(name string) *Database {
	for i := range c.Databases {
		if c.Databases[i].Name == name {
			return &c.Databases[i]
		}
	}
	return nil
}

// Table returns the table called name.
func (d *Database) Table(name string) *Table {
	for i := range d.Tables {
		if d.Tables[i].Name == name {
			return &d.Tables[i]
		}
	}
	return nil
}

// HasBucket reports whether storage.buckets has name.
func (c *Config) HasBucket(name string) bool {
	for _, b := range c.Buckets {
		if b == name {
			return true
		}
	}
	return false
}

var rootKey = ServiceKey{Kid: "root", Tier: "root", Scopes: []string{"*"}, SecretSource: "dashboard", SecretRef: "SERVICE_KEY"}

// peerExtra is what the peer's scaffolded config adds (raised rate limits, CORS).
func peerExtra() []RawMember {
	var rl strings.Builder
	rl.WriteString("{")
	for i, name := range []string{"global", "db", "storage", "functions", "auth", "authSignin", "authSignup", "events"} {
		if i > 0 {
			rl.WriteString(",")
		}
		fmt.Fprintf(&rl, `"%s":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"%d"}}`, name, 1001+i)
	}
	rl.WriteString("}")
	return []RawMember{
		{"rateLimiting", json.RawMessage(rl.String())},
		{"cors", json.RawMessage(`{"origin":"*"}`)},
	}
}

func staticBlocks() []Database {
	return []Database{
		{Name: "shared", Tables: []Table{
			{Name: "posts", Schema: []Field{{Name: "title", Type: "string", Required: true}, {Name: "body", Type: "text"}}},
			{Name: "tags", Schema: []Field{{Name: "name", Type: "string", Required: true}}},
		}},
		{Name: "ledger", Provider: "do", Tables: []Table{
			{Name: "entries", Schema: []Field{{Name: "amount", Type: "number"}, {Name: "memo", Type: "string"}}},
		}},
	}
}

func workspaceBlock() Database {
	return Database{Name: "workspace", Instance: true, Access: true, Tables: []Table{
		{Name: "tasks", Schema: []Field{{Name: "title", Type: "string", Required: true}, {Name: "done", Type: "boolean"}}},
	}}
}

func baseConfig(dbs []Database) Config {
	return Config{
		Databases:   dbs,
		Auth:        json.RawMessage(`{"emailAuth":true}`),
		Buckets:     []string{"uploads", "avatars"},
		ServiceKeys: []ServiceKey{rootKey},
		Extra:       peerExtra(),
	}
}

// DefaultConfig is the peer's default profile (install.sh edgebase.config.ts):
// shared (D1: posts, tags), ledger (provider do: entries), workspace
// (instance: true: tasks), buckets uploads and avatars, one root key.
func DefaultConfig() Config {
	return baseConfig(append(staticBlocks(), workspaceBlock()))
}

// StaticConfig is the peer's static profile: DefaultConfig without workspace.
func StaticConfig() Config {
	return baseConfig(staticBlocks())
}

// BenchConfig mirrors bench-config.sh n: the static profile plus n
// single-instance DO blocks doNNN, each with table itemsNNN.
func BenchConfig(n int) Config {
	dbs := staticBlocks()
	for i := 1; i <= n; i++ {
		s := fmt.Sprintf("%03d", i)
		dbs = append(dbs, Database{Name: "do" + s, Provider: "do", Tables: []Table{
			{Name: "items" + s, Schema: []Field{{Name: "title", Type: "string", Required: true}, {Name: "n", Type: "number"}}},
		}})
	}
	return baseConfig(dbs)
}

// Scoped service keys of ContractConfig.
const (
	ContractBackupKey  = "jb_backup_contract-secret-1" // scope backup:*:*:exec
	ContractReaderKey  = "jb_reader_contract-secret-2" // scope db:*:*:* (no backup access)
	ContractExpiredKey = "jb_old_contract-secret-3"    // scope *, expired
)

// ContractConfig is DefaultConfig plus a DO block "search" whose table notes
// has an FTS5 index (so dumps contain a virtual table <t>_fts) and three
// scoped service keys (ContractBackupKey, ContractReaderKey,
// ContractExpiredKey).
func ContractConfig() Config {
	c := DefaultConfig()
	c.Databases = append(c.Databases, Database{Name: "search", Provider: "do", Tables: []Table{
		{Name: "notes", Schema: []Field{{Name: "title", Type: "string"}, {Name: "body", Type: "text"}}, FTS: []string{"title", "body"}},
	}})
	c.ServiceKeys = append(c.ServiceKeys,
		ServiceKey{Kid: "backup", Tier: "scoped", Scopes: []string{"backup:*:*:exec"}, SecretSource: "inline", InlineSecret: ContractBackupKey},
		ServiceKey{Kid: "reader", Tier: "scoped", Scopes: []string{"db:*:*:*"}, SecretSource: "inline", InlineSecret: ContractReaderKey},
		ServiceKey{Kid: "old", Tier: "scoped", Scopes: []string{"*"}, SecretSource: "inline", InlineSecret: ContractExpiredKey, ExpiresAt: "2020-01-01T00:00:00.000Z"},
	)
	return c
}

// fieldJSON writes a field definition in source order.
func (f *Field) object() object {
	o := object{{"type", f.Type}}
	if f.Required {
		o = append(o, kv{"required", true})
	}
	if f.Unique {
		o = append(o, kv{"unique", true})
	}
	if f.PrimaryKey {
		o = append(o, kv{"primaryKey", true})
	}
	if f.Default != nil {
		o = append(o, kv{"default", rawJSON(f.Default)})
	}
	if f.Examples != nil {
		o = append(o, kv{"examples", rawJSON(f.Examples)})
	}
	if f.References != "" {
		o = append(o, kv{"references", f.References})
	}
	if f.Check != "" {
		o = append(o, kv{"check", f.Check})
	}
	return o
}

func (t *Table) object() object {
	var o object
	if t.Schema != nil {
		var s object
		for i := range t.Schema {
			f := &t.Schema[i]
			if f.Disabled {
				s = append(s, kv{f.Name, false})
				continue
			}
			s = append(s, kv{f.Name, f.object()})
		}
		if s == nil {
			s = object{}
		}
		o = append(o, kv{"schema", s})
	}
	if len(t.Indexes) > 0 {
		var arr []any
		for _, ix := range t.Indexes {
			io := object{{"fields", ix.Fields}}
			if ix.Unique {
				io = append(io, kv{"unique", true})
			}
			arr = append(arr, io)
		}
		o = append(o, kv{"indexes", arr})
	}
	if len(t.FTS) > 0 {
		o = append(o, kv{"fts", t.FTS})
	}
	if len(t.Migrations) > 0 {
		var arr []any
		for _, m := range t.Migrations {
			arr = append(arr, object{{"version", float64(m.Version)}, {"up", m.Up}})
		}
		o = append(o, kv{"migrations", arr})
	}
	if o == nil {
		o = object{}
	}
	return o
}

func (c *Config) object() object {
	var dbs object
	for i := range c.Databases {
		d := &c.Databases[i]
		var o object
		if d.Provider != "" {
			o = append(o, kv{"provider", d.Provider})
		}
		if d.Instance {
			o = append(o, kv{"instance", true})
		}
		if d.Access {
			// The peer's access: { canCreate: () => true, access: () => true }.
			o = append(o, kv{"access", object{{"canCreate", jsFunction{}}, {"access", jsFunction{}}}})
		}
		var tabs object
		for j := range d.Tables {
			tabs = append(tabs, kv{d.Tables[j].Name, d.Tables[j].object()})
		}
		if tabs == nil {
			tabs = object{}
		}
		o = append(o, kv{"tables", tabs})
		dbs = append(dbs, kv{d.Name, o})
	}
	if dbs == nil {
		dbs = object{}
	}
	out := object{{"databases", dbs}}
	if c.Auth != nil {
		out = append(out, kv{"auth", rawJSON(c.Auth)})
	}
	if c.Buckets != nil {
		var b object
		for _, name := range c.Buckets {
			b = append(b, kv{name, object{{"access", object{{"read", jsFunction{}}, {"write", jsFunction{}}, {"delete", jsFunction{}}}}}})
		}
		if b == nil {
			b = object{}
		}
		out = append(out, kv{"storage", object{{"buckets", b}}})
	}
	if c.ServiceKeys != nil {
		var keys []any
		for _, k := range c.ServiceKeys {
			o := object{{"kid", k.Kid}, {"tier", k.Tier}, {"scopes", k.Scopes}, {"secretSource", k.SecretSource}}
			if k.SecretRef != "" {
				o = append(o, kv{"secretRef", k.SecretRef})
			}
			if k.InlineSecret != "" {
				o = append(o, kv{"inlineSecret", k.InlineSecret})
			}
			if k.Enabled != nil {
				o = append(o, kv{"enabled", *k.Enabled})
			}
			var cons object
			if k.ExpiresAt != "" {
				cons = append(cons, kv{"expiresAt", k.ExpiresAt})
			}
			if k.Env != nil {
				cons = append(cons, kv{"env", k.Env})
			}
			if k.IPCidr != nil {
				cons = append(cons, kv{"ipCidr", k.IPCidr})
			}
			if cons != nil {
				o = append(o, kv{"constraints", cons})
			}
			keys = append(keys, o)
		}
		if keys == nil {
			keys = []any{}
		}
		out = append(out, kv{"serviceKeys", object{{"keys", keys}}})
	}
	for _, m := range c.Extra {
		out = append(out, kv{m.Key, rawJSON(m.Value)})
	}
	for _, p := range c.Functions {
		out = setPath(out, strings.Split(p, "."), jsFunction{})
	}
	for _, p := range c.Undefined {
		out = setPath(out, strings.Split(p, "."), jsUndefined{})
	}
	return out
}

// setPath sets o[path...] = v, creating (or parsing raw JSON into)
// objects on the way; a non-object on the way is replaced.
func setPath(o object, path []string, v any) object {
	if len(path) == 0 {
		return o
	}
	for i := range o {
		if o[i].Key != path[0] {
			continue
		}
		if len(path) == 1 {
			o[i].Value = v
			return o
		}
		o[i].Value = setPath(asObject(o[i].Value), path[1:], v)
		return o
	}
	if len(path) == 1 {
		return append(o, kv{path[0], v})
	}
	return append(o, kv{path[0], setPath(object{}, path[1:], v)})
}

func asObject(v any) object {
	if r, ok := v.(rawJSON); ok {
		if pv, err := parseJS(r); err == nil {
			v = pv
		}
	}
	o, _ := v.(object)
	return o
}

// MarshalJSON writes the config exactly as the peer serializes it.
func (c Config) MarshalJSON() ([]byte, error) { return marshalJS(c.object()), nil }

// ParseConfig reads a config in the JSON form GET /config returns (for
// example one fetched from a real server). Blocks with an "access" member
// are taken as having access functions.
func ParseConfig(data []byte) (Config, error) {
	v, err := parseJS(data)
	if err != nil {
		return Config{}, fmt.Errorf("edgebasetest: parse config: %w", err)
	}
	root, ok := v.(object)
	if !ok {
		return Config{}, fmt.Errorf("edgebasetest: parse config: not an object")
	}
	var c Config
	for _, m := range root {
		switch m.Key {
		case "databases":
			dbs, _ := m.Value.(object)
			for _, d := range dbs {
				db, err := parseDatabase(d.Key, d.Value)
				if err != nil {
					return Config{}, err
				}
				c.Databases = append(c.Databases, db)
			}
		case "auth":
			c.Auth = json.RawMessage(marshalJS(m.Value))
		case "storage":
			st, _ := m.Value.(object)
			b, _ := st.get("buckets")
			bo, _ := b.(object)
			c.Buckets = []string{}
			for _, e := range bo {
				c.Buckets = append(c.Buckets, e.Key)
			}
		case "serviceKeys":
			sk, _ := m.Value.(object)
			keys, _ := sk.get("keys")
			arr, _ := keys.([]any)
			c.ServiceKeys = []ServiceKey{}
			for _, k := range arr {
				ko, _ := k.(object)
				c.ServiceKeys = append(c.ServiceKeys, parseServiceKey(ko))
			}
		default:
			c.Extra = append(c.Extra, RawMember{m.Key, json.RawMessage(marshalJS(m.Value))})
		}
	}
	return c, nil
}

func str(v any) string { s, _ := v.(string); return s }

func strs(v any) []string {
	arr, ok := v.([]any)
	if !ok {
		return nil
	}
	out := []string{}
	for _, e := range arr {
		out = append(out, str(e))
	}
	return out
}

func parseServiceKey(o object) ServiceKey {
	var k ServiceKey
	for _, m := range o {
		switch m.Key {
		case "kid":
			k.Kid = str(m.Value)
		case "tier":
			k.Tier = str(m.Value)
		case "scopes":
			k.Scopes = strs(m.Value)
		case "secretSource":
			k.SecretSource = str(m.Value)
		case "secretRef":
			k.SecretRef = str(m.Value)
		case "inlineSecret":
			k.InlineSecret = str(m.Value)
		case "enabled":
			b, _ := m.Value.(bool)
			k.Enabled = &b
		case "constraints":
			co, _ := m.Value.(object)
			for _, cm := range co {
				switch cm.Key {
				case "expiresAt":
					k.ExpiresAt = str(cm.Value)
				case "env":
					k.Env = strs(cm.Value)
				case "ipCidr":
					k.IPCidr = strs(cm.Value)
				}
			}
		}
	}
	return k
}

func parseDatabase(name string, v any) (Database, error) {
	o, ok := v.(object)
	if !ok {
		return Database{}, fmt.Errorf("edgebasetest: parse config: database %s is not an object", name)
	}
	d := Database{Name: name}
	for _, m := range o {
		switch m.Key {
		case "provider":
			d.Provider = str(m.Value)
		case "instance":
			d.Instance, _ = m.Value.(bool)
		case "access":
			d.Access = true
		case "tables":
			tabs, _ := m.Value.(object)
			for _, t := range tabs {
				d.Tables = append(d.Tables, parseTable(t.Key, t.Value))
			}
		}
	}
	return d, nil
}

func parseTable(name string, v any) Table {
	t := Table{Name: name}
	o, _ := v.(object)
	for _, m := range o {
		switch m.Key {
		case "schema":
			so, _ := m.Value.(object)
			t.Schema = []Field{}
			for _, f := range so {
				if b, ok := f.Value.(bool); ok && !b {
					t.Schema = append(t.Schema, Field{Name: f.Key, Disabled: true})
					continue
				}
				fo, _ := f.Value.(object)
				fld := Field{Name: f.Key}
				for _, fm := range fo {
					switch fm.Key {
					case "type":
						fld.Type = str(fm.Value)
					case "required":
						fld.Required, _ = fm.Value.(bool)
					case "unique":
						fld.Unique, _ = fm.Value.(bool)
					case "primaryKey":
						fld.PrimaryKey, _ = fm.Value.(bool)
					case "default":
						fld.Default = json.RawMessage(marshalJS(fm.Value))
					case "examples":
						fld.Examples = json.RawMessage(marshalJS(fm.Value))
					case "references":
						fld.References = str(fm.Value)
					case "check":
						fld.Check = str(fm.Value)
					}
				}
				t.Schema = append(t.Schema, fld)
			}
		case "indexes":
			arr, _ := m.Value.([]any)
			for _, e := range arr {
				io, _ := e.(object)
				var ix Index
				for _, im := range io {
					switch im.Key {
					case "fields":
						ix.Fields = strs(im.Value)
					case "unique":
						ix.Unique, _ = im.Value.(bool)
					}
				}
				t.Indexes = append(t.Indexes, ix)
			}
		case "fts":
			t.FTS = strs(m.Value)
		case "migrations":
			arr, _ := m.Value.([]any)
			for _, e := range arr {
				mo, _ := e.(object)
				var mg Migration
				for _, mm := range mo {
					switch mm.Key {
					case "version":
						f, _ := mm.Value.(float64)
						mg.Version = int(f)
					case "up":
						mg.Up = str(mm.Value)
					}
				}
				t.Migrations = append(t.Migrations, mg)
			}
		}
	}
	return t
}

// ─── schema → DDL, as the peer generates it ───

var typeMap = map[string]string{
	"string": "TEXT", "text": "TEXT", "number": "REAL", "boolean": "INTEGER", "datetime": "TEXT", "json": "TEXT",
}

func esc(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// effectiveSchema injects the auto fields id, createdAt, updatedAt.
func (t *Table) effectiveSchema() []Field {
	auto := []Field{
		{Name: "id", Type: "string", PrimaryKey: true},
		{Name: "createdAt", Type: "datetime"},
		{Name: "updatedAt", Type: "datetime"},
	}
	if t.Schema == nil {
		return auto
	}
	disabled := map[string]bool{}
	for _, f := range t.Schema {
		if f.Disabled {
			disabled[f.Name] = true
		}
	}
	var out []Field
	for _, f := range auto {
		if !disabled[f.Name] {
			out = append(out, f)
		}
	}
	for _, f := range t.Schema {
		if f.Disabled || f.Name == "id" || f.Name == "createdAt" || f.Name == "updatedAt" {
			continue
		}
		out = append(out, f)
	}
	return out
}

func (t *Table) field(name string) *Field {
	for _, f := range t.effectiveSchema() {
		if f.Name == name {
			f := f
			return &f
		}
	}
	return nil
}

func columnDef(f Field) string {
	typ, ok := typeMap[f.Type]
	if !ok {
		typ = "TEXT"
	}
	parts := []string{esc(f.Name), typ}
	if f.PrimaryKey {
		parts = append(parts, "PRIMARY KEY")
	}
	if f.Required && !f.PrimaryKey {
		parts = append(parts, "NOT NULL")
	}
	if f.Unique {
		parts = append(parts, "UNIQUE")
	}
	if f.Default != nil {
		parts = append(parts, "DEFAULT "+formatDefault(f.Default))
	}
	if ref := referenceClause(f.References); ref != "" {
		parts = append(parts, ref)
	}
	if f.Check != "" {
		parts = append(parts, "CHECK ("+f.Check+")")
	}
	return strings.Join(parts, " ")
}

func formatDefault(raw json.RawMessage) string {
	v, err := parseJS(raw)
	if err != nil {
		return "NULL"
	}
	switch x := v.(type) {
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	case bool:
		if x {
			return "1"
		}
		return "0"
	case nil:
		return "NULL"
	default:
		return jsToString(x)
	}
}

func referenceClause(ref string) string {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return ""
	}
	table := ref
	if i := strings.IndexByte(ref, '('); i >= 0 {
		table = ref[:i]
	}
	switch table {
	case "users", "_users", "_users_public":
		return ""
	}
	if i := strings.IndexByte(ref, '('); i >= 0 {
		col := strings.TrimSuffix(ref[i+1:], ")")
		return "REFERENCES " + esc(table) + "(" + esc(col) + ") ON DELETE CASCADE"
	}
	return "REFERENCES " + esc(ref) + `("id") ON DELETE SET NULL`
}

// tableDDL is generateTableDDL: CREATE TABLE, indexes, FTS5 table + triggers.
func (t *Table) tableDDL() []string {
	var cols []string
	for _, f := range t.effectiveSchema() {
		cols = append(cols, columnDef(f))
	}
	ddl := []string{"CREATE TABLE IF NOT EXISTS " + esc(t.Name) + " (\n  " + strings.Join(cols, ",\n  ") + "\n);"}
	ddl = append(ddl, t.indexDDL()...)
	if len(t.FTS) > 0 {
		ddl = append(ddl, t.ftsDDL()...)
	}
	return ddl
}

func (t *Table) indexDDL() []string {
	var out []string
	for _, ix := range t.Indexes {
		name := "idx_" + t.Name + "_" + strings.Join(ix.Fields, "_")
		unique := ""
		if ix.Unique {
			unique = "UNIQUE "
		}
		var fs []string
		for _, f := range ix.Fields {
			fs = append(fs, esc(f))
		}
		out = append(out, "CREATE "+unique+"INDEX IF NOT EXISTS "+esc(name)+" ON "+esc(t.Name)+"("+strings.Join(fs, ", ")+");")
	}
	return out
}

func (t *Table) ftsDDL() []string {
	fts := t.Name + "_fts"
	var escFields, newF, oldF []string
	for _, f := range t.FTS {
		escFields = append(escFields, esc(f))
		newF = append(newF, "new."+esc(f))
		oldF = append(oldF, "old."+esc(f))
	}
	ef := strings.Join(escFields, ", ")
	return []string{
		"CREATE VIRTUAL TABLE IF NOT EXISTS " + esc(fts) + " USING fts5(" + strings.Join(t.FTS, ", ") + ", content='" + t.Name + "', content_rowid='rowid', tokenize='trigram');",
		"CREATE TRIGGER IF NOT EXISTS " + esc(t.Name+"_ai") + " AFTER INSERT ON " + esc(t.Name) + " BEGIN\n  INSERT INTO " + esc(fts) + "(rowid, " + ef + ") VALUES (new.rowid, " + strings.Join(newF, ", ") + ");\nEND;",
		"CREATE TRIGGER IF NOT EXISTS " + esc(t.Name+"_ad") + " AFTER DELETE ON " + esc(t.Name) + " BEGIN\n  INSERT INTO " + esc(fts) + "(" + esc(fts) + ", rowid, " + ef + ") VALUES ('delete', old.rowid, " + strings.Join(oldF, ", ") + ");\nEND;",
		"CREATE TRIGGER IF NOT EXISTS " + esc(t.Name+"_au") + " AFTER UPDATE ON " + esc(t.Name) + " BEGIN\n  INSERT INTO " + esc(fts) + "(" + esc(fts) + ", rowid, " + ef + ") VALUES ('delete', old.rowid, " + strings.Join(oldF, ", ") + ");\n  INSERT INTO " + esc(fts) + "(rowid, " + ef + ") VALUES (new.rowid, " + strings.Join(newF, ", ") + ");\nEND;",
	}
}

// schemaHash is computeSchemaHashSync: djb2 over
// JSON.stringify(deepSort({schema})) in UTF-16 code units.
func (t *Table) schemaHash() string {
	var sb strings.Builder
	sb.WriteString(`{"schema":{`)
	fields := append([]Field(nil), t.Schema...)
	sort.Slice(fields, func(i, j int) bool { return utf16Less(fields[i].Name, fields[j].Name) })
	for i, f := range fields {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.Write(marshalJS(f.Name))
		sb.WriteByte(':')
		if f.Disabled {
			sb.WriteString("false")
			continue
		}
		o := f.object()
		sort.Slice(o, func(i, j int) bool { return utf16Less(o[i].Key, o[j].Key) })
		sb.Write(marshalJS(deepSortValue(o)))
	}
	sb.WriteString("}}")
	var h int32 = 5381
	for _, r := range sb.String() {
		for _, u := range utf16Units(r) {
			h = int32(uint32(int64(h<<5) + int64(h) + int64(u)))
		}
	}
	return fmt.Sprintf("%08x", uint32(h))
}

func deepSortValue(v any) any {
	switch x := v.(type) {
	case object:
		out := append(object(nil), x...)
		sort.Slice(out, func(i, j int) bool { return utf16Less(out[i].Key, out[j].Key) })
		for i := range out {
			out[i].Value = deepSortValue(out[i].Value)
		}
		return out
	case rawJSON:
		pv, err := parseJS(x)
		if err != nil {
			return x
		}
		return deepSortValue(pv)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = deepSortValue(x[i])
		}
		return out
	}
	return v
}

func utf16Units(r rune) []uint16 {
	if r < 0x10000 {
		return []uint16{uint16(r)}
	}
	r -= 0x10000
	return []uint16{uint16(0xD800 + (r >> 10)), uint16(0xDC00 + (r & 0x3FF))}
}

// utf16Less orders like JavaScript's default string comparison.
func utf16Less(a, b string) bool {
	var ua, ub []uint16
	for _, r := range a {
		ua = append(ua, utf16Units(r)...)
	}
	for _, r := range b {
		ub = append(ub, utf16Units(r)...)
	}
	for i := 0; i < len(ua) && i < len(ub); i++ {
		if ua[i] != ub[i] {
			return ua[i] < ub[i]
		}
	}
	return len(ua) < len(ub)
}

// migrationVersion is the initial migration_version a new table gets.
func (t *Table) migrationVersion() string {
	maxV := 1
	if len(t.Migrations) > 0 {
		maxV = t.Migrations[0].Version
		for _, m := range t.Migrations {
			if m.Version > maxV {
				maxV = m.Version
			}
		}
	}
	return strconv.Itoa(maxV)
}
