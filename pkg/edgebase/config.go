package edgebase

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// RedactedValue is what EdgeBase 0.4.2+ puts in its config snapshot in
// place of a withheld value: credentials, plugin configs, schema defaults,
// functions, and whatever lies beyond its depth and size limits. It may
// stand where an object, array, boolean or number was.
const RedactedValue = "[REDACTED]"

// Config is the part of GET /config the pipeline decides on. Databases and
// tables keep the server's order, which some endpoints depend on.
//
// The config is read as generic JSON: any value may be RedactedValue or of
// an unexpected shape. Such parts are recorded as unknown (the Unknown,
// RoutingUnknown, TablesUnknown and FieldsUnknown flags) and never fail
// the parse; the Has* methods answer Unknown for them, so a schema
// comparison never mistakes a redacted part for a missing one.
type Config struct {
	Databases []DBBlock
	Buckets   []string
	// Redacted lists every place in the snapshot holding RedactedValue, as
	// JSON Pointers (RFC 6901, e.g. "/serviceKeys/keys/0/inlineSecret"), in
	// document order. Empty for servers that do not redact (0.2.8).
	Redacted []string
	// DatabasesUnknown: config.databases (or the whole config) was
	// redacted or not an object, so Databases is incomplete.
	DatabasesUnknown bool
	// BucketsUnknown: storage or storage.buckets was redacted or not an
	// object, so Buckets is incomplete.
	BucketsUnknown bool
}

// DBBlock is one entry of config.databases.
type DBBlock struct {
	Name     string
	Provider string // "", "d1", "do", "neon", "postgres"
	Instance bool
	// AccessKeys lists the keys present under access. Functions are dropped
	// when the config is serialized (0.2.8) or redacted (0.4.2+), so
	// canCreate/access appear as an empty object or with RedactedValue;
	// Instance is the reliable signal.
	AccessKeys []string
	Tables     []Table
	// Unknown: the block's whole definition was redacted or not an object;
	// only its name is known (RoutingUnknown and TablesUnknown are set too).
	Unknown bool
	// RoutingUnknown: provider, instance or access was redacted or
	// malformed, so Dynamic, DataNamespace and DOBacked are guesses from
	// the rest.
	RoutingUnknown bool
	// TablesUnknown: the table list is incomplete (tables was redacted or
	// not an object).
	TablesUnknown bool
}

// Table is one configured table and its schema field names in order.
type Table struct {
	Name   string
	Fields []string
	// Unknown: the table's definition was redacted or not an object; only
	// its name is known (FieldsUnknown is set too).
	Unknown bool
	// FieldsUnknown: the field list is incomplete (schema was redacted or
	// not an object). A field whose own definition was redacted is still
	// listed: its name is known.
	FieldsUnknown bool
}

// Presence is a three-valued answer about a configured name. The zero
// value is Unknown, so an answer that was never decided never reads as
// Missing.
type Presence int

const (
	// Unknown: the snapshot withholds the answer (a redacted or malformed
	// part). A schema comparison treats it as "cannot tell", never as
	// missing.
	Unknown Presence = iota
	// Present: the config has it.
	Present
	// Missing: the config is complete at that level and does not have it.
	Missing
)

func (p Presence) String() string {
	switch p {
	case Present:
		return "present"
	case Missing:
		return "missing"
	}
	return "unknown"
}

// Dynamic reports a multi-tenant block: one DO per "<name>:<id>".
func (b DBBlock) Dynamic() bool {
	return b.Instance || slices.Contains(b.AccessKeys, "canCreate") || slices.Contains(b.AccessKeys, "access")
}

// Postgres reports a block served by Postgres/Neon.
func (b DBBlock) Postgres() bool { return b.Provider == "neon" || b.Provider == "postgres" }

// DataNamespace reports whether the block's rows come from dump-data (D1
// or Postgres) rather than from its DO. It follows the official create's
// filter: non-empty tables and either an explicit d1/neon/postgres
// provider or no provider on a single-instance block.
func (b DBBlock) DataNamespace() bool {
	if len(b.Tables) == 0 {
		return false
	}
	switch b.Provider {
	case "d1", "neon", "postgres":
		return true
	case "":
		return !b.Dynamic()
	}
	return false
}

// DOBacked reports whether the block's rows live in Durable Objects.
func (b DBBlock) DOBacked() bool { return b.Provider == "do" || b.Dynamic() }

// Table returns the named table.
func (b DBBlock) Table(name string) (Table, bool) {
	for _, t := range b.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// Block returns the named block.
func (c *Config) Block(name string) (DBBlock, bool) {
	for _, b := range c.Databases {
		if b.Name == name {
			return b, true
		}
	}
	return DBBlock{}, false
}

// HasBlock reports whether the DB block is configured.
func (c *Config) HasBlock(block string) Presence {
	if _, ok := c.Block(block); ok {
		return Present
	}
	if c.DatabasesUnknown {
		return Unknown
	}
	return Missing
}

// HasTable reports whether block has table.
func (c *Config) HasTable(block, table string) Presence {
	b, ok := c.Block(block)
	if !ok {
		return c.HasBlock(block)
	}
	if _, ok := b.Table(table); ok {
		return Present
	}
	if b.Unknown || b.TablesUnknown {
		return Unknown
	}
	return Missing
}

// HasField reports whether table of block declares field in its schema.
// The server's automatic columns (id, createdAt, updatedAt) are not
// declared and are the caller's to allow.
func (c *Config) HasField(block, table, field string) Presence {
	if p := c.HasTable(block, table); p != Present {
		return p
	}
	b, _ := c.Block(block)
	t, _ := b.Table(table)
	if slices.Contains(t.Fields, field) {
		return Present
	}
	if t.Unknown || t.FieldsUnknown {
		return Unknown
	}
	return Missing
}

// ParseConfig extracts the Config from GET /config's raw reply. Only
// invalid JSON is an error; redacted or oddly shaped parts become unknown.
func ParseConfig(raw []byte) (*Config, error) {
	redacted, err := redactedPaths(raw)
	if err != nil {
		return nil, fmt.Errorf("edgebase: parsing config: %w", err)
	}
	cfg := &Config{Redacted: redacted}
	if !isObject(raw) {
		cfg.DatabasesUnknown, cfg.BucketsUnknown = true, true
		return cfg, nil
	}
	err = eachMember(raw, func(key string, val json.RawMessage) error {
		switch key {
		case "databases":
			if !isObjectOrNull(val) {
				cfg.DatabasesUnknown = true
				return nil
			}
			return eachMember(val, func(name string, blk json.RawMessage) error {
				cfg.Databases = append(cfg.Databases, parseBlock(name, blk))
				return nil
			})
		case "storage":
			if !isObjectOrNull(val) {
				cfg.BucketsUnknown = true
				return nil
			}
			return eachMember(val, func(k string, v json.RawMessage) error {
				if k != "buckets" {
					return nil
				}
				if !isObjectOrNull(v) {
					cfg.BucketsUnknown = true
					return nil
				}
				return eachMember(v, func(bucket string, _ json.RawMessage) error {
					cfg.Buckets = append(cfg.Buckets, bucket)
					return nil
				})
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("edgebase: parsing config: %w", err)
	}
	return cfg, nil
}

// parseBlock reads one DB block; raw is valid JSON (checked by the
// caller's walk), so only shapes can be off, and those become unknown.
func parseBlock(name string, raw json.RawMessage) DBBlock {
	b := DBBlock{Name: name}
	if !isObject(raw) {
		b.Unknown, b.RoutingUnknown, b.TablesUnknown = true, true, true
		return b
	}
	_ = eachMember(raw, func(key string, val json.RawMessage) error {
		switch key {
		case "provider":
			if isNull(val) {
				return nil
			}
			if err := json.Unmarshal(val, &b.Provider); err != nil || b.Provider == RedactedValue {
				b.Provider, b.RoutingUnknown = "", true
			}
		case "instance":
			var v any
			if err := json.Unmarshal(val, &v); err != nil || v == RedactedValue {
				b.RoutingUnknown = true
				return nil
			}
			b.Instance = truthy(v)
		case "access":
			if !isObjectOrNull(val) {
				b.RoutingUnknown = true
				return nil
			}
			return eachMember(val, func(k string, _ json.RawMessage) error {
				b.AccessKeys = append(b.AccessKeys, k)
				return nil
			})
		case "tables":
			if !isObjectOrNull(val) {
				b.TablesUnknown = true
				return nil
			}
			return eachMember(val, func(t string, def json.RawMessage) error {
				b.Tables = append(b.Tables, parseTable(t, def))
				return nil
			})
		}
		return nil
	})
	return b
}

func parseTable(name string, raw json.RawMessage) Table {
	t := Table{Name: name}
	if !isObject(raw) {
		t.Unknown, t.FieldsUnknown = true, true
		return t
	}
	_ = eachMember(raw, func(k string, v json.RawMessage) error {
		if k != "schema" {
			return nil
		}
		if !isObjectOrNull(v) {
			t.FieldsUnknown = true
			return nil
		}
		return eachMember(v, func(field string, _ json.RawMessage) error {
			t.Fields = append(t.Fields, field)
			return nil
		})
	})
	return t
}

func firstByte(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func isObject(raw []byte) bool { return firstByte(raw) == '{' }

func isNull(raw []byte) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// isObjectOrNull: null is how the server writes an optional block that is
// absent, which means "none", not "unknown".
func isObjectOrNull(raw []byte) bool { return isObject(raw) || isNull(raw) }

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	}
	return true
}

// redactedPaths walks the whole document and returns the JSON Pointer of
// every string equal to RedactedValue. It is also the syntax check.
func redactedPaths(raw []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out []string
	var walk func(path string) error
	walk = func(path string) error {
		t, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		switch v := t.(type) {
		case json.Delim:
			switch v {
			case '{':
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						return err
					}
					if err := walk(path + "/" + pointerEscape(k.(string))); err != nil {
						return err
					}
				}
			case '[':
				for i := 0; dec.More(); i++ {
					if err := walk(path + "/" + strconv.Itoa(i)); err != nil {
						return err
					}
				}
			}
			_, err := dec.Token() // the closing delimiter
			return err
		case string:
			if v == RedactedValue {
				out = append(out, path)
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON document")
	}
	return out, nil
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func pointerEscape(s string) string { return pointerEscaper.Replace(s) }

// eachMember calls fn for each member of a JSON object in document order.
// null or a non-object value is treated as an empty object, matching how
// the server treats optional config blocks.
func eachMember(raw []byte, fn func(key string, val json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return err
		}
		if err := fn(kt.(string), val); err != nil {
			return err
		}
	}
	_, err = dec.Token()
	return err
}
