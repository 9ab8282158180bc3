package devvars

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/edgevault/edgevault/pkg/secrets"
)

var _ secrets.Store = (*Store)(nil)

// File names relative to the project directory, and the first line of a
// restored .dev.vars.
const (
	DevVarsFile = ".dev.vars"
	SecretsFile = ".edgebase/secrets.json"
	Header      = "# EdgeBase secrets (auto-restored)"
)

// coreKeys are the .dev.vars entries a backup takes.
var coreKeys = [...]string{"JWT_USER_SECRET", "JWT_ADMIN_SECRET", "SERVICE_KEY"}

// Store reads and writes the secrets of the project rooted at a directory.
type Store struct {
	dir string
}

// New returns the Store of the project directory dir (the official CLI
// uses its working directory).
func New(dir string) *Store { return &Store{dir: dir} }

func (s *Store) devVarsPath() string { return filepath.Join(s.dir, DevVarsFile) }
func (s *Store) secretsPath() string { return filepath.Join(s.dir, filepath.FromSlash(SecretsFile)) }

// Load implements secrets.Store with the CLI's create rule: the
// non-empty core keys of .dev.vars if there are any, else every entry of
// .edgebase/secrets.json, else nothing. secrets.json must be an object of
// strings (protocol 8.27).
func (s *Store) Load(ctx context.Context) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("devvars: load: %w", err)
	}
	vars, err := readDevVars(s.devVarsPath())
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range coreKeys {
		if v, ok := vars.get(k); ok && v != "" {
			out[k] = v
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	js, err := readSecretsJSON(s.secretsPath())
	if err != nil {
		return nil, err
	}
	for _, kv := range js {
		out[kv.k] = kv.v
	}
	return out, nil
}

// Save implements secrets.Store with the CLI's restore rule: values
// are merged into .dev.vars (rewritten as Header plus K=V lines; comments
// are lost) and into .edgebase/secrets.json (two-space indented JSON).
// Existing keys keep their place, new ones follow in sorted order. Both
// files are written 0600 via a temporary file and rename. Values are
// checked first, so a bad value writes nothing.
func (s *Store) Save(ctx context.Context, values map[string]string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("devvars: save: %w", err)
	}
	if len(values) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(values))
	for _, k := range keys {
		if err := checkEntry(k, values[k]); err != nil {
			return err
		}
	}
	vars, err := readDevVars(s.devVarsPath())
	if err != nil {
		return err
	}
	js, err := readSecretsJSON(s.secretsPath())
	if err != nil {
		return err
	}
	for _, k := range keys {
		vars = vars.set(k, values[k])
		js = js.set(k, values[k])
	}
	var dv bytes.Buffer
	dv.WriteString(Header + "\n")
	for _, kv := range vars {
		dv.WriteString(kv.k + "=" + kv.v + "\n")
	}
	errDev := writeFile(s.devVarsPath(), dv.Bytes())
	var errJSON error
	if err := os.MkdirAll(filepath.Dir(s.secretsPath()), 0o700); err != nil {
		errJSON = fmt.Errorf("devvars: save: %w", err)
	} else {
		errJSON = writeFile(s.secretsPath(), js.json())
	}
	return errors.Join(errDev, errJSON)
}

// checkEntry refuses what .dev.vars cannot hold or would read back
// differently; errors name the key, never the value.
func checkEntry(k, v string) error {
	switch {
	case k == "":
		return errors.New("devvars: save: empty key")
	case strings.ContainsAny(k, "=\r\n\x00") || strings.HasPrefix(k, "#") || trim(k) != k:
		return fmt.Errorf("devvars: save: key %q cannot be written to %s", k, DevVarsFile)
	case strings.ContainsAny(v, "\r\n\x00") || trim(v) != v:
		return fmt.Errorf("devvars: save: the value of %q has a line break, NUL or surrounding space that %s cannot keep", k, DevVarsFile)
	}
	return nil
}

// entries keeps insertion order like the CLI's JavaScript objects.
type entries []kv

type kv struct{ k, v string }

func (e entries) get(k string) (string, bool) {
	for _, x := range e {
		if x.k == k {
			return x.v, true
		}
	}
	return "", false
}

func (e entries) set(k, v string) entries {
	for i, x := range e {
		if x.k == k {
			e[i].v = v
			return e
		}
	}
	return append(e, kv{k, v})
}

// json renders e like JSON.stringify(obj, null, 2).
func (e entries) json() []byte {
	if len(e) == 0 {
		return []byte("{}")
	}
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, x := range e {
		b.WriteString("  " + quote(x.k) + ": " + quote(x.v))
		if i < len(e)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteByte('}')
	return b.Bytes()
}

func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// parseDevVars parses .dev.vars content as the CLI does: split at "\n",
// trim each line, skip blank lines and "#" comments, split at the first
// "=" (lines without a key before it are skipped), trim key and value; a
// repeated key keeps its first position and its last value.
func parseDevVars(content string) entries {
	var e entries
	for _, line := range strings.Split(content, "\n") {
		line = trim(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexByte(line, '='); i > 0 {
			e = e.set(trim(line[:i]), trim(line[i+1:]))
		}
	}
	return e
}

// trim removes what JavaScript's String.prototype.trim removes: Unicode
// white space and line terminators plus the BOM, but not U+0085.
func trim(s string) string {
	return strings.TrimFunc(s, func(r rune) bool {
		return r == '\uFEFF' || (unicode.IsSpace(r) && r != '\u0085')
	})
}

func readDevVars(path string) (entries, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("devvars: read %s: %w", DevVarsFile, err)
	}
	return parseDevVars(string(b)), nil
}

// readSecretsJSON reads secrets.json keeping key order; it must be a JSON
// object of strings. Errors name keys, never values.
func readSecretsJSON(path string) (entries, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("devvars: read %s: %w", SecretsFile, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("devvars: %s is not a JSON object", SecretsFile)
	}
	var e entries
	var bad []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("devvars: %s is not valid JSON", SecretsFile)
		}
		k, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("devvars: %s is not valid JSON", SecretsFile)
		}
		var v any
		_ = json.Unmarshal(raw, &v) // raw is one valid JSON value
		str, ok := v.(string)
		if !ok {
			bad = append(bad, k)
			continue
		}
		e = e.set(k, str)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("devvars: %s is not valid JSON", SecretsFile)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("devvars: %s has data after the object", SecretsFile)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("devvars: %s: values of %q are not strings", SecretsFile, bad)
	}
	return e, nil
}

// writeFile replaces path atomically with a 0600 file holding data.
func writeFile(path string, data []byte) error {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), ".edgevault-tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("devvars: write %s: %w", filepath.Base(path), err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("devvars: write %s: %w", filepath.Base(path), err)
	}
	return nil
}
