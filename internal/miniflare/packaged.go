package miniflare

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// A packaged EdgeBase app (`edgebase pack`) runs `wrangler dev` with its
// state in the user's data directory, <data>/<app>/state, which holds the
// usual v3/ tree (protocol Appendix B.5). --data-dir or --persist-to move
// it; pass such a directory to List directly.

// PackagedStateDirs returns the state directories a packaged app named
// app uses by default on this OS, most specific first (they need not
// exist): $XDG_DATA_HOME/<app>/state, then ~/.local/share/<app>/state on
// Linux and other Unix systems; ~/Library/Application Support/<app>/state
// on macOS; %LOCALAPPDATA%\<app>\state on Windows.
func PackagedStateDirs(app string) ([]string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		home = ""
	}
	return packagedStateDirs(runtime.GOOS, app, os.Getenv, home)
}

func packagedStateDirs(goos, app string, getenv func(string) string, home string) ([]string, error) {
	if app == "" || app == "." || app == ".." || strings.ContainsAny(app, `/\`) {
		return nil, fmt.Errorf("miniflare: %q is not an app name", app)
	}
	var bases []string
	switch goos {
	case "windows":
		if d := getenv("LOCALAPPDATA"); d != "" {
			bases = append(bases, d)
		}
		if home != "" {
			bases = append(bases, filepath.Join(home, "AppData", "Local"))
		}
	case "darwin":
		if home != "" {
			bases = append(bases, filepath.Join(home, "Library", "Application Support"))
		}
	default:
		// The XDG spec ignores a relative XDG_DATA_HOME.
		if d := getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
			bases = append(bases, d)
		}
		if home != "" {
			bases = append(bases, filepath.Join(home, ".local", "share"))
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, b := range bases {
		d := filepath.Join(b, app, "state")
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("miniflare: no data directory known for packaged apps on %s (no home directory)", goos)
	}
	return out, nil
}

// ErrNoPackagedState is returned by FindPackagedState when no default
// location holds the app's state.
var ErrNoPackagedState = errors.New("miniflare: no packaged app state found")

// FindPackagedState returns the first of PackagedStateDirs(app) that holds
// a dev server state, ready for List.
func FindPackagedState(app string) (string, error) {
	dirs, err := PackagedStateDirs(app)
	if err != nil {
		return "", err
	}
	return firstState(app, dirs)
}

func firstState(app string, dirs []string) (string, error) {
	for _, d := range dirs {
		if _, err := FindDODir(d); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w for %q (looked in %s; use the app's --data-dir/--persist-to directory instead)", ErrNoPackagedState, app, strings.Join(dirs, ", "))
}
