package kms

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/edgevault/edgevault/pkg/provenance"
)

// Signer signs with a KMS key.
type Signer struct {
	client *kms.Client
	key    string
	pub    provenance.PublicKey
	der    []byte
}

var _ provenance.Signer = (*Signer)(nil)

// New checks that key (id, ARN or alias) is an ECC_NIST_P256 signing key
// and reads its public key.
func New(ctx context.Context, client *kms.Client, key string) (*Signer, error) {
	out, err := client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("kms: public key of %s: %w", key, err)
	}
	spec := string(out.KeySpec)
	if spec == "" {
		spec = string(out.CustomerMasterKeySpec) //nolint:staticcheck // older replies carry only this
	}
	if (spec != "" && spec != string(types.KeySpecEccNistP256)) || out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("kms: key %s is %s for %s; manifests need an ECC_NIST_P256 SIGN_VERIFY key", key, spec, out.KeyUsage)
	}
	pub, err := provenance.ParsePublicKey(out.PublicKey)
	if err == nil && pub.Algorithm() != provenance.ECDSAP256 {
		err = errors.New("not an ECDSA key")
	}
	if err != nil {
		return nil, fmt.Errorf("kms: public key of %s: %w; manifests need an ECC_NIST_P256 SIGN_VERIFY key", key, err)
	}
	return &Signer{client: client, key: aws.ToString(out.KeyId), pub: pub, der: out.PublicKey}, nil
}

// Algorithm implements provenance.Signer.
func (s *Signer) Algorithm() string { return provenance.ECDSAP256 }

// KeyID implements provenance.Signer: the public key's id, not the KMS
// key's ARN, so offline verifiers find it by the --trust file.
func (s *Signer) KeyID() string { return s.pub.KeyID() }

// PublicKey returns the key signatures verify against.
func (s *Signer) PublicKey() provenance.PublicKey { return s.pub }

// PublicKeyDER returns the PKIX encoding of the public key.
func (s *Signer) PublicKeyDER() []byte { return append([]byte(nil), s.der...) }

// Sign implements provenance.Signer. KMS hashes the RAW message itself
// (ECDSA_SHA_256); the signature is ASN.1 DER.
func (s *Signer) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	if len(msg) > 4096 {
		return nil, errors.New("kms: a RAW message is limited to 4096 bytes")
	}
	out, err := s.client.Sign(ctx, &kms.SignInput{KeyId: aws.String(s.key), Message: msg,
		MessageType: types.MessageTypeRaw, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil {
		return nil, fmt.Errorf("kms: sign with %s: %w", s.key, err)
	}
	return out.Signature, nil
}

// Verify asks KMS to check a signature, for callers that hold no copy of
// the public key.
func (s *Signer) Verify(ctx context.Context, msg, sig []byte) (bool, error) {
	out, err := s.client.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(s.key), Message: msg, Signature: sig,
		MessageType: types.MessageTypeRaw, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	var invalid *types.KMSInvalidSignatureException
	switch {
	case errors.As(err, &invalid):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("kms: verify with %s: %w", s.key, err)
	}
	return out.SignatureValid, nil
}
