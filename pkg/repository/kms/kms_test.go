package kms_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/repository"
	kmswrap "github.com/edgevault/edgevault/pkg/repository/kms"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

// cheap keeps the passphrase KDF fast.
var cheap = repository.Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1}

func client(t *testing.T) *kms.Client {
	t.Helper()
	return motoserver.Clients(t).KMS()
}

func createKey(t *testing.T, c *kms.Client, spec types.KeySpec, usage types.KeyUsageType) string {
	t.Helper()
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

func symmetricKey(t *testing.T, c *kms.Client) string {
	t.Helper()
	return createKey(t, c, types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt)
}

func wrapper(t *testing.T, c *kms.Client, key string) *kmswrap.Wrapper {
	t.Helper()
	w, err := kmswrap.New(c, key)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newStore(t *testing.T) (*fs.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dir
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKMSRepository: a repository whose key is wrapped by a KMS key opens
// with that key and refuses another one, with ErrWrongKey and nothing
// written; its key file names the key's ARN.
func TestKMSRepository(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	keyA, keyB := symmetricKey(t, c), symmetricKey(t, c)
	store, dir := newStore(t)
	r, err := repository.InitWith(ctx, store, repository.Credentials{Wrapper: wrapper(t, c, keyA)}, cheap)
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.SaveBytes(ctx, []byte("wrapped by KMS"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveSnapshot(ctx, &repository.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	keyFiles, _ := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if len(keyFiles) != 1 {
		t.Fatalf("%d key files", len(keyFiles))
	}
	b, _ := os.ReadFile(keyFiles[0])
	if !strings.Contains(string(b), `"kdf":"kms"`) || !strings.Contains(string(b), `"keyId":"`+keyA+`"`) {
		t.Errorf("key file %s", b)
	}

	r2, err := repository.OpenWith(ctx, store, repository.Credentials{Wrapper: wrapper(t, c, keyA)})
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	if err := r2.LoadStream(ctx, l, &got); err != nil || got.String() != "wrapped by KMS" {
		t.Fatalf("load: %q %v", got.String(), err)
	}

	before := files(t, dir)
	_, err = repository.OpenWith(ctx, store, repository.Credentials{Wrapper: wrapper(t, c, keyB)})
	if !errors.Is(err, repository.ErrWrongKey) {
		t.Fatalf("open with another KMS key: %v, want ErrWrongKey", err)
	}
	t.Logf("another KMS key: %v", err)
	if _, err := repository.Open(ctx, store, "a passphrase"); !errors.Is(err, repository.ErrWrongPassphrase) || !strings.Contains(err.Error(), keyA) {
		t.Errorf("a passphrase on a KMS-only repository: %v", err)
	}
	if after := files(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("a failed open wrote:\n%v\n%v", before, after)
	}
}

// TestKMSAndPassphraseRepository: with a KMS key file and a passphrase key
// file the repository opens either way, and AddKey adds a second KMS key.
func TestKMSAndPassphraseRepository(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	keyA, keyB := symmetricKey(t, c), symmetricKey(t, c)
	store, _ := newStore(t)
	r, err := repository.InitWith(ctx, store, repository.Credentials{Wrapper: wrapper(t, c, keyA), Passphrase: "break glass"}, cheap)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(ctx, repository.Credentials{Wrapper: wrapper(t, c, keyB)}); err != nil {
		t.Fatal(err)
	}
	alias := "alias/" + motoserver.Name(t, "edgevault")
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyA)}); err != nil {
		t.Fatal(err)
	}
	for what, cr := range map[string]repository.Credentials{
		"KMS key A":  {Wrapper: wrapper(t, c, keyA)},
		"alias of A": {Wrapper: wrapper(t, c, alias)},
		"KMS key B":  {Wrapper: wrapper(t, c, keyB)},
		"passphrase": {Passphrase: "break glass"},
	} {
		if o, err := repository.OpenWith(ctx, store, cr); err != nil || o.ID() != r.ID() {
			t.Errorf("open with the %s: %v", what, err)
		}
	}
}

// TestKMSRefusesBeforeWriting: a key that does not exist and a wrapped
// key presented for another repository or changed are ErrWrongKey; Init
// writes nothing; an unreachable KMS is not reported as a wrong key. (moto
// encrypts with signing and disabled keys, which KMS refuses with
// InvalidKeyUsageException and DisabledException, classified alike.)
func TestKMSRefusesBeforeWriting(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	for name, key := range map[string]string{
		"missing key":   "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
		"missing alias": "alias/" + motoserver.Name(t, "none"),
	} {
		store, dir := newStore(t)
		_, err := repository.InitWith(ctx, store, repository.Credentials{Wrapper: wrapper(t, c, key), Passphrase: "p"}, cheap)
		if !errors.Is(err, repository.ErrWrongKey) {
			t.Errorf("%s: init = %v, want ErrWrongKey", name, err)
		}
		if f := files(t, dir); len(f) != 0 {
			t.Errorf("%s: init wrote %v", name, f)
		}
	}

	// The encryption context binds the repository id.
	w := wrapper(t, c, symmetricKey(t, c))
	var repoA, repoB repository.ID
	repoA[0], repoB[0] = 1, 2
	wrapped, _, err := w.Wrap(ctx, repoA, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Unwrap(ctx, repoA, wrapped); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Unwrap(ctx, repoB, wrapped); !errors.Is(err, repository.ErrWrongKey) {
		t.Errorf("unwrap for another repository: %v, want ErrWrongKey", err)
	}
	wrapped[len(wrapped)-1] ^= 1
	if _, err := w.Unwrap(ctx, repoA, wrapped); !errors.Is(err, repository.ErrWrongKey) {
		t.Errorf("unwrap of a changed blob: %v, want ErrWrongKey", err)
	}

	// Nothing listens on a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close()
	down := kms.NewFromConfig(motoserver.Clients(t).AWS(), func(o *kms.Options) {
		o.BaseEndpoint = aws.String(dead)
		o.Retryer = aws.NopRetryer{}
	})
	if _, err := wrapper(t, down, "k").Unwrap(ctx, repoA, wrapped); err == nil || errors.Is(err, repository.ErrWrongKey) {
		t.Errorf("unreachable KMS: %v, want an error that is not ErrWrongKey", err)
	}
}
