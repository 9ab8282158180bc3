package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// manifestEvent is the sample S3 notification for a manifest key.
func manifestEvent(t *testing.T, bucket, key string) awsevents.S3Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "events", "testdata", "aws", "s3_manifest_created.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev awsevents.S3Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	ev.Records[0].S3.Bucket.Name = bucket
	ev.Records[0].S3.Object.Key = key
	ev.Records[0].S3.Object.URLDecodedKey = key
	return ev
}

func newDRCopy(t *testing.T, st *Stack, tune func(*serverless.Config)) *serverless.DRCopy {
	t.Helper()
	cfg, err := st.Config(lambdaenv.DRCopy, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AWS = motoserver.Config(t)
	// The destination account's role (moto's STS hands out credentials of
	// that account for it).
	cfg.DRRoleARN = "arn:aws:iam::111111111111:role/edgevault-dr-writer"
	if tune != nil {
		tune(&cfg)
	}
	cfg, deps, err := serverless.AWSDeps(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := serverless.NewDRCopy(cfg, serverless.Runtime{Now: fixedNow}, deps)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func invokeDR(t *testing.T, h *serverless.DRCopy, ev awsevents.S3Event) (serverless.CopyResult, error) {
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
	return h.Handle(ctx, ev)
}

// TestE2EDRCopy copies a real backup and a large multi-part archive to the
// DR bucket through an assumed role, verifies both ways, and refuses a
// source that does not match its manifest.
func TestE2EDRCopy(t *testing.T) {
	gate(t)
	ctx := context.Background()
	src := newTarget(t, true)
	src.fingerprint(t)
	d := deploy(t, src, deployOptions{stack: StackOptions{DR: true}})
	_, key, want := backupOnce(t, d)
	if key == "" {
		t.Fatal("backup failed")
	}
	manKey := archive.ManifestName(key)
	drStore, err := s3store.New(d.clients.S3(), d.stack.DRBucket, "", s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	read := func(k string) []byte {
		rc, err := drStore.Get(ctx, k)
		if err != nil {
			t.Fatalf("DR bucket: %v", err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}

	h := newDRCopy(t, d.stack, nil)
	res, err := invokeDR(t, h, manifestEvent(t, d.stack.Bucket, manKey))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Copied) != 1 || res.Copied[0].Verified == "" {
		t.Fatalf("result %+v", res)
	}
	t.Logf("small archive verified by %s", res.Copied[0].Verified)
	if !bytes.Equal(read(key), want) || !bytes.Equal(read(manKey), d.object(manKey)) {
		t.Fatal("the DR copy differs from the original")
	}
	// A repeated event re-verifies and copies nothing.
	if res, err = invokeDR(t, h, manifestEvent(t, d.stack.Bucket, manKey)); err != nil || res.Copied[0].Verified != "already-copied" {
		t.Fatalf("repeat: %+v %v", res, err)
	}
	// Events for other keys are ignored.
	if res, err = invokeDR(t, h, manifestEvent(t, d.stack.Bucket, key)); err != nil || len(res.Copied) != 0 || len(res.Skipped) != 1 {
		t.Fatalf("non-manifest key: %+v %v", res, err)
	}

	// A 70 MiB archive in three upload parts, with manifest parts that do
	// not line up with them (as the assembler's compose writes).
	big := make([]byte, 70<<20)
	_, _ = rand.Read(big)
	bigKey := "backups/edgebase-backup-2026-01-02T04-00-00.tar.gz"
	man := archive.Manifest{Version: archive.ManifestVersion, Archive: filepath.Base(bigKey), Format: archive.TarGz, Size: int64(len(big)), CreatedAt: fixedNow()}
	for _, r := range [][2]int{{0, 10 << 20}, {10 << 20, 45 << 20}, {45 << 20, 70 << 20}} {
		s := sha256.Sum256(big[r[0]:r[1]])
		man.Parts = append(man.Parts, archive.ManifestPart{Offset: int64(r[0]), Size: int64(r[1] - r[0]), SHA256: hex.EncodeToString(s[:])})
	}
	putArchive := func(k string, data []byte, m archive.Manifest) {
		var mb bytes.Buffer
		if err := archive.EncodeManifest(&mb, m); err != nil {
			t.Fatal(err)
		}
		if err := d.store().Put(ctx, k, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := d.store().Put(ctx, archive.ManifestName(k), &mb); err != nil {
			t.Fatal(err)
		}
	}
	putArchive(bigKey, big, man)
	for _, readBack := range []bool{false, true} {
		h := newDRCopy(t, d.stack, func(c *serverless.Config) { c.VerifyReadBack = readBack })
		if readBack {
			if err := drStore.Delete(ctx, archive.ManifestName(bigKey)); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		res, err := invokeDR(t, h, manifestEvent(t, d.stack.Bucket, archive.ManifestName(bigKey)))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("70 MiB archive copied and verified by %s in %s", res.Copied[0].Verified, time.Since(start).Round(time.Millisecond))
		if readBack && res.Copied[0].Verified != "read-back" {
			t.Fatalf("verified by %s, want read-back", res.Copied[0].Verified)
		}
		if !bytes.Equal(read(bigKey), big) {
			t.Fatal("the big DR copy differs")
		}
	}

	// A source whose bytes do not match its manifest: the upload is
	// aborted, nothing lands in the DR bucket, the invocation fails.
	badKey := "backups/edgebase-backup-2026-01-02T05-00-00.tar.gz"
	bad := append([]byte(nil), big...)
	bad[50<<20] ^= 0xff
	bm := man
	bm.Archive = filepath.Base(badKey)
	putArchive(badKey, bad, bm)
	_, err = invokeDR(t, newDRCopy(t, d.stack, nil), manifestEvent(t, d.stack.Bucket, archive.ManifestName(badKey)))
	if !errors.Is(err, serverless.ErrCopyMismatch) {
		t.Fatalf("mismatching source: err = %v, want ErrCopyMismatch", err)
	}
	for _, k := range []string{badKey, archive.ManifestName(badKey)} {
		if _, err := drStore.Stat(ctx, k); !errors.Is(err, blob.ErrNotExist) {
			t.Fatalf("%s exists in the DR bucket after a failed copy (%v)", k, err)
		}
	}
}
