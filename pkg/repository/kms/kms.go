package kms

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/edgevault/edgevault/pkg/repository"
)

// ContextKey names the repository id in the encryption context of every
// Encrypt and Decrypt.
const ContextKey = "edgevault-repository"

// Wrapper wraps keys with one KMS key.
type Wrapper struct {
	client *kms.Client
	key    string
}

var _ repository.KeyWrapper = (*Wrapper)(nil)

// New returns a wrapper using key (key id, key ARN, alias name or alias
// ARN) of a symmetric ENCRYPT_DECRYPT KMS key. It makes no call: the
// caller needs kms:Encrypt to create a key file and kms:Decrypt to open
// one, nothing else.
func New(client *kms.Client, key string) (*Wrapper, error) {
	if key == "" {
		return nil, errors.New("kms: no key id")
	}
	return &Wrapper{client: client, key: key}, nil
}

// Wrap implements repository.KeyWrapper; keyID is the KMS key's ARN.
func (w *Wrapper) Wrap(ctx context.Context, repo repository.ID, key []byte) ([]byte, string, error) {
	out, err := w.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(w.key), Plaintext: key,
		EncryptionContext: encryptionContext(repo), EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault})
	if err != nil {
		return nil, "", classify("encrypt", w.key, err)
	}
	return out.CiphertextBlob, aws.ToString(out.KeyId), nil
}

// Unwrap implements repository.KeyWrapper. Decrypt names the wrapper's key,
// so a key file wrapped by another key is refused even where the caller
// may use both.
func (w *Wrapper) Unwrap(ctx context.Context, repo repository.ID, wrapped []byte) ([]byte, error) {
	out, err := w.client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(w.key), CiphertextBlob: wrapped,
		EncryptionContext: encryptionContext(repo), EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault})
	if err != nil {
		return nil, classify("decrypt", w.key, err)
	}
	return out.Plaintext, nil
}

func encryptionContext(repo repository.ID) map[string]string {
	return map[string]string{ContextKey: repo.String()}
}

// wrongKey are the KMS errors that say this key cannot be used here: the
// caller should try another key file, or tell the user the key is wrong.
// Anything else (throttling, network, an internal error) is returned
// unclassified, after the SDK's retries.
var wrongKey = map[string]bool{
	"IncorrectKeyException":         true, // the ciphertext is of another key
	"InvalidCiphertextException":    true, // changed bytes, or another encryption context
	"AccessDeniedException":         true,
	"NotFoundException":             true,
	"DisabledException":             true,
	"KMSInvalidStateException":      true, // pending deletion, pending import
	"InvalidKeyUsageException":      true, // a signing key
	"UnsupportedOperationException": true,
}

func classify(op, key string, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) && wrongKey[api.ErrorCode()] {
		return fmt.Errorf("%w: kms: %s with %s: %w", repository.ErrWrongKey, op, key, err)
	}
	return fmt.Errorf("kms: %s with %s: %w", op, key, err)
}
