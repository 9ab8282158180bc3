package secretsmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/edgevault/edgevault/pkg/secrets"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

var _ secrets.Store = (*Store)(nil)

// ErrNotFound is returned (wrapped) when a secret, or its current value,
// does not exist.
var ErrNotFound = errors.New("secrets: not found")

// Manager reads single secret values.
type Manager struct {
	client *secretsmanager.Client
}

// New returns a Manager using client.
func New(client *secretsmanager.Client) (*Manager, error) {
	if client == nil {
		return nil, errors.New("secrets: nil client")
	}
	return &Manager{client: client}, nil
}

// GetString returns the current value of secret id (name or ARN). A binary
// secret is returned as its bytes; an empty value is an error because no
// credential is empty.
func (m *Manager) GetString(ctx context.Context, id string) (sensitive.String, error) {
	v, err := getValue(ctx, m.client, id)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", fmt.Errorf("secrets: get %s: the secret value is empty", id)
	}
	return sensitive.String(v), nil
}

func getValue(ctx context.Context, c *secretsmanager.Client, id string) (string, error) {
	if id == "" {
		return "", errors.New("secrets: empty secret id")
	}
	out, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		if isNotFound(err) {
			return "", fmt.Errorf("secrets: get %s: %w", id, ErrNotFound)
		}
		return "", fmt.Errorf("secrets: get %s: %w", id, err)
	}
	if out.SecretString != nil {
		return *out.SecretString, nil
	}
	return string(out.SecretBinary), nil
}

func isNotFound(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException"
}

// Store is a secrets.Store over one secret whose value is a JSON
// object of string values (the EdgeBase secrets of a deployment). The
// secret itself must exist; infrastructure creates it, possibly without a
// value.
type Store struct {
	client *secretsmanager.Client
	id     string
}

// NewStore returns the Store over secret id (name or ARN).
func NewStore(client *secretsmanager.Client, id string) (*Store, error) {
	if client == nil {
		return nil, errors.New("secrets: nil client")
	}
	if id == "" {
		return nil, errors.New("secrets: empty secret id")
	}
	return &Store{client: client, id: id}, nil
}

// Load implements secrets.Store. A secret without a value, or with
// an empty string, is an empty map; a missing secret wraps ErrNotFound.
func (s *Store) Load(ctx context.Context) (map[string]string, error) {
	v, err := getValue(ctx, s.client, s.id)
	if errors.Is(err, ErrNotFound) {
		// GetSecretValue says the same for "no such secret" and "no value
		// yet"; only the latter is an empty store.
		if _, derr := s.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(s.id)}); derr != nil {
			if isNotFound(derr) {
				return nil, err
			}
			return nil, fmt.Errorf("secrets: describe %s: %w", s.id, derr)
		}
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(s.id, v)
}

// decode parses a JSON object of strings; errors name keys, never values.
func decode(id, v string) (map[string]string, error) {
	if v == "" {
		return map[string]string{}, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v), &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("secrets: load %s: the value is not a JSON object", id)
	}
	out := make(map[string]string, len(raw))
	var bad []string
	for k, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			bad = append(bad, k)
			continue
		}
		out[k] = s
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, fmt.Errorf("secrets: load %s: values of %q are not strings", id, bad)
	}
	return out, nil
}

// Save implements secrets.Store: it merges values into the stored
// object and writes the result as a new version (PutSecretValue).
// Concurrent Saves can lose each other's keys; Secrets Manager has no
// conditional write, and restores write secrets from one place.
func (s *Store) Save(ctx context.Context, values map[string]string) error {
	if len(values) == 0 {
		return nil
	}
	if _, ok := values[""]; ok {
		return fmt.Errorf("secrets: save %s: empty key", s.id)
	}
	cur, err := s.Load(ctx)
	if err != nil {
		return err
	}
	maps.Copy(cur, values)
	b, err := json.Marshal(cur)
	if err != nil {
		return fmt.Errorf("secrets: save %s: encode: %w", s.id, err)
	}
	_, err = s.client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:     aws.String(s.id),
		SecretString: aws.String(string(b)),
	})
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("secrets: save %s: %w", s.id, ErrNotFound)
		}
		return fmt.Errorf("secrets: save %s: %w", s.id, err)
	}
	return nil
}
