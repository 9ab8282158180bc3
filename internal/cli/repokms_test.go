package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestRepoKMSKey: with --kms-key-id a new repository needs no passphrase
// and its key is wrapped by the KMS key (moto); it opens with the flag or
// EDGEVAULT_KMS_KEY_ID, and refuses another key (repository_wrong_key) or
// a passphrase. With a passphrase too, either opens it.
func TestRepoKMSKey(t *testing.T) {
	ctx := testContext(t)
	cfg := motoserver.Config(t) // a server of this test's own: the package has no shared one
	clients, err := awsconfig.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	newKey := func() string {
		out, err := clients.KMS().CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecSymmetricDefault, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.KeyMetadata.Arn)
	}
	keyA, keyB := newKey(), newKey()
	vars := map[string]string{}
	env := testEnv(t)
	env.aws = &cfg
	env.Getenv = func(k string) string { return vars[k] }
	run := func(args ...string) result {
		t.Helper()
		return cliRunEnv(ctx, t, env, append(args, "--json")...)
	}
	src := newSource(t, edgebasetest.Options{})
	dir := filepath.Join(t.TempDir(), "repo")

	r := run(append([]string{"backup", "create", "--repo", dir, "--kms-key-id", keyA}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("backup create with a KMS key and no passphrase:\n%s", r)
	}
	keyFiles, _ := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if len(keyFiles) != 1 {
		t.Fatalf("%d key files, want 1", len(keyFiles))
	}
	if b, _ := os.ReadFile(keyFiles[0]); !strings.Contains(string(b), `"kdf":"kms"`) || !strings.Contains(string(b), keyA) {
		t.Fatalf("key file: %s", b)
	}
	if r := run("snapshots", "--repo", dir, "--kms-key-id", keyA); r.code != 0 || len(r.jsonDoc(t)["snapshots"].([]any)) != 1 {
		t.Fatalf("snapshots with the KMS key:\n%s", r)
	}
	vars[envKMSKeyID] = keyA
	if r := run("snapshots", "--repo", dir); r.code != 0 {
		t.Fatalf("snapshots with %s:\n%s", envKMSKeyID, r)
	}
	delete(vars, envKMSKeyID)
	if r := run("snapshots", "--repo", dir, "--kms-key-id", keyB); r.code == 0 || r.jsonDoc(t)["code"] != "repository_wrong_key" {
		t.Errorf("snapshots with another KMS key: want repository_wrong_key:\n%s", r)
	}
	vars[envPassword] = "a passphrase"
	if r := run("snapshots", "--repo", dir); r.code == 0 || r.jsonDoc(t)["code"] != "repository_wrong_password" || !strings.Contains(r.stdout, keyA) {
		t.Errorf("snapshots of a KMS repository with a passphrase: want repository_wrong_password naming the key:\n%s", r)
	}
	delete(vars, envPassword)
	if r := run("snapshots", "--repo", dir); r.code != ExitNeedsInput {
		t.Errorf("snapshots with neither: want needs_input:\n%s", r)
	}

	// A KMS key and a break-glass passphrase.
	both := filepath.Join(t.TempDir(), "both")
	vars[envPassword] = "break glass"
	if r := run(append([]string{"backup", "create", "--repo", both, "--kms-key-id", keyA}, conn(src.emu)...)...); r.code != 0 {
		t.Fatalf("backup create with a KMS key and a passphrase:\n%s", r)
	}
	if r := run("snapshots", "--repo", both); r.code != 0 {
		t.Errorf("snapshots with the passphrase only:\n%s", r)
	}
	delete(vars, envPassword)
	if r := run("snapshots", "--repo", both, "--kms-key-id", keyA); r.code != 0 {
		t.Errorf("snapshots with the KMS key only:\n%s", r)
	}
}
