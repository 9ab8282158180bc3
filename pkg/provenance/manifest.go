package provenance

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/edgevault/edgevault/pkg/archive"
)

// Errors Verify returns, for callers to branch on.
var (
	ErrUnsigned     = errors.New("provenance: the manifest is not signed")
	ErrUntrustedKey = errors.New("provenance: the manifest is signed by a key that is not trusted")
	ErrBadSignature = errors.New("provenance: the manifest's signature does not match its content")
	ErrChain        = errors.New("provenance: the manifest chain is broken")
)

// signingDomain keeps a manifest signature from being valid for anything
// else the same key signs (drill reports).
const signingDomain = "edgevault manifest v1\n"

// SigningBytes are the bytes a manifest's signature covers: a domain
// prefix and the hex SHA-256 of the manifest's JSON without its
// signature. Short, so a KMS key signs them as a RAW message (at most 4
// KiB; a manifest with many parts is longer). The manifest's fields are a
// Go struct, so the encoding is canonical; a field the reader does not
// know is dropped on decoding, and the signature fails: closed, not open.
func SigningBytes(m archive.Manifest) ([]byte, error) {
	return signedJSON(signingDomain, withoutSignature(m))
}

func withoutSignature(m archive.Manifest) archive.Manifest {
	m.Signature = nil
	return m
}

func signedJSON(domain string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("provenance: encode: %w", err)
	}
	sum := sha256.Sum256(b)
	return []byte(domain + hex.EncodeToString(sum[:])), nil
}

// Digest is the hex SHA-256 identifying a manifest, signature included:
// what the next manifest of the same source records as Previous.
func Digest(m archive.Manifest) string {
	b, err := json.Marshal(m)
	if err != nil {
		// A Manifest holds only strings, numbers and a time.
		panic(fmt.Sprintf("provenance: encode manifest: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Sign sets m's signature made by s.
func Sign(ctx context.Context, m *archive.Manifest, s Signer) error {
	msg, err := SigningBytes(*m)
	if err != nil {
		return err
	}
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		return fmt.Errorf("provenance: sign manifest of %s: %w", m.Archive, err)
	}
	m.Signature = &archive.ManifestSignature{Algorithm: s.Algorithm(), KeyID: s.KeyID(), Value: base64.StdEncoding.EncodeToString(sig)}
	return nil
}

// Verify checks m's signature against the trusted keys. An unsigned
// manifest, one signed by another key, and one changed after signing are
// each refused with their own error.
func Verify(m archive.Manifest, trusted ...PublicKey) error {
	return verify(m.Archive, m.Signature, func() ([]byte, error) { return SigningBytes(m) }, trusted)
}

func verify(what string, sig *archive.ManifestSignature, msg func() ([]byte, error), trusted []PublicKey) error {
	if sig == nil {
		return fmt.Errorf("%w: %s has no signature, and a trusted key was given", ErrUnsigned, what)
	}
	var key *PublicKey
	ids := make([]string, 0, len(trusted))
	for i := range trusted {
		ids = append(ids, short(trusted[i].id))
		if trusted[i].id == sig.KeyID {
			key = &trusted[i]
		}
	}
	if key == nil {
		return fmt.Errorf("%w: %s is signed by key %s, the trusted keys are %v", ErrUntrustedKey, what, short(sig.KeyID), ids)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Value)
	if err != nil {
		return fmt.Errorf("%w: %s: the signature is not base64", ErrBadSignature, what)
	}
	b, err := msg()
	if err != nil {
		return err
	}
	if !key.Verify(sig.Algorithm, b, raw) {
		return fmt.Errorf("%w: %s was changed after it was signed by key %s (or the signature is corrupt)", ErrBadSignature, what, short(sig.KeyID))
	}
	return nil
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// reportDomain separates drill report signatures from manifest ones.
const reportDomain = "edgevault drill report v1\n"

// SignReport signs a drill report: v is the report with its signature
// field empty, encoded as JSON.
func SignReport(ctx context.Context, v any, s Signer) (*archive.ManifestSignature, error) {
	msg, err := signedJSON(reportDomain, v)
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("provenance: sign drill report: %w", err)
	}
	return &archive.ManifestSignature{Algorithm: s.Algorithm(), KeyID: s.KeyID(), Value: base64.StdEncoding.EncodeToString(sig)}, nil
}

// VerifyReport checks a drill report's signature (v without it).
func VerifyReport(what string, v any, sig *archive.ManifestSignature, trusted ...PublicKey) error {
	return verify(what, sig, func() ([]byte, error) { return signedJSON(reportDomain, v) }, trusted)
}
