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

// invokeDR invokes drcopy with a payload as Lambda does (the S3 event or
// the reconcile rule's input, as JSON).
func invokeDR(t *testing.T, h *serverless.DRCopy, ev any) (serverless.CopyResult, error) {
	t.Helper()
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := ev.(string); ok {
		payload = []byte(s)
	}
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
	return h.Handle(ctx, payload)
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
	res, err = invokeDR(t, newDRCopy(t, d.stack, nil), manifestEvent(t, d.stack.Bucket, archive.ManifestName(bigKey)))
	if err != nil {
		t.Fatal(err)
	}
	// moto reports no SHA-256 per copied part: every range of the source
	// is read and the completed object's composite checksum compared.
	if c := res.Copied[0]; c.Parts != 3 || c.BytesRead != int64(len(big)) || c.Verified != "s3-checksum+read" {
		t.Fatalf("70 MiB archive: %+v", c)
	}
	if !bytes.Equal(read(bigKey), big) {
		t.Fatal("the big DR copy differs")
	}
	// The archive is there but its manifest is not (an invocation that
	// stopped in between): the copy is read back, never replaced, and the
	// manifest written.
	if err := drStore.Delete(ctx, archive.ManifestName(bigKey)); err != nil {
		t.Fatal(err)
	}
	res, err = invokeDR(t, newDRCopy(t, d.stack, nil), manifestEvent(t, d.stack.Bucket, archive.ManifestName(bigKey)))
	if err != nil || res.Copied[0].Verified != "already-copied" || !bytes.Equal(read(archive.ManifestName(bigKey)), d.object(archive.ManifestName(bigKey))) {
		t.Fatalf("archive without its manifest: %+v %v", res, err)
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
	if ups, err := drStore.Uploads(ctx, badKey); err != nil || len(ups) != 0 {
		t.Fatalf("the refused copy left its upload: %v %v", ups, err)
	}

	// The DR writer never overwrites: an object already at an archive's
	// key that is not its copy (placed by someone else) stays, and the
	// copy fails. (The DR bucket policy would refuse an overwrite too;
	// moto does not enforce policies, pkg/blob/s3's TestCopyFromUnderTheDRPolicy
	// simulates it.)
	foreignKey := "backups/edgebase-backup-2026-01-02T06-00-00.tar.gz"
	fm := man
	fm.Archive = filepath.Base(foreignKey)
	putArchive(foreignKey, big, fm)
	squatter := bytes.Repeat([]byte("not the archive "), len(big)/16)
	if err := drStore.Put(ctx, foreignKey, bytes.NewReader(squatter)); err != nil {
		t.Fatal(err)
	}
	_, err = invokeDR(t, newDRCopy(t, d.stack, nil), manifestEvent(t, d.stack.Bucket, archive.ManifestName(foreignKey)))
	if !errors.Is(err, serverless.ErrCopyMismatch) {
		t.Fatalf("an object in the way: err = %v, want ErrCopyMismatch", err)
	}
	if !bytes.Equal(read(foreignKey), squatter) {
		t.Fatal("drcopy replaced an object of the DR bucket")
	}
	if _, err := drStore.Stat(ctx, archive.ManifestName(foreignKey)); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("a manifest was written beside an unverified archive (%v)", err)
	}

	// The daily reconcile: the two copies made above are found verified,
	// a new archive no event announced is copied, and the two that cannot
	// be copied fail the run (after the others).
	newKey := "backups/edgebase-backup-2026-01-02T07-00-00.tar.gz"
	nm := man
	nm.Archive = filepath.Base(newKey)
	putArchive(newKey, big, nm)
	res, err = invokeDR(t, newDRCopy(t, d.stack, nil), lambdaenv.ReconcileInput)
	rep := res.Reconcile
	if rep == nil || rep.Archives != 5 || rep.AlreadyCopied != 2 || rep.Copied != 1 || rep.Failed != 2 || rep.Remaining != 0 || !errors.Is(err, serverless.ErrCopyMismatch) {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	if len(res.Copied) != 1 || res.Copied[0].Archive != newKey || !bytes.Equal(read(newKey), big) {
		t.Fatalf("reconcile copied %+v", res.Copied)
	}
	if _, err := invokeDR(t, newDRCopy(t, d.stack, nil), `{"something":"else"}`); !errors.Is(err, serverless.ErrBadInput) {
		t.Fatalf("unknown payload: %v", err)
	}
}
