package repository

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// fakeWrapper wraps with its own AES-GCM key and the repository id as
// additional data, as KMS does with a key and an encryption context; the
// real adapter (pkg/repository/kms) is tested against moto.
type fakeWrapper struct {
	id      string
	s       sealer
	wrapErr error // returned by Wrap when set
	unwrap  error // returned by Unwrap when set
	unwraps int   // calls of Unwrap
}

func newFakeWrapper(t *testing.T, id string) *fakeWrapper {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	s, err := newSealer(k)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeWrapper{id: id, s: s}
}

func (w *fakeWrapper) Wrap(_ context.Context, repo ID, key []byte) ([]byte, string, error) {
	if w.wrapErr != nil {
		return nil, "", w.wrapErr
	}
	b, err := w.s.seal(nil, key, repo[:])
	return b, w.id, err
}

func (w *fakeWrapper) Unwrap(_ context.Context, repo ID, wrapped []byte) ([]byte, error) {
	w.unwraps++
	if w.unwrap != nil {
		return nil, w.unwrap
	}
	k, err := w.s.open(nil, wrapped, repo[:])
	if err != nil {
		return nil, errors.Join(ErrWrongKey, err)
	}
	return k, nil
}

func storedKeyFiles(t *testing.T, dir string) map[string]map[string]any {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		out[n] = m
	}
	return out
}

// kmsKeyFile is the path of the one kms key file in dir.
func kmsKeyFile(t *testing.T, dir string) (string, map[string]any) {
	t.Helper()
	for n, m := range storedKeyFiles(t, dir) {
		if m["kdf"] == "kms" {
			return n, m
		}
	}
	t.Fatal("no kms key file")
	return "", nil
}

func rewriteJSON(t *testing.T, path string, m map[string]any) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipByte changes byte i of a base64 JSON field.
func flipByte(t *testing.T, v any, i int) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(v.(string))
	if err != nil {
		t.Fatal(err)
	}
	b[i] ^= 0x01
	return base64.StdEncoding.EncodeToString(b)
}

func saveSomething(t *testing.T, r *Repository) ChunkList {
	t.Helper()
	l, err := r.SaveBytes(context.Background(), []byte("envelope"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveSnapshot(context.Background(), &Snapshot{}); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestKMSKeyFile: a repository created with a key wrapper only has one
// kms key file of the documented shape, opens with the wrapper, refuses a
// passphrase (naming the KMS key) and another wrapper (ErrWrongKey),
// writing nothing.
func TestKMSKeyFile(t *testing.T) {
	ctx := context.Background()
	store, dir := newStore(t)
	w := newFakeWrapper(t, "arn:aws:kms:us-east-1:111122223333:key/one")
	r, err := InitWith(ctx, store, Credentials{Wrapper: w}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	l := saveSomething(t, r)

	files := storedKeyFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("%d key files, want 1", len(files))
	}
	_, kf := kmsKeyFile(t, dir)
	for _, f := range []string{"kdf", "keyId", "wrapped", "created", "data"} {
		if _, ok := kf[f]; !ok {
			t.Errorf("kms key file lacks %q: %v", f, kf)
		}
	}
	for _, f := range []string{"n", "r", "p", "salt"} {
		if _, ok := kf[f]; ok {
			t.Errorf("kms key file has scrypt field %q", f)
		}
	}
	if kf["keyId"] != w.id {
		t.Errorf("keyId %v, want %s", kf["keyId"], w.id)
	}

	r2, err := OpenWith(ctx, store, Credentials{Wrapper: w})
	if err != nil {
		t.Fatal(err)
	}
	if got := load(t, r2, l); string(got) != "envelope" {
		t.Fatalf("loaded %q", got)
	}

	before := listKeys(t, store)
	_, err = Open(ctx, store, testPass)
	if !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), w.id) {
		t.Errorf("a passphrase on a KMS repository: %v, want ErrWrongPassphrase naming %s", err, w.id)
	}
	_, err = OpenWith(ctx, store, Credentials{Wrapper: newFakeWrapper(t, "arn:aws:kms:us-east-1:111122223333:key/two")})
	if !errors.Is(err, ErrWrongKey) {
		t.Errorf("another key: %v, want ErrWrongKey", err)
	}
	t.Logf("another key: %v", err)
	_, err = OpenWith(ctx, store, Credentials{Wrapper: newFakeWrapper(t, "two"), Passphrase: "nope"})
	if !errors.Is(err, ErrWrongKey) || !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("another key and a wrong passphrase: %v, want both sentinels", err)
	}
	if after := listKeys(t, store); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("a failed open changed the store:\n%v\n%v", before, after)
	}
}

// TestKMSAndPassphrase: a repository with a kms and a passphrase key file
// opens with either; AddKey adds break-glass passphrases and more KMS keys.
func TestKMSAndPassphrase(t *testing.T) {
	ctx := context.Background()
	store, dir := newStore(t)
	w := newFakeWrapper(t, "one")
	r, err := InitWith(ctx, store, Credentials{Wrapper: w, Passphrase: testPass}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	l := saveSomething(t, r)
	if n := len(storedKeyFiles(t, dir)); n != 2 {
		t.Fatalf("%d key files, want 2", n)
	}
	opens := func(what string, c Credentials) {
		t.Helper()
		r, err := OpenWith(ctx, store, c)
		if err != nil {
			t.Fatalf("open with %s: %v", what, err)
		}
		if got := load(t, r, l); string(got) != "envelope" {
			t.Fatalf("open with %s loaded %q", what, got)
		}
	}
	opens("the wrapper", Credentials{Wrapper: w})
	opens("the passphrase", Credentials{Passphrase: testPass})
	opens("a wrong wrapper and the passphrase", Credentials{Wrapper: newFakeWrapper(t, "two"), Passphrase: testPass})
	// KMS unreachable: a passphrase given too still opens.
	down := &fakeWrapper{id: "one", unwrap: errors.New("dial tcp: connection refused")}
	opens("an unreachable wrapper and the passphrase", Credentials{Wrapper: down, Passphrase: testPass})

	// A KMS-only repository gains a break-glass passphrase and a second
	// KMS key.
	store2, _ := newStore(t)
	r2, err := InitWith(ctx, store2, Credentials{Wrapper: w}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	w2 := newFakeWrapper(t, "two")
	if err := r2.AddKey(ctx, Credentials{Passphrase: "break glass", Wrapper: w2}); err != nil {
		t.Fatal(err)
	}
	for what, c := range map[string]Credentials{"first key": {Wrapper: w}, "second key": {Wrapper: w2}, "passphrase": {Passphrase: "break glass"}} {
		if _, err := OpenWith(ctx, store2, c); err != nil {
			t.Errorf("after AddKey, open with the %s: %v", what, err)
		}
	}
	if err := r2.AddKey(ctx, Credentials{}); err == nil {
		t.Error("AddKey with no credentials succeeded")
	}
}

// TestKMSFailsClosed: a wrapper that cannot wrap, or cannot unwrap what it
// wrapped, fails Init with nothing written; a changed wrapped key, a
// wrapped key moved from another repository and an outage fail Open with
// a clear error; a changed sealed part is corruption.
func TestKMSFailsClosed(t *testing.T) {
	ctx := context.Background()
	for name, w := range map[string]*fakeWrapper{
		"wrap refused": {id: "x", wrapErr: errors.Join(ErrWrongKey, errors.New("AccessDeniedException"))},
		"unwrap refused": func() *fakeWrapper {
			w := newFakeWrapper(t, "x")
			w.unwrap = errors.Join(ErrWrongKey, errors.New("no decrypt"))
			return w
		}(),
	} {
		store, _ := newStore(t)
		_, err := InitWith(ctx, store, Credentials{Wrapper: w, Passphrase: testPass}, testOptions)
		if !errors.Is(err, ErrWrongKey) {
			t.Errorf("%s: init = %v, want ErrWrongKey", name, err)
		}
		if keys := listKeys(t, store); len(keys) != 0 {
			t.Errorf("%s: init wrote %v", name, keys)
		}
	}

	w := newFakeWrapper(t, "one")
	newRepo := func() (pipeline.BlobStore, string) {
		store, dir := newStore(t)
		if _, err := InitWith(ctx, store, Credentials{Wrapper: w}, testOptions); err != nil {
			t.Fatal(err)
		}
		return store, dir
	}

	// One changed byte of the wrapped key.
	store, dir := newRepo()
	path, kf := kmsKeyFile(t, dir)
	kf["wrapped"] = flipByte(t, kf["wrapped"], 10)
	rewriteJSON(t, path, kf)
	if _, err := OpenWith(ctx, store, Credentials{Wrapper: w}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("changed wrapped key: %v, want ErrWrongKey", err)
	}

	// Another repository's key file, wrapped by the same key: the
	// repository id bound in the wrapping refuses it.
	storeA, dirA := newRepo()
	_, dirB := newRepo()
	pathA, _ := kmsKeyFile(t, dirA)
	_, kfB := kmsKeyFile(t, dirB)
	if err := os.Remove(pathA); err != nil {
		t.Fatal(err)
	}
	rewriteJSON(t, pathA, kfB)
	if _, err := OpenWith(ctx, storeA, Credentials{Wrapper: w}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("a key file from another repository: %v, want ErrWrongKey", err)
	}

	// An outage is not a wrong key: Open fails with it, without trying
	// the other KMS key files.
	store, _ = newStore(t)
	r, err := InitWith(ctx, store, Credentials{Wrapper: w}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(ctx, Credentials{Wrapper: newFakeWrapper(t, "two")}); err != nil {
		t.Fatal(err)
	}
	down := &fakeWrapper{id: "one", unwrap: errors.New("dial tcp: connection refused")}
	if _, err := OpenWith(ctx, store, Credentials{Wrapper: down}); err == nil || errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("unreachable wrapper: %v, want the outage, not ErrWrongKey", err)
	}
	if down.unwraps != 1 {
		t.Errorf("unreachable wrapper: %d unwraps, want 1 (stop at the outage)", down.unwraps)
	}

	// The sealed part changed, the wrapped key intact.
	store, dir = newRepo()
	path, kf = kmsKeyFile(t, dir)
	kf["data"] = flipByte(t, kf["data"], 20)
	rewriteJSON(t, path, kf)
	if _, err := OpenWith(ctx, store, Credentials{Wrapper: w}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("changed sealed part: %v, want ErrCorrupt", err)
	}

	if _, err := InitWith(ctx, store, Credentials{}, testOptions); err == nil {
		t.Error("init with no credentials succeeded")
	}
	if _, err := OpenWith(ctx, store, Credentials{Passphrase: sensitive.String("")}); err == nil {
		t.Error("open with no credentials succeeded")
	}
}
