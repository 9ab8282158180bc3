package secretsmanager

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/edgevault/edgevault/internal/motoserver"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

func newSecret(t *testing.T, c *secretsmanager.Client, value *string, binary []byte) string {
	t.Helper()
	name := motoserver.Name(t, "secret")
	if _, err := c.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name: aws.String(name), SecretString: value, SecretBinary: binary,
	}); err != nil {
		t.Fatalf("create secret: %v", err)
	}
	return name
}

func TestGetString(t *testing.T) {
	c := motoserver.Clients(t).SecretsManager()
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := newSecret(t, c, aws.String("sk-123"), nil)
	v, err := m.GetString(ctx, id)
	if err != nil || v.Reveal() != "sk-123" {
		t.Fatalf("GetString = %q, %v", v.Reveal(), err)
	}
	if s := fmt.Sprint(v); strings.Contains(s, "sk-123") {
		t.Fatalf("value printed as %q", s)
	}
	bin := newSecret(t, c, nil, []byte("binary-token"))
	if v, err := m.GetString(ctx, bin); err != nil || v.Reveal() != "binary-token" {
		t.Fatalf("binary GetString = %q, %v", v.Reveal(), err)
	}
	if _, err := m.GetString(ctx, "no-such-secret"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing secret: %v", err)
	}
	empty := newSecret(t, c, nil, nil)
	if _, err := m.GetString(ctx, empty); !errors.Is(err, ErrNotFound) {
		t.Fatalf("secret without a value: %v", err)
	}
	if _, err := m.GetString(ctx, ""); err == nil {
		t.Fatal("empty id accepted")
	}
}

func TestStore(t *testing.T) {
	c := motoserver.Clients(t).SecretsManager()
	ctx := context.Background()
	s, err := NewStore(c, newSecret(t, c, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Load of a secret without value = %v, %v", got, err)
	}
	if err := s.Save(ctx, map[string]string{"JWT_USER_SECRET": "u1", "SERVICE_KEY": "k1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, map[string]string{"SERVICE_KEY": "k2", "CUSTOM": `q"uo\te`}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Load(ctx)
	want := map[string]string{"JWT_USER_SECRET": "u1", "SERVICE_KEY": "k2", "CUSTOM": `q"uo\te`}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("Load after merges = %v, %v", got, err)
	}
	// Every Save is a new version.
	vs, err := c.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: aws.String(s.id)})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Versions) < 2 {
		t.Errorf("%d versions after two Saves", len(vs.Versions))
	}

	emptyString, _ := NewStore(c, newSecret(t, c, aws.String(""), nil))
	if got, err := emptyString.Load(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Load of an empty string = %v, %v", got, err)
	}
	missing, _ := NewStore(c, "no-such-secret")
	if _, err := missing.Load(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of a missing secret: %v", err)
	}
	if err := missing.Save(ctx, map[string]string{"A": "b"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Save to a missing secret: %v", err)
	}
}

func TestStoreRejectsBadValues(t *testing.T) {
	c := motoserver.Clients(t).SecretsManager()
	ctx := context.Background()
	for _, v := range []string{`[1,2]`, `"str"`, `null`, `{"A":"ok","N":5,"O":{"x":"supersecret"}}`, `not json`} {
		s, _ := NewStore(c, newSecret(t, c, aws.String(v), nil))
		_, err := s.Load(ctx)
		if err == nil {
			t.Errorf("Load accepted %s", v)
			continue
		}
		if strings.Contains(err.Error(), "supersecret") || strings.Contains(err.Error(), `"ok"`) {
			t.Errorf("error leaks a value: %v", err)
		}
		if err := s.Save(ctx, map[string]string{"B": "c"}); err == nil {
			t.Errorf("Save merged into an invalid value %s", v)
		}
	}
}
