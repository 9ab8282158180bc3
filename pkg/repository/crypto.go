package repository

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// ID names a chunk (HMAC-SHA256 of its plaintext) or a stored file (SHA-256
// of its bytes).
type ID [32]byte

// String is the lowercase hex spelling used in keys and JSON.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// IsZero reports whether id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID reads 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("repository: id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("repository: id %q: %w", s, err)
	}
	return id, nil
}

// hashID is the SHA-256 of b: the name of a stored file.
func hashID(b []byte) ID { return sha256.Sum256(b) }

// Additional data that binds a sealed item to its role.
var (
	aadPackHeader = []byte("edgevault pack header")
	aadIndex      = []byte("edgevault index")
	aadSnapshot   = []byte("edgevault snapshot")
	aadConfig     = []byte("edgevault config")
	aadKey        = []byte("edgevault key")
)

const nonceSize = 12

// sealOverhead is what sealing adds to a plaintext.
const sealOverhead = nonceSize + 16

// errAuth is returned when a sealed item does not open: wrong key, or
// changed bytes.
var errAuth = errors.New("authentication failed")

// masterKey is the repository key.
type masterKey struct {
	Encrypt []byte `json:"encrypt"`
	MAC     []byte `json:"mac"`
}

func newMasterKey() (masterKey, error) {
	k := masterKey{Encrypt: make([]byte, 32), MAC: make([]byte, 32)}
	if _, err := rand.Read(k.Encrypt); err != nil {
		return k, err
	}
	if _, err := rand.Read(k.MAC); err != nil {
		return k, err
	}
	return k, nil
}

// sealer seals and opens with one AES-256-GCM key. It is safe for
// concurrent use.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (sealer, error) {
	if len(key) != 32 {
		return sealer{}, fmt.Errorf("repository: key of %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealer{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealer{}, err
	}
	return sealer{aead: aead}, nil
}

// seal appends nonce ‖ ciphertext ‖ tag of plain to dst.
func (s sealer) seal(dst, plain, aad []byte) ([]byte, error) {
	var nonce [nonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	dst = append(dst, nonce[:]...)
	return s.aead.Seal(dst, nonce[:], plain, aad), nil
}

// open appends the plaintext of sealed to dst.
func (s sealer) open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("%w: %d bytes is too short", errAuth, len(sealed))
	}
	out, err := s.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], aad)
	if err != nil {
		return nil, errAuth
	}
	return out, nil
}

// chunkIDer computes chunk ids. Not safe for concurrent use.
type chunkIDer struct{ mac hash.Hash }

func newChunkIDer(key []byte) *chunkIDer { return &chunkIDer{mac: hmac.New(sha256.New, key)} }

func (c *chunkIDer) id(b []byte) ID {
	c.mac.Reset()
	c.mac.Write(b)
	var id ID
	c.mac.Sum(id[:0])
	return id
}
