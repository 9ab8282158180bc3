package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// s3Env is a test environment whose s3:// paths go to a fresh bucket on
// moto_server.
func s3Env(t *testing.T) (Env, string, *s3.Client) {
	t.Helper()
	cfg := motoserver.Config(t) // a server of this test's own: the package has no shared one
	clients, err := awsconfig.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	bucket := motoserver.Name(t, "backups")
	if _, err := clients.S3().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	env := testEnv(t)
	env.aws = &cfg
	return env, bucket, clients.S3()
}

// TestS3RoundTrip: create to s3://, list, verify and restore from s3://
// into another emulator; the fingerprints are equal and nothing is written
// to local disk but the restore's work directory.
func TestS3RoundTrip(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	env, bucket, s3c := s3Env(t)
	src := newSource(t, edgebasetest.Options{})
	want := fingerprint(ctx, t, src.emu, src.demo.Instances...)
	out := "s3://" + bucket + "/nightly/edgebase"

	r := cliRunEnv(ctx, t, env, append([]string{"backup", "create", "--include-storage", "--json", "--output", out + "/"}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("create to s3 failed:\n%s", r)
	}
	doc := r.jsonDoc(t)
	file, _ := doc["file"].(string)
	if !strings.HasPrefix(file, out+"/edgebase-backup-") || !strings.HasSuffix(file, ".tar.gz") || doc["manifest"] != file+".manifest.json" {
		t.Fatalf("create reported %v", doc)
	}

	// Staging was cleaned up: the prefix holds the archive, its manifest
	// and the name reservation only.
	objs, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs.Contents {
		if k := aws.ToString(o.Key); !strings.HasPrefix(k, "nightly/edgebase/") || strings.Contains(k, "/parts/") {
			t.Errorf("unexpected object %s left in the bucket", k)
		}
	}

	l := cliRunEnv(ctx, t, env, "backup", "list", "--json", "--from", out)
	if l.code != 0 {
		t.Fatalf("list failed:\n%s", l)
	}
	archives, _ := l.jsonDoc(t)["archives"].([]any)
	if len(archives) != 1 || archives[0].(map[string]any)["file"] != file || archives[0].(map[string]any)["manifest"] != true {
		t.Fatalf("list: %v; want the one archive with its manifest", archives)
	}

	v := cliRunEnv(ctx, t, env, "backup", "verify", "--json", file)
	if v.code != 0 {
		t.Fatalf("verify failed:\n%s", v)
	}
	sum := v.jsonDoc(t)["summary"].(map[string]any)
	if sum["manifest"] != "ok" || sum["verifiedObjects"] != float64(src.demo.Objects) || sum["sha256"] == "" {
		t.Errorf("verify summary %v; want manifest ok and every object checked", sum)
	}

	dst := newEmulator(t, edgebasetest.Options{ServiceKey: "s3-target-key"})
	rr := cliRunEnv(ctx, t, env, append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)...)
	if rr.code != 0 {
		t.Fatalf("restore from s3 failed:\n%s", rr)
	}
	if d := edgebasetest.Diff(want, fingerprint(ctx, t, dst, src.demo.Instances...)); d != "" {
		t.Errorf("target differs from source after a restore from s3:\n%s", d)
	}

	// Fail closed: a missing archive and a corrupted one.
	miss := cliRunEnv(ctx, t, env, append([]string{"backup", "restore", "--from", out + "/edgebase-backup-1999-01-01T00-00-00.json", "--yes", "--json"}, conn(dst)...)...)
	if miss.code == 0 || !strings.Contains(miss.stdout, "backup_file_not_found") {
		t.Errorf("restore of a missing s3 archive:\n%s", miss)
	}
	key := strings.TrimPrefix(file, "s3://"+bucket+"/")
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: strings.NewReader("not an archive")}); err != nil {
		t.Fatal(err)
	}
	if bad := cliRunEnv(ctx, t, env, "backup", "verify", file); bad.code == 0 {
		t.Errorf("verify accepted a corrupted archive:\n%s", bad)
	}
}

// TestS3VerifySubset: --read-data-subset reads back only some of an S3
// archive's manifest parts and checks their SHA-256; a changed byte in a
// part it reads is refused, naming the part.
func TestS3VerifySubset(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	env, bucket, s3c := s3Env(t)
	src := newSource(t, edgebasetest.Options{})
	out := "s3://" + bucket + "/sample"
	r := cliRunEnv(ctx, t, env, append([]string{"backup", "create", "--include-storage", "--json", "--output", out}, conn(src.emu)...)...)
	if r.code != 0 {
		t.Fatalf("create to s3 failed:\n%s", r)
	}
	file := r.jsonDoc(t)["file"].(string)
	v := cliRunEnv(ctx, t, env, "backup", "verify", "--json", "--read-data-subset", "30%", file)
	if v.code != 0 {
		t.Fatalf("verify --read-data-subset failed:\n%s", v)
	}
	sum := v.jsonDoc(t)["summary"].(map[string]any)
	if sum["manifest"] != "ok" || !strings.Contains(fmt.Sprint(sum["warnings"]), "manifest parts were read back") {
		t.Fatalf("subset summary %v", sum)
	}
	if bad := cliRunEnv(ctx, t, env, "backup", "verify", "--read-data-subset", "0", file); bad.code == 0 {
		t.Fatalf("a 0%% subset was accepted:\n%s", bad)
	}

	// One byte changed in the middle of the archive, size kept.
	key := strings.TrimPrefix(file, "s3://"+bucket+"/")
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	bad := cliRunEnv(ctx, t, env, "backup", "verify", "--read-data-subset", "100%", file)
	if bad.code == 0 || !strings.Contains(bad.stdout+bad.stderr, "the manifest says") {
		t.Fatalf("a changed part was not refused:\n%s", bad)
	}
}
