package drill

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// TableSum is a table's row count and content hash: the sum, lane by
// lane, of the SHA-256 of each row's canonical JSON, so row order does not
// matter and every row counts once per occurrence.
type TableSum struct {
	Rows int64
	sum  [4]uint64
}

// Hash returns the content hash in hex.
func (t *TableSum) Hash() string {
	var b [32]byte
	for i, v := range t.sum {
		binary.BigEndian.PutUint64(b[i*8:], v)
	}
	return hex.EncodeToString(b[:])
}

func (t *TableSum) add(row map[string]any) error {
	b, err := json.Marshal(canonical(row)) // maps marshal with sorted keys
	if err != nil {
		return err
	}
	s := sha256.Sum256(b)
	for i := range t.sum {
		t.sum[i] += binary.BigEndian.Uint64(s[i*8:])
	}
	t.Rows++
	return nil
}

// canonical rewrites numbers so that 3, 3.0 and 3e0 hash alike: the
// server may spell a number differently from the archive without the
// value differing.
func canonical(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = canonical(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = canonical(e)
		}
		return x
	case json.Number:
		if i, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			return json.Number(strconv.FormatInt(i, 10))
		}
		f, err := strconv.ParseFloat(x.String(), 64)
		if err != nil {
			return x
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return json.Number(strconv.FormatInt(int64(f), 10))
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	}
	return v
}

// Skipped reports tables a restore does not reproduce as they were
// archived: the ones the server manages itself (_meta with doName and
// schema hashes, __miniflare_do_name, sqlite_*, _cf_*), _users_public
// (rebuilt by the resync with new timestamps) and FTS index tables
// (rebuilt from their content tables).
func Skipped(table string) bool {
	return table == "_meta" || table == "__miniflare_do_name" || table == "_users_public" ||
		strings.HasPrefix(table, "sqlite_") || strings.HasPrefix(table, "_cf_") || strings.HasSuffix(table, "_fts")
}

// Tables is one unit's tables.
type Tables map[string]*TableSum

// errNeedsCreate marks a dump reply saying the DO does not exist.
var errNeedsCreate = errors.New("the DO does not exist")

// readTables reads one unit's JSON from r, a dump reply or archive value:
// with wrapped, an object whose "tables" member holds the tables (DO and
// namespace dumps, dump-d1 replies); otherwise the tables object itself
// (the archive's control.d1 and auth.d1). Rows are decoded one at a time.
func readTables(r io.Reader, wrapped bool) (Tables, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	ts := Tables{}
	if !wrapped {
		return ts, tablesObject(dec, ts)
	}
	if err := delim(dec, '{'); err != nil {
		return nil, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case "tables":
			if err := tablesObject(dec, ts); err != nil {
				return nil, err
			}
		case "needsCreate":
			var b bool
			if err := dec.Decode(&b); err != nil {
				return nil, err
			}
			if b {
				return nil, errNeedsCreate
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, err
			}
		}
	}
	return ts, delim(dec, '}')
}

func tablesObject(dec *json.Decoder, ts Tables) error {
	if err := delim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if err := delim(dec, '['); err != nil {
			return fmt.Errorf("table %q: %w", name, err)
		}
		t := ts[name]
		if t == nil {
			t = &TableSum{}
			ts[name] = t
		}
		for dec.More() {
			var row map[string]any
			if err := dec.Decode(&row); err != nil {
				return fmt.Errorf("table %q: %w", name, err)
			}
			if err := t.add(row); err != nil {
				return err
			}
		}
		if err := delim(dec, ']'); err != nil {
			return err
		}
	}
	return delim(dec, '}')
}

func delim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}
