package kms_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/provenance"
	kmssigner "github.com/edgevault/edgevault/pkg/provenance/kms"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

func client(t *testing.T) *kms.Client {
	t.Helper()
	cfg := motoserver.Config(t)
	c := motoserver.Clients(t)
	return kms.NewFromConfig(c.AWS(), func(o *kms.Options) { o.BaseEndpoint = aws.String(cfg.Endpoint) })
}

func createKey(t *testing.T, c *kms.Client, spec types.KeySpec, usage types.KeyUsageType) string {
	t.Helper()
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

func TestKMSSignedManifestVerifiesOffline(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	s, err := kmssigner.New(ctx, c, createKey(t, c, types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify))
	if err != nil {
		t.Fatal(err)
	}
	m := archive.Manifest{Version: archive.ManifestVersion, Archive: "edgebase-backup-2026-01-01T00-00-00.json", Format: archive.JSON,
		Size: 1, SHA256: strings.Repeat("0", 64), CreatedAt: time.Unix(0, 0).UTC(), Source: "https://a.example"}
	if err := provenance.Sign(ctx, &m, s); err != nil {
		t.Fatal(err)
	}
	if m.Signature.Algorithm != provenance.ECDSAP256 {
		t.Fatalf("algorithm %q", m.Signature.Algorithm)
	}
	// The public key as a --trust file.
	pk, err := provenance.ParsePublicKey(s.PublicKeyDER())
	if err != nil {
		t.Fatal(err)
	}
	if err := provenance.Verify(m, pk); err != nil {
		t.Fatalf("a KMS signature does not verify offline: %v", err)
	}
	msg, err := provenance.SigningBytes(m)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := s.Sign(ctx, msg)
	if ok, err := s.Verify(ctx, msg, sig); err != nil || !ok {
		t.Fatalf("KMS Verify of its own signature: %v %v", ok, err)
	}
	if ok, err := s.Verify(ctx, append(msg, 'x'), sig); err != nil || ok {
		t.Fatalf("KMS Verify of another message: %v %v", ok, err)
	}
	// Changing the manifest after signing is caught offline.
	m.Rows++
	if err := provenance.Verify(m, pk); !errors.Is(err, provenance.ErrBadSignature) {
		t.Fatalf("a changed manifest: %v", err)
	}
}

func TestKMSRefusesAKeyThatCannotSignManifests(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	for _, k := range []struct {
		spec  types.KeySpec
		usage types.KeyUsageType
	}{{types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt}, {types.KeySpecRsa2048, types.KeyUsageTypeSignVerify}} {
		if _, err := kmssigner.New(ctx, c, createKey(t, c, k.spec, k.usage)); err == nil || !strings.Contains(err.Error(), "ECC_NIST_P256") {
			t.Errorf("%s/%s: New = %v, want a refusal naming ECC_NIST_P256", k.spec, k.usage, err)
		}
	}
}
