package devvars

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func load(t *testing.T, dir string) map[string]string {
	t.Helper()
	m, err := New(dir).Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if m == nil {
		t.Fatal("Load returned a nil map")
	}
	return m
}

func TestLoadDevVarsCoreKeysOnly(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, DevVarsFile, "\uFEFF# local\r\n"+
		"  JWT_USER_SECRET =  user=with=equals  \r\n"+
		"\n"+
		"OTHER=ignored\n"+
		"=novalue\n"+
		"no equals sign\n"+
		"\tSERVICE_KEY=first\n"+
		"SERVICE_KEY=second\n"+
		"JWT_ADMIN_SECRET=\n"+
		"  # SERVICE_KEY=commented\n", 0o600)
	write(t, dir, SecretsFile, `{"FROM_JSON":"x"}`, 0o600)
	got := load(t, dir)
	want := map[string]string{"JWT_USER_SECRET": "user=with=equals", "SERVICE_KEY": "second"}
	if !maps.Equal(got, want) {
		t.Fatalf("Load = %v, want %v", got, want)
	}
}

func TestLoadFallsBackToSecretsJSON(t *testing.T) {
	for name, devVars := range map[string]string{
		"no core keys":      "OTHER=1\n",
		"empty core values": "SERVICE_KEY=\nJWT_USER_SECRET=  \n",
		"no .dev.vars":      "",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if devVars != "" {
				write(t, dir, DevVarsFile, devVars, 0o600)
			}
			write(t, dir, SecretsFile, `{"SERVICE_KEY":"sk","CUSTOM":"c","DUP":"a","DUP":"b"}`, 0o600)
			got := load(t, dir)
			want := map[string]string{"SERVICE_KEY": "sk", "CUSTOM": "c", "DUP": "b"}
			if !maps.Equal(got, want) {
				t.Fatalf("Load = %v, want %v", got, want)
			}
		})
	}
}

func TestLoadNothing(t *testing.T) {
	if got := load(t, t.TempDir()); len(got) != 0 {
		t.Fatalf("Load of an empty project = %v", got)
	}
}

func TestLoadRejectsInvalidSecretsJSON(t *testing.T) {
	for _, content := range []string{
		`{"A":"ok","N":1}`, `{"A":null}`, `{"A":{"nested":"hidden-value"}}`, `{"A":["x"]}`,
		`[]`, `"s"`, `{`, `{"A":"x"} trailing`, ``,
	} {
		dir := t.TempDir()
		write(t, dir, SecretsFile, content, 0o600)
		_, err := New(dir).Load(context.Background())
		if err == nil {
			t.Errorf("Load accepted %s", content)
			continue
		}
		if strings.Contains(err.Error(), "hidden-value") || strings.Contains(err.Error(), "ok") {
			t.Errorf("error leaks a value: %v", err)
		}
	}
}

func TestSaveNewProject(t *testing.T) {
	dir := t.TempDir()
	s := New(dir)
	if err := s.Save(context.Background(), map[string]string{"SERVICE_KEY": "sk", "JWT_USER_SECRET": `a"b\c<d>&`}); err != nil {
		t.Fatal(err)
	}
	if got, want := read(t, dir, DevVarsFile), Header+"\nJWT_USER_SECRET=a\"b\\c<d>&\nSERVICE_KEY=sk\n"; got != want {
		t.Errorf(".dev.vars = %q, want %q", got, want)
	}
	if got, want := read(t, dir, SecretsFile), "{\n  \"JWT_USER_SECRET\": \"a\\\"b\\\\c<d>&\",\n  \"SERVICE_KEY\": \"sk\"\n}"; got != want {
		t.Errorf("secrets.json = %q, want %q", got, want)
	}
	for name, want := range map[string]os.FileMode{DevVarsFile: 0o600, SecretsFile: 0o600, ".edgebase": 0o700} {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	got := load(t, dir)
	if want := map[string]string{"SERVICE_KEY": "sk", "JWT_USER_SECRET": `a"b\c<d>&`}; !maps.Equal(got, want) {
		t.Errorf("Load after Save = %v", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".edgevault-tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestSaveMerges(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, DevVarsFile, "# my comment\nX=1\nSERVICE_KEY=old\n\nY = 2 \n", 0o644)
	write(t, dir, SecretsFile, "{\"Z\": \"z\", \"SERVICE_KEY\": \"old\"}\n", 0o644)
	if err := New(dir).Save(context.Background(), map[string]string{"SERVICE_KEY": "new", "NEW_B": "b", "NEW_A": "a"}); err != nil {
		t.Fatal(err)
	}
	if got, want := read(t, dir, DevVarsFile), Header+"\nX=1\nSERVICE_KEY=new\nY=2\nNEW_A=a\nNEW_B=b\n"; got != want {
		t.Errorf(".dev.vars = %q, want %q", got, want)
	}
	var js map[string]string
	raw := read(t, dir, SecretsFile)
	if err := json.Unmarshal([]byte(raw), &js); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"Z": "z", "SERVICE_KEY": "new", "NEW_A": "a", "NEW_B": "b"}; !maps.Equal(js, want) {
		t.Errorf("secrets.json = %v", js)
	}
	if !strings.HasPrefix(raw, "{\n  \"Z\": \"z\",\n  \"SERVICE_KEY\": \"new\",\n  \"NEW_A\"") {
		t.Errorf("secrets.json key order not kept: %q", raw)
	}
	for _, name := range []string{DevVarsFile, SecretsFile} {
		fi, _ := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v after restore, want 0600", name, fi.Mode().Perm())
		}
	}
}

func TestSaveRefusesBadInput(t *testing.T) {
	for name, values := range map[string]map[string]string{
		"newline in value": {"A": "line1\nline2"},
		"CR in value":      {"A": "x\ry"},
		"space around":     {"A": " padded"},
		"equals in key":    {"A=B": "x"},
		"comment key":      {"#A": "x"},
		"empty key":        {"": "x"},
		"key with newline": {"A\nB": "x"},
		"key with space":   {"A ": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			values["GOOD"] = "fine"
			if err := New(dir).Save(context.Background(), values); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(filepath.Join(dir, DevVarsFile)); err == nil {
				t.Fatal("wrote .dev.vars despite the error")
			}
		})
	}
	// An existing secrets.json that is not an object of strings is left
	// alone rather than overwritten.
	dir := t.TempDir()
	write(t, dir, SecretsFile, `{"N": 5}`, 0o600)
	if err := New(dir).Save(context.Background(), map[string]string{"A": "b"}); err == nil {
		t.Fatal("merged into an invalid secrets.json")
	}
	if got := read(t, dir, SecretsFile); got != `{"N": 5}` {
		t.Fatalf("invalid secrets.json rewritten: %q", got)
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := New(t.TempDir())
	if _, err := s.Load(ctx); err == nil {
		t.Error("Load ignored a canceled ctx")
	}
	if err := s.Save(ctx, map[string]string{"A": "b"}); err == nil {
		t.Error("Save ignored a canceled ctx")
	}
}
