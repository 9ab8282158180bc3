package edgebase

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// Config is the part of GET /config the pipeline decides on. Databases and
// tables keep the server's order, which some endpoints depend on.
type Config struct {
	Databases []DBBlock
	Buckets   []string
}

// DBBlock is one entry of config.databases.
type DBBlock struct {
	Name     string
	Provider string // "", "d1", "do", "neon", "postgres"
	Instance bool
	// AccessKeys lists the keys present under access. Functions are dropped
	// when the config is serialized, so canCreate/access usually appear only
	// as an empty object; Instance is the reliable signal.
	AccessKeys []string
	Tables     []Table
}

// Table is one configured table and its schema field names in order.
type Table struct {
	Name   string
	Fields []string
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

// Block returns the named block.
func (c *Config) Block(name string) (DBBlock, bool) {
	for _, b := range c.Databases {
		if b.Name == name {
			return b, true
		}
	}
	return DBBlock{}, false
}

// ParseConfig extracts the Config from GET /config's raw reply.
func ParseConfig(raw []byte) (*Config, error) {
	cfg := &Config{}
	err := eachMember(raw, func(key string, val json.RawMessage) error {
		switch key {
		case "databases":
			return eachMember(val, func(name string, blk json.RawMessage) error {
				b, err := parseBlock(name, blk)
				if err != nil {
					return err
				}
				cfg.Databases = append(cfg.Databases, b)
				return nil
			})
		case "storage":
			return eachMember(val, func(k string, v json.RawMessage) error {
				if k != "buckets" {
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

func parseBlock(name string, raw json.RawMessage) (DBBlock, error) {
	b := DBBlock{Name: name}
	err := eachMember(raw, func(key string, val json.RawMessage) error {
		switch key {
		case "provider":
			return json.Unmarshal(val, &b.Provider)
		case "instance":
			var v any
			if err := json.Unmarshal(val, &v); err != nil {
				return err
			}
			b.Instance = truthy(v)
		case "access":
			return eachMember(val, func(k string, _ json.RawMessage) error {
				b.AccessKeys = append(b.AccessKeys, k)
				return nil
			})
		case "tables":
			return eachMember(val, func(t string, def json.RawMessage) error {
				tbl := Table{Name: t}
				err := eachMember(def, func(k string, v json.RawMessage) error {
					if k != "schema" {
						return nil
					}
					return eachMember(v, func(field string, _ json.RawMessage) error {
						tbl.Fields = append(tbl.Fields, field)
						return nil
					})
				})
				b.Tables = append(b.Tables, tbl)
				return err
			})
		}
		return nil
	})
	if err != nil {
		return b, fmt.Errorf("databases.%s: %w", name, err)
	}
	return b, nil
}

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
