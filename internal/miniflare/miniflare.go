package miniflare

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	_ "modernc.org/sqlite" // pure-Go SQLite driver
)

// Instance is one DO found on disk.
type Instance struct {
	HexID string
	Name  string // "" when the file names no instance
	Class string
	Path  string
	// HasData is false for a file holding nothing but Miniflare's name
	// table: every request that names a DO leaves one, including requests
	// the server refused (needsCreate), so such a DO does not exist.
	HasData bool
}

// stateRoots are the places below a given directory where a v3/ state
// tree may sit: the directory itself (wrangler --persist-to, a packaged
// app's <data>/<app>/state), miniflare/ (the test peer's state dir),
// state/ (a packaged app's data directory <data>/<app>) and
// .wrangler/state/ (a project directory running plain wrangler dev).
var stateRoots = [][]string{{}, {"miniflare"}, {"state"}, {".wrangler", "state"}}

// FindDODir locates the v3/do directory under dir, accepting the v3/do
// directory itself, v3/, or any of the state roots above.
func FindDODir(dir string) (string, error) {
	cands := []string{dir, filepath.Join(dir, "do")}
	for _, r := range stateRoots {
		cands = append(cands, filepath.Join(append(append([]string{dir}, r...), "v3", "do")...))
	}
	for _, c := range cands {
		if m, _ := filepath.Glob(filepath.Join(c, "*-*")); len(m) > 0 && filepath.Base(c) == "do" {
			return c, nil
		}
	}
	// A server that never stored a DO has a v3 directory without do/.
	var v3s []string
	for _, r := range stateRoots {
		v3s = append(v3s, filepath.Join(append(append([]string{dir}, r...), "v3")...))
	}
	for _, c := range v3s {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return filepath.Join(c, "do"), nil
		}
	}
	return "", fmt.Errorf("miniflare: %s is not a local dev server state directory (no v3/ or v3/do/<worker>-<Class>/ under it)", dir)
}

// List returns every instance of class (e.g. "DatabaseDO") in name order.
func List(ctx context.Context, stateDir, class string) ([]Instance, error) {
	doDir, err := FindDODir(stateDir)
	if err != nil {
		return nil, err
	}
	dirs, err := filepath.Glob(filepath.Join(doDir, "*-"+class))
	if err != nil {
		return nil, err
	}
	var out []Instance
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(d, "*.sqlite"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			hex := strings.TrimSuffix(filepath.Base(f), ".sqlite")
			if hex == "metadata" {
				continue
			}
			name, hasData, err := inspect(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("miniflare: %s: %w", f, err)
			}
			out = append(out, Instance{HexID: hex, Name: name, Class: class, Path: f, HasData: hasData})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].HexID < out[j].HexID
	})
	return out, nil
}

// inspect reads a DO file's name, from Miniflare's __miniflare_do_name
// table or else EdgeBase's _meta row doName (restores drop Miniflare's
// table), and whether it stores any table of its own.
func inspect(ctx context.Context, path string) (name string, hasData bool, err error) {
	path, err = filepath.Abs(path)
	if err != nil {
		return "", false, err
	}
	if _, err := os.Stat(path); err != nil {
		return "", false, err
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return "", false, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table'
		AND name <> '__miniflare_do_name' AND name NOT LIKE '\_cf\_%' ESCAPE '\'`).Scan(&n)
	if err != nil {
		return "", false, err
	}
	for _, q := range []string{
		"SELECT name FROM __miniflare_do_name LIMIT 1",
		"SELECT value FROM _meta WHERE key = 'doName'",
	} {
		var v sql.NullString
		err := db.QueryRowContext(ctx, q).Scan(&v)
		if err == nil && v.Valid && v.String != "" {
			return v.String, n > 0, nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) && !strings.Contains(err.Error(), "no such table") {
			return "", false, err
		}
	}
	return "", n > 0, nil
}
