package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/scrypt"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Key file kinds (the "kdf" field).
const (
	kdfScrypt = "scrypt"
	kdfKMS    = "kms"
)

// KeyWrapper wraps the 32-byte key that seals a key file's data with a key
// kept elsewhere, such as a KMS key (envelope encryption). The repository
// id is passed so an implementation can bind the wrapped key to it (KMS:
// the encryption context): a wrapped key copied into another repository's
// key file then does not unwrap.
type KeyWrapper interface {
	// Wrap encrypts key for repository repo. keyID names the wrapping key
	// (a KMS key ARN); it is recorded in the key file for people to read.
	Wrap(ctx context.Context, repo ID, key []byte) (wrapped []byte, keyID string, err error)
	// Unwrap decrypts what Wrap returned. When this wrapper cannot unwrap
	// it (another key, access denied, changed bytes, another repository)
	// the error wraps ErrWrongKey; any other error (network, throttling)
	// does not, and Open fails with it instead of trying further.
	Unwrap(ctx context.Context, repo ID, wrapped []byte) ([]byte, error)
}

// Credentials unlock a repository: a passphrase, a key wrapper, or both.
type Credentials struct {
	Passphrase sensitive.String
	Wrapper    KeyWrapper
}

func (c Credentials) validate() error {
	if c.Passphrase.IsZero() && c.Wrapper == nil {
		return errors.New("repository: no passphrase and no key wrapper")
	}
	return nil
}

// keyFile is a keys/<id> file. A scrypt file has n, r, p and salt; a kms
// file keyId and wrapped.
type keyFile struct {
	KDF     string    `json:"kdf"`
	N       int       `json:"n,omitempty"`
	R       int       `json:"r,omitempty"`
	P       int       `json:"p,omitempty"`
	Salt    []byte    `json:"salt,omitempty"`
	KeyID   string    `json:"keyId,omitempty"`
	Wrapped []byte    `json:"wrapped,omitempty"`
	Created time.Time `json:"created"`
	Data    []byte    `json:"data"`
}

// AddKey writes one more key file per credential in c: a passphrase for
// break-glass access to a KMS repository, or a KMS key for a passphrase
// one. Existing key files are left as they are.
func (r *Repository) AddKey(ctx context.Context, c Credentials) error {
	if err := c.validate(); err != nil {
		return err
	}
	kfs, err := r.keyFiles(ctx, c)
	if err != nil {
		return err
	}
	for _, kf := range kfs {
		if err := putJSON(ctx, r.store, prefixKeys, kf); err != nil {
			return err
		}
	}
	return nil
}

// keyFiles builds the key files of c for r's master key, writing nothing:
// a wrapper that fails leaves the store untouched.
func (r *Repository) keyFiles(ctx context.Context, c Credentials) ([]keyFile, error) {
	var kfs []keyFile
	if c.Wrapper != nil {
		kf, err := wrapKMS(ctx, c.Wrapper, r.id, r.mk, r.now())
		if err != nil {
			return nil, err
		}
		kfs = append(kfs, kf)
	}
	if !c.Passphrase.IsZero() {
		kf, err := wrapScrypt(r.mk, c.Passphrase.Reveal(), r.kdf, r.now())
		if err != nil {
			return nil, err
		}
		kfs = append(kfs, kf)
	}
	return kfs, nil
}

func wrapScrypt(mk masterKey, passphrase string, o Options, now time.Time) (keyFile, error) {
	kf := keyFile{KDF: kdfScrypt, N: o.ScryptN, R: o.ScryptR, P: o.ScryptP, Salt: make([]byte, 32), Created: now.UTC()}
	if _, err := rand.Read(kf.Salt); err != nil {
		return kf, err
	}
	s, err := scryptSealer(kf, passphrase)
	if err != nil {
		return kf, err
	}
	return sealMasterKey(kf, s, mk)
}

// wrapKMS seals mk under a fresh 32-byte key and has w wrap that key.
// It unwraps the result before returning: a wrapper allowed to encrypt but
// not to decrypt would otherwise leave a key file nobody can open.
func wrapKMS(ctx context.Context, w KeyWrapper, repo ID, mk masterKey, now time.Time) (keyFile, error) {
	kf := keyFile{KDF: kdfKMS, Created: now.UTC()}
	kek := make([]byte, 32)
	defer clear(kek)
	if _, err := rand.Read(kek); err != nil {
		return kf, err
	}
	wrapped, keyID, err := w.Wrap(ctx, repo, kek)
	if err != nil {
		return kf, fmt.Errorf("repository: wrap the repository key: %w", err)
	}
	back, err := w.Unwrap(ctx, repo, wrapped)
	if err != nil {
		return kf, fmt.Errorf("repository: the key wrapped with %s does not unwrap: %w", keyID, err)
	}
	defer clear(back)
	if !bytes.Equal(back, kek) {
		return kf, fmt.Errorf("%w: the key wrapped with %s unwraps to other bytes", ErrWrongKey, keyID)
	}
	kf.KeyID, kf.Wrapped = keyID, wrapped
	s, err := newSealer(kek)
	if err != nil {
		return kf, err
	}
	return sealMasterKey(kf, s, mk)
}

func sealMasterKey(kf keyFile, s sealer, mk masterKey) (keyFile, error) {
	plain, err := json.Marshal(mk)
	if err != nil {
		return kf, err
	}
	defer clear(plain)
	kf.Data, err = s.seal(nil, plain, aadKey)
	return kf, err
}

func scryptSealer(kf keyFile, passphrase string) (sealer, error) {
	k, err := scrypt.Key([]byte(passphrase), kf.Salt, kf.N, kf.R, kf.P, 32)
	if err != nil {
		return sealer{}, fmt.Errorf("repository: scrypt: %w", err)
	}
	return newSealer(k)
}

// storedKey is a key file and its name.
type storedKey struct {
	name string
	kf   keyFile
}

// unlock finds the master key: the wrapper tries the kms key files first
// (no KDF cost), then the passphrase the scrypt ones. Either is enough, so
// a passphrase given too still opens while KMS is unreachable; when
// neither opens, the error carries both reasons.
func unlock(ctx context.Context, store pipeline.BlobStore, repo ID, c Credentials) (masterKey, error) {
	keys, err := readKeyFiles(ctx, store)
	if err != nil {
		return masterKey{}, err
	}
	var errKey error
	if c.Wrapper != nil {
		mk, ok, err := unlockKMS(ctx, keys, repo, c.Wrapper)
		if ok {
			return mk, nil
		}
		if c.Passphrase.IsZero() || errors.Is(err, ErrCorrupt) {
			return mk, err
		}
		errKey = err
	}
	mk, ok, err := unlockScrypt(keys, c.Passphrase.Reveal())
	if ok {
		return mk, nil
	}
	if errKey != nil {
		return masterKey{}, fmt.Errorf("%w; %w", errKey, err)
	}
	return masterKey{}, err
}

func readKeyFiles(ctx context.Context, store pipeline.BlobStore) ([]storedKey, error) {
	var keys []storedKey
	err := store.List(ctx, prefixKeys, func(info blob.Info) error {
		var kf keyFile
		if err := getJSON(ctx, store, info.Key, &kf); err != nil {
			return err
		}
		keys = append(keys, storedKey{name: info.Key, kf: kf})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repository: open: keys: %w", err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key files", ErrCorrupt)
	}
	return keys, nil
}

// unlockKMS tries every kms key file with w. A key file w cannot unwrap is
// skipped; any other failure of w ends the search (fail closed: an outage
// is not reported as a wrong key).
func unlockKMS(ctx context.Context, keys []storedKey, repo ID, w KeyWrapper) (masterKey, bool, error) {
	var (
		format string
		why    []any
	)
	for _, k := range keys {
		if k.kf.KDF != kdfKMS {
			continue
		}
		kek, err := w.Unwrap(ctx, repo, k.kf.Wrapped)
		if errors.Is(err, ErrWrongKey) {
			format += "; %s (wrapped with %s): %w"
			if len(why) == 0 {
				format = ": %s (wrapped with %s): %w"
			}
			why = append(why, k.name, k.kf.KeyID, err)
			continue
		}
		if err != nil {
			return masterKey{}, false, fmt.Errorf("repository: open: unwrap %s: %w", k.name, err)
		}
		s, err := newSealer(kek)
		clear(kek)
		if err != nil {
			return masterKey{}, false, fmt.Errorf("%w: key file %s: unwrapped key: %v", ErrCorrupt, k.name, err)
		}
		mk, err := openMasterKey(k, s)
		if errors.Is(err, errAuth) {
			// The wrapped key opened but the data does not: the file was
			// changed after it was written.
			return masterKey{}, false, fmt.Errorf("%w: key file %s does not open under its unwrapped key", ErrCorrupt, k.name)
		}
		return mk, err == nil, err
	}
	if len(why) == 0 {
		return masterKey{}, false, fmt.Errorf("%w: the repository has no KMS key file (%s)", ErrWrongKey, describeKeys(keys))
	}
	// Each reason wraps ErrWrongKey.
	return masterKey{}, false, fmt.Errorf("repository: no key file opens with the key wrapper"+format, why...)
}

// unlockScrypt tries every scrypt key file with passphrase.
func unlockScrypt(keys []storedKey, passphrase string) (masterKey, bool, error) {
	tried := false
	for _, k := range keys {
		if k.kf.KDF != kdfScrypt {
			continue
		}
		tried = true
		s, err := scryptSealer(k.kf, passphrase)
		if err != nil {
			return masterKey{}, false, fmt.Errorf("repository: key file %s: %w", k.name, err)
		}
		mk, err := openMasterKey(k, s)
		if errors.Is(err, errAuth) {
			continue // not this key
		}
		return mk, err == nil, err
	}
	if !tried {
		return masterKey{}, false, fmt.Errorf("%w: the repository has no passphrase key file (%s)", ErrWrongPassphrase, describeKeys(keys))
	}
	return masterKey{}, false, ErrWrongPassphrase
}

func openMasterKey(k storedKey, s sealer) (masterKey, error) {
	var mk masterKey
	plain, err := s.open(nil, k.kf.Data, aadKey)
	if err != nil {
		return mk, err
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &mk); err != nil || len(mk.Encrypt) != 32 || len(mk.MAC) != 32 {
		return mk, fmt.Errorf("%w: key file %s: not a repository key", ErrCorrupt, k.name)
	}
	return mk, nil
}

// describeKeys says what unlocks a repository, for an error message.
func describeKeys(keys []storedKey) string {
	var parts []string
	seen := map[string]bool{}
	for _, k := range keys {
		p := fmt.Sprintf("kdf %q", k.kf.KDF)
		switch k.kf.KDF {
		case kdfKMS:
			p = "KMS key " + k.kf.KeyID
		case kdfScrypt:
			p = "a passphrase"
		}
		if !seen[p] {
			seen[p] = true
			parts = append(parts, p)
		}
	}
	return "it opens with " + strings.Join(parts, ", ")
}
