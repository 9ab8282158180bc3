package edgebasetest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// openSQLite opens (creating) one SQLite file with one connection: a Durable
// Object and a local D1 database are single-threaded, and one connection
// keeps transactions and PRAGMAs on the same handle. journal is the
// journal_mode: WAL for the few long-lived files (D1, R2), DELETE for DO
// files, where switching each new file to WAL costs ~10 ms of syscalls and
// would make seeding hundreds of DOs slow.
func openSQLite(path, journal string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("edgebasetest: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode("+journal+")&_pragma=synchronous(OFF)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)")
	if err != nil {
		return nil, fmt.Errorf("edgebasetest: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryObjects runs q and converts every value with conv (the SQLite→JS
// mapping of the runtime being imitated).
func queryObjects(ctx context.Context, db querier, conv func(any) any, q string, args ...any) ([]object, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := []object{}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		o := make(object, len(cols))
		for i, c := range cols {
			o[i] = kv{c, conv(vals[i])}
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// queryStrings returns the first column of every row as text.
func queryStrings(ctx context.Context, db querier, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s.String)
	}
	return out, rows.Err()
}

// doValue maps a value read through workerd's SQL API to the JS value the
// peer serializes: integers become doubles, BLOBs get the __blob__ wrapper.
func doValue(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case float64:
		return x
	case string:
		return x
	case []byte:
		return doBlob(append([]byte(nil), x...))
	case nil:
		return nil
	default:
		return fmt.Sprint(x)
	}
}

// d1Value is doValue for D1, which returns BLOBs as arrays of byte values.
func d1Value(v any) any {
	if b, ok := v.([]byte); ok {
		return d1Blob(append([]byte(nil), b...))
	}
	return doValue(v)
}
