package peer

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

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// DOName is one Durable Object instance found in a Miniflare state.
type DOName struct {
	HexID string
	Name  string // "" when neither __miniflare_do_name nor _meta doName has it
}

// ListDONames lists the instances of class (e.g. "DatabaseDO") with storage
// under a Miniflare root (<root>/v3/do/<worker>-<class>/<hex>.sqlite), in
// hex order, like the peer's list-do-names.sh: the name comes from
// Miniflare's __miniflare_do_name table, else from EdgeBase's _meta
// 'doName'. Files are opened read-only, so a running peer is not disturbed.
// For a peer, root is Peer.MiniflareRoot(); for the emulator, its StateDir.
func ListDONames(ctx context.Context, root, class string) ([]DOName, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "v3", "do", "*-"+class))
	if err != nil {
		return nil, fmt.Errorf("peer: list DO names: %w", err)
	}
	sort.Strings(dirs)
	var out []DOName
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(d, "*.sqlite"))
		if err != nil {
			return nil, fmt.Errorf("peer: list DO names: %w", err)
		}
		sort.Strings(files)
		for _, f := range files {
			hex := strings.TrimSuffix(filepath.Base(f), ".sqlite")
			if hex == "metadata" {
				continue
			}
			name, err := readDOName(ctx, f)
			if err != nil {
				return nil, err
			}
			out = append(out, DOName{HexID: hex, Name: name})
		}
	}
	return out, nil
}

func readDOName(ctx context.Context, path string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil // removed between glob and open
		}
		return "", fmt.Errorf("peer: %s: %w", path, err)
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return "", fmt.Errorf("peer: open %s: %w", path, err)
	}
	defer db.Close()
	for _, q := range []string{
		"SELECT name FROM __miniflare_do_name LIMIT 1",
		"SELECT value FROM _meta WHERE key='doName'",
	} {
		var name sql.NullString
		err := db.QueryRowContext(ctx, q).Scan(&name)
		if err == nil && name.String != "" {
			return name.String, nil
		}
	}
	return "", nil
}
