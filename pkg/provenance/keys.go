package provenance

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// Signature algorithms.
const (
	Ed25519   = "ed25519"
	ECDSAP256 = "ecdsa-p256-sha256" // ASN.1 DER signatures over SHA-256, as KMS ECC_NIST_P256 makes them
)

// Signer signs messages with a private key it may never reveal.
type Signer interface {
	Algorithm() string
	// KeyID is the hex SHA-256 of the public key's PKIX encoding.
	KeyID() string
	Sign(ctx context.Context, msg []byte) ([]byte, error)
}

// PublicKey is a key signatures are checked against (a --trust file).
type PublicKey struct {
	key crypto.PublicKey
	id  string
}

// KeyID returns the hex SHA-256 of the key's PKIX encoding.
func (k PublicKey) KeyID() string { return k.id }

// Algorithm returns the signature algorithm the key verifies.
func (k PublicKey) Algorithm() string {
	if _, ok := k.key.(ed25519.PublicKey); ok {
		return Ed25519
	}
	return ECDSAP256
}

// Verify checks sig over msg with algorithm alg.
func (k PublicKey) Verify(alg string, msg, sig []byte) bool {
	switch pk := k.key.(type) {
	case ed25519.PublicKey:
		return alg == Ed25519 && ed25519.Verify(pk, msg, sig)
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(msg)
		return alg == ECDSAP256 && ecdsa.VerifyASN1(pk, sum[:], sig)
	}
	return false
}

// ParsePublicKey reads a PKIX public key, PEM ("PUBLIC KEY") or DER, of
// type Ed25519 or ECDSA P-256.
func ParsePublicKey(b []byte) (PublicKey, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return PublicKey{}, fmt.Errorf("provenance: a %q PEM block is not a public key", blk.Type)
		}
		der = blk.Bytes
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return PublicKey{}, fmt.Errorf("provenance: parse public key: %w", err)
	}
	switch pk := pub.(type) {
	case ed25519.PublicKey:
	case *ecdsa.PublicKey:
		if pk.Curve != elliptic.P256() {
			return PublicKey{}, errors.New("provenance: an ECDSA public key must be on P-256")
		}
	default:
		return PublicKey{}, fmt.Errorf("provenance: unsupported public key type %T", pub)
	}
	return PublicKey{key: pub, id: keyID(der)}, nil
}

// ReadPublicKeyFile reads a public key file (see ParsePublicKey).
func ReadPublicKeyFile(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("provenance: read public key: %w", err)
	}
	k, err := ParsePublicKey(b)
	if err != nil {
		return k, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// EncodePublicKey writes pub as a PEM "PUBLIC KEY" block.
func EncodePublicKey(w io.Writer, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("provenance: encode public key: %w", err)
	}
	return pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func keyID(pkixDER []byte) string {
	sum := sha256.Sum256(pkixDER)
	return hex.EncodeToString(sum[:])
}

// KeySigner signs with an Ed25519 private key held in memory (a key file).
type KeySigner struct {
	priv ed25519.PrivateKey
	id   string
}

var _ Signer = (*KeySigner)(nil)

// Algorithm implements Signer.
func (s *KeySigner) Algorithm() string { return Ed25519 }

// KeyID implements Signer.
func (s *KeySigner) KeyID() string { return s.id }

// Sign implements Signer.
func (s *KeySigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, msg), nil
}

// Public returns the signer's public key.
func (s *KeySigner) Public() PublicKey {
	pub := s.priv.Public()
	return PublicKey{key: pub, id: s.id}
}

func newKeySigner(priv ed25519.PrivateKey) (*KeySigner, error) {
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	return &KeySigner{priv: priv, id: keyID(der)}, nil
}

// GenerateKey makes a new Ed25519 key pair and writes the private key
// (PKCS #8 PEM) to privPath with mode 0600, refusing to overwrite a file,
// and the public key (PKIX PEM) to pubPath.
func GenerateKey(privPath, pubPath string) (*KeySigner, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("provenance: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("provenance: encode private key: %w", err)
	}
	if err := writeNew(privPath, 0o600, func(w io.Writer) error {
		return pem.Encode(w, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, 0o644, func(w io.Writer) error { return EncodePublicKey(w, priv.Public()) }); err != nil {
		os.Remove(privPath)
		return nil, err
	}
	return newKeySigner(priv)
}

func writeNew(path string, mode os.FileMode, fill func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("provenance: %w", err)
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("provenance: write %s: %w", path, err)
	}
	return nil
}

// ReadKeyFile reads an Ed25519 private key (PKCS #8 PEM, as GenerateKey
// writes it). A key file others can read is refused.
func ReadKeyFile(path string) (*KeySigner, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("provenance: signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("provenance: signing key %s has mode %04o; it must not be readable by others (chmod 600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("provenance: signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("provenance: signing key %s is not a PEM \"PRIVATE KEY\"", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("provenance: signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("provenance: signing key %s is a %T, not Ed25519", path, k)
	}
	return newKeySigner(priv)
}
