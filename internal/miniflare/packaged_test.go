package miniflare

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

func TestPackagedStateDirsPerOS(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	home := filepath.Join("/", "home", "ada")
	for _, tc := range []struct {
		goos string
		env  map[string]string
		home string
		want []string
	}{
		{"linux", map[string]string{"XDG_DATA_HOME": "/data/xdg"}, home,
			[]string{filepath.Join("/data/xdg", "myapp", "state"), filepath.Join(home, ".local", "share", "myapp", "state")}},
		{"linux", nil, home, []string{filepath.Join(home, ".local", "share", "myapp", "state")}},
		{"linux", map[string]string{"XDG_DATA_HOME": "relative/dir"}, home, []string{filepath.Join(home, ".local", "share", "myapp", "state")}},
		{"linux", map[string]string{"XDG_DATA_HOME": filepath.Join(home, ".local", "share")}, home, []string{filepath.Join(home, ".local", "share", "myapp", "state")}},
		{"freebsd", nil, home, []string{filepath.Join(home, ".local", "share", "myapp", "state")}},
		{"darwin", map[string]string{"XDG_DATA_HOME": "/data/xdg"}, home, []string{filepath.Join(home, "Library", "Application Support", "myapp", "state")}},
		{"windows", map[string]string{"LOCALAPPDATA": `C:\Users\ada\AppData\Local`}, `C:\Users\ada`,
			[]string{filepath.Join(`C:\Users\ada\AppData\Local`, "myapp", "state"), filepath.Join(`C:\Users\ada`, "AppData", "Local", "myapp", "state")}},
		{"windows", nil, `C:\Users\ada`, []string{filepath.Join(`C:\Users\ada`, "AppData", "Local", "myapp", "state")}},
	} {
		got, err := packagedStateDirs(tc.goos, "myapp", env(tc.env), tc.home)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s %v: %q, %v; want %q", tc.goos, tc.env, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`} {
		if _, err := packagedStateDirs("linux", bad, env(nil), home); err == nil {
			t.Errorf("app name %q accepted", bad)
		}
	}
	if _, err := packagedStateDirs("darwin", "myapp", env(nil), ""); err == nil {
		t.Error("no home directory and no data directory gave candidates")
	}
}

// A packaged app's state under $XDG_DATA_HOME is found, and List reads its
// instances, from the state directory and from the app's data directory.
func TestFindPackagedStateLinux(t *testing.T) {
	data := t.TempDir()
	dirs, err := packagedStateDirs("linux", "myapp", func(k string) string {
		return map[string]string{"XDG_DATA_HOME": data}[k]
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	find := func() (string, error) { return firstState("myapp", dirs) }
	if _, err := find(); !errors.Is(err, ErrNoPackagedState) {
		t.Fatalf("before the app ran: %v", err)
	}
	state := filepath.Join(data, "myapp", "state")
	e, err := edgebasetest.New(edgebasetest.Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.AddRows(ctx, "workspace:ws-1", "tasks", edgebasetest.Row{"title": "packaged"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "myapp", "launcher-state.json"), []byte(`{"port":8787}`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := find()
	if err != nil || got != state {
		t.Fatalf("FindPackagedState = %q, %v; want %q", got, err, state)
	}
	for _, dir := range []string{state, filepath.Join(data, "myapp")} {
		insts, err := List(ctx, dir, "DatabaseDO")
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if i := slices.IndexFunc(insts, func(in Instance) bool { return in.Name == "workspace:ws-1" }); i < 0 || !insts[i].HasData {
			t.Fatalf("%s: instances %+v", dir, insts)
		}
	}
}

// A project directory running plain wrangler dev keeps its state in
// .wrangler/state.
func TestWranglerProjectState(t *testing.T) {
	project := t.TempDir()
	e, err := edgebasetest.New(edgebasetest.Options{StateDir: filepath.Join(project, ".wrangler", "state")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AddRows(context.Background(), "workspace:ws-2", "tasks", edgebasetest.Row{"title": "x"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	insts, err := List(context.Background(), project, "DatabaseDO")
	if err != nil || !slices.ContainsFunc(insts, func(in Instance) bool { return in.Name == "workspace:ws-2" }) {
		t.Fatalf("instances %+v, %v", insts, err)
	}
}

// The exported functions read this machine's OS, environment and home.
func TestPackagedStateDirsOfThisMachine(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("USERPROFILE", home)
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "xdg"))
	t.Setenv("LOCALAPPDATA", filepath.Join(home, "local"))
	got, err := PackagedStateDirs("myapp")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := packagedStateDirs(runtime.GOOS, "myapp", os.Getenv, home)
	if !slices.Equal(got, want) || len(got) == 0 {
		t.Fatalf("PackagedStateDirs = %q, want %q", got, want)
	}
	if _, err := FindPackagedState("myapp"); !errors.Is(err, ErrNoPackagedState) {
		t.Fatalf("empty home: %v", err)
	}
	e, err := edgebasetest.New(edgebasetest.Options{StateDir: got[0]})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.CreateInstance(context.Background(), "workspace:ws-9"); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if dir, err := FindPackagedState("myapp"); err != nil || dir != got[0] {
		t.Fatalf("FindPackagedState = %q, %v", dir, err)
	}
}
