package serverless

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/repository"
)

// testKey is a repository.KeyWrapper standing in for a KMS key: AES-GCM
// with the repository id as additional data, so, as with KMS's encryption
// context, a wrapped key opens only in its repository and only with this
// key.
type testKey struct{ aead cipher.AEAD }

func newTestKey(t *testing.T) *testKey {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{aead: aead}
}

func (k *testKey) Wrap(_ context.Context, repo repository.ID, key []byte) ([]byte, string, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", err
	}
	return k.aead.Seal(nonce, nonce, key, repo[:]), "test-key", nil
}

func (k *testKey) Unwrap(_ context.Context, repo repository.ID, wrapped []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(wrapped) < n {
		return nil, repository.ErrWrongKey
	}
	plain, err := k.aead.Open(nil, wrapped[:n], wrapped[n:], repo[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", repository.ErrWrongKey, err)
	}
	return plain, nil
}

// maintainBed is a bucket on a directory with the repository under
// repository/ in it, and the maintain function's clock.
type maintainBed struct {
	clock         *testClock
	bucket        *blobtest.Faulty
	repo          pipeline.BlobStore
	key           *testKey
	metrics, logs *lockedBuffer
	source        string
}

const testRepositoryPrefix = "repository/"

func newMaintainBed(t *testing.T) *maintainBed {
	t.Helper()
	dir := t.TempDir()
	root, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	repo, err := fs.New(filepath.Join(dir, strings.TrimSuffix(testRepositoryPrefix, "/")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return &maintainBed{clock: &testClock{start: time.Now()}, bucket: blobtest.NewFaulty(root, false), repo: repo,
		key: newTestKey(t), metrics: &lockedBuffer{}, logs: &lockedBuffer{}, source: "https://app.example"}
}

func (mb *maintainBed) config() Config {
	c := DefaultConfig(lambdaenv.Maintain)
	c.Bucket, c.RepositoryPrefix, c.RepositoryKMSKey = "bucket", testRepositoryPrefix, "test-key"
	c.Retention = repository.Policy{Last: 2}
	return c
}

func (mb *maintainBed) handler(t *testing.T, cfg Config, signer provenance.Signer) *Maintain {
	t.Helper()
	h, err := NewMaintain(cfg, Runtime{Now: mb.clock.Now, Logs: mb.logs, Metrics: mb.metrics},
		Deps{Store: mb.bucket, Repository: mb.repo, RepositoryKey: mb.key, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testArchive is a small v1.1 .tar.gz of a backup started at start: the
// D1 databases, one DO and two storage objects, one of which is new in
// every backup (so each snapshot has packs of its own).
func testArchive(t *testing.T, start time.Time) []byte {
	t.Helper()
	objects := []testObject{
		{"avatars/logo.png", bytes.Repeat([]byte("logo"), 4096)},
		{"uploads/" + start.Format("20060102") + ".bin", randomBody(t, 256<<10)},
	}
	doc := testDocument(t, start, objects)
	var out bytes.Buffer
	tw := archive.NewTarGzWriter(&out, start)
	if err := tw.WriteBackupJSON(bytes.NewReader(doc), int64(len(doc))); err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		if _, err := tw.AddObject(o.key, int64(len(o.body)), bytes.NewReader(o.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

type testObject struct {
	key  string
	body []byte
}

// testDocument is the backup.json of testArchive (with objects) or of a
// backup without storage.
func testDocument(t *testing.T, start time.Time, objects []testObject) []byte {
	t.Helper()
	var doc bytes.Buffer
	jw, err := archive.NewJSONWriter(&doc, archive.Header{Timestamp: archive.FormatTimestamp(start), Source: archive.SourceDocker})
	if err != nil {
		t.Fatal(err)
	}
	dump := fmt.Sprintf(`{"doName":"shared","doType":"database","tables":{"posts":[{"id":"p1","at":%q}],"_meta":[]},"timestamp":%q}`,
		start.Format(time.RFC3339), archive.FormatTimestamp(start))
	for _, step := range []func() (archive.ValueStats, error){
		func() (archive.ValueStats, error) { return jw.ControlD1(strings.NewReader(`{"_meta":[]}`)) },
		func() (archive.ValueStats, error) {
			return jw.AuthD1(strings.NewReader(`{"_users":[{"id":"u1","email":"a@example.com"}],"_meta":[]}`))
		},
		func() (archive.ValueStats, error) { return jw.Database("shared", strings.NewReader(dump)) },
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range objects {
		sum := sha256Hex(o.body)
		if err := jw.StorageObject(archive.Object{Key: o.key, Size: int64(len(o.body)), ETag: sum[:32], ContentType: "application/octet-stream", SHA256: sum}); err != nil {
			t.Fatal(err)
		}
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	return doc.Bytes()
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func randomBody(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// fill creates the repository (as the scheduler does on first use) and
// stores one snapshot per start time, through the repository API.
func (mb *maintainBed) fill(t *testing.T, starts ...time.Time) []repository.ID {
	t.Helper()
	ctx := context.Background()
	r, err := repository.OpenWith(ctx, mb.repo, repository.Credentials{Wrapper: mb.key})
	if errors.Is(err, repository.ErrNotRepository) {
		r, err = repository.InitWith(ctx, mb.repo, repository.Credentials{Wrapper: mb.key}, repository.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	var ids []repository.ID
	for _, start := range starts {
		id, _, err := r.Import(ctx, bytes.NewReader(testArchive(t, start)), archive.TarGz, repository.Snapshot{Time: start, SourceURL: mb.source})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (mb *maintainBed) open(t *testing.T) *repository.Repository {
	t.Helper()
	r, err := repository.OpenWith(context.Background(), mb.repo, repository.Credentials{Wrapper: mb.key})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (mb *maintainBed) snapshotIDs(t *testing.T) []repository.ID {
	t.Helper()
	snaps, err := mb.open(t).ListSnapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []repository.ID
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	return ids
}

func (mb *maintainBed) metricSum(t *testing.T, name string) float64 {
	t.Helper()
	n := 0.0
	for _, m := range mb.metrics.lines(t, name) {
		if v, ok := m[name].(float64); ok {
			n += v
		}
	}
	return n
}

// The daily rule forgets what the policy drops (the newest two stay),
// marks the packs only they used, and deletes them once the grace period
// has passed; the repository checks clean after, and the metrics say so.
func TestMaintainForgetAndPrune(t *testing.T) {
	ctx := testContext(t)
	mb := newMaintainBed(t)
	var starts []time.Time
	for i := range 5 {
		starts = append(starts, testEpoch.AddDate(0, 0, i-5).Add(3*time.Hour))
	}
	ids := mb.fill(t, starts...)
	h := mb.handler(t, mb.config(), nil)

	res, err := h.Handle(ctx, MaintainInput{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != 2 || res.Forgotten != 3 || res.Marked == 0 || res.Deleted != 0 || len(res.Locked) != 0 {
		t.Fatalf("first run: %+v; want 2 kept, 3 forgotten, packs marked, none deleted within the grace period", res)
	}
	if got := mb.snapshotIDs(t); !slices.Equal(got, ids[3:]) {
		t.Fatalf("snapshots after forget: %v, want the newest two %v", got, ids[3:])
	}
	if !strings.Contains(mb.logs.buf.String(), `"forgotten":3`) {
		t.Errorf("no forget log line:\n%s", mb.logs.buf.String())
	}

	mb.clock.Advance(DefaultPruneGrace + time.Hour)
	res, err = h.Handle(ctx, MaintainInput{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Forgotten != 0 || res.Deleted == 0 || res.Freed <= 0 {
		t.Fatalf("second run after the grace period: %+v; want packs deleted and bytes freed", res)
	}
	if _, err := mb.open(t).Check(ctx, true, 100); err != nil {
		t.Fatalf("the repository does not check after prune: %v", err)
	}
	for name, want := range map[string]float64{SnapshotsForgotten: 3, SnapshotsKept: 4, PacksDeleted: float64(res.Deleted), PrunedBytes: float64(res.Freed)} {
		if got := mb.metricSum(t, name); got != want {
			t.Errorf("metric %s: %v, want %v", name, got, want)
		}
	}
	for _, m := range mb.metrics.lines(t, PacksMarked) {
		aws, _ := m["_aws"].(map[string]any)
		dirs, _ := aws["CloudWatchMetrics"].([]any)
		if len(dirs) != 1 || dirs[0].(map[string]any)["Namespace"] != metrics.DefaultNamespace || m["Function"] != lambdaenv.Maintain {
			t.Errorf("not an EMF document of the maintain function: %v", m)
		}
	}
}

// The export writes the newest snapshot as a .tar.gz under the archive
// prefix, named after its backup's start, with a signed manifest that
// checks against the bytes (as drcopy, the drill and list read it); a
// second run writes nothing.
func TestMaintainExport(t *testing.T) {
	ctx := testContext(t)
	mb := newMaintainBed(t)
	newest := testEpoch.Add(-2 * time.Hour)
	ids := mb.fill(t, newest.Add(-24*time.Hour), newest)
	signer, err := provenance.GenerateKey(filepath.Join(t.TempDir(), "k.pem"), filepath.Join(t.TempDir(), "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	h := mb.handler(t, mb.config(), signer)

	res, err := h.Handle(ctx, MaintainInput{Export: true})
	if err != nil {
		t.Fatal(err)
	}
	wantKey := DefaultArchivePrefix + archive.FileName(newest, true)
	if !res.Written || res.Archive != wantKey || res.Snapshot != ids[1].String() || res.Manifest != archive.ManifestName(wantKey) {
		t.Fatalf("export: %+v; want %s of snapshot %s written", res, wantKey, ids[1])
	}

	// The archive validates as v1.1 with its manifest beside it, and holds
	// what the snapshot holds.
	local := filepath.Join(t.TempDir(), filepath.Base(wantKey))
	for _, k := range []string{wantKey, archive.ManifestName(wantKey)} {
		rc, err := mb.bucket.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if err := os.WriteFile(filepath.Join(filepath.Dir(local), filepath.Base(k)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := archive.Verify(ctx, local)
	if err != nil {
		t.Fatalf("the export does not verify: %v", err)
	}
	if sum.Manifest != "ok" || sum.Version != "1.1" || sum.Format != archive.TarGz || sum.Members != 2 || sum.VerifiedObjects != 2 || sum.DOs != 1 {
		t.Fatalf("summary: %+v", sum)
	}
	man, err := backup.ReadManifest(ctx, mb.bucket, wantKey)
	if err != nil {
		t.Fatal(err)
	}
	if man.SourceURL != mb.source || man.Archive != filepath.Base(wantKey) || man.SHA256 != sum.SHA256 || !man.CreatedAt.Equal(newest) {
		t.Fatalf("manifest: %+v", man)
	}
	if err := provenance.Verify(man, signer.Public()); err != nil {
		t.Fatalf("the manifest's signature: %v", err)
	}
	assertDrillTakes(ctx, t, h, wantKey)

	// Again: nothing written.
	rec := blobtest.NewFaulty(mb.bucket, true)
	h2 := mb.handler(t, mb.config(), signer)
	h2.store = rec
	res, err = h2.Handle(ctx, MaintainInput{Export: true})
	if err != nil || res.Written || res.Archive != wantKey {
		t.Fatalf("second export: %+v %v; want the same archive, not written", res, err)
	}
	for _, c := range rec.Calls() {
		if c.Op == blobtest.OpPut || c.Op == blobtest.OpCreate || c.Op == blobtest.OpDelete {
			t.Errorf("the second export wrote: %s %s", c.Op, c.Key)
		}
	}
	if got := mb.metricSum(t, SnapshotsExported); got != 1 {
		t.Errorf("SnapshotsExported: %v, want 1", got)
	}
}

// assertDrillTakes checks that the drill function's listing takes key as
// the newest archive.
func assertDrillTakes(ctx context.Context, t *testing.T, h *Maintain, key string) {
	t.Helper()
	d := &Drill{base: h.base}
	keys, _, err := d.listArchives(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 || keys[0] != key {
		t.Fatalf("the drill's listing: %v, want %s first", keys, key)
	}
}

// An export that stopped after the archive, before its manifest, is
// completed by the next run (the manifest written, the archive kept); a
// name another backup's archive holds is skipped for the next second.
func TestMaintainExportResumesAndAvoidsOtherArchives(t *testing.T) {
	ctx := testContext(t)
	mb := newMaintainBed(t)
	start := testEpoch.Add(-time.Hour)
	mb.fill(t, start)
	h := mb.handler(t, mb.config(), nil)
	key := DefaultArchivePrefix + archive.FileName(start, true)

	mb.bucket.Inject(blobtest.Fault{Op: blobtest.OpPut, Match: func(k string) bool { return k == archive.ManifestName(key) }, Err: errors.New("lost")})
	if _, err := h.Handle(ctx, MaintainInput{Export: true}); err == nil {
		t.Fatal("an export whose manifest could not be written succeeded")
	}
	mb.bucket.Clear()
	if _, err := mb.bucket.Stat(ctx, key); err != nil {
		t.Fatalf("the archive is not there: %v", err)
	}
	res, err := h.Handle(ctx, MaintainInput{Export: true})
	if err != nil || res.Archive != key || res.Written {
		t.Fatalf("resumed export: %+v %v", res, err)
	}
	if _, err := backup.ReadManifest(ctx, mb.bucket, key); err != nil {
		t.Fatalf("no manifest after the resumed export: %v", err)
	}

	// Another backup's archive under the name of a newer snapshot.
	newer := start.Add(30 * time.Minute)
	mb.fill(t, newer)
	other := DefaultArchivePrefix + archive.FileName(newer, true)
	if err := mb.bucket.Put(ctx, other, strings.NewReader("not ours")); err != nil {
		t.Fatal(err)
	}
	res, err = h.Handle(ctx, MaintainInput{Export: true})
	if want := DefaultArchivePrefix + archive.FileName(newer.Add(time.Second), true); err != nil || res.Archive != want || !res.Written {
		t.Fatalf("export beside another archive: %+v %v; want %s", res, err, want)
	}
	if rc, err := mb.bucket.Get(ctx, other); err != nil {
		t.Fatal(err)
	} else if b, _ := io.ReadAll(rc); string(b) != "not ours" {
		rc.Close()
		t.Fatal("the other archive was replaced")
	} else {
		rc.Close()
	}
}

// A snapshot without storage objects exports as a .json archive, as the
// assembler writes a backup of an empty bucket.
func TestMaintainExportWithoutStorage(t *testing.T) {
	ctx := testContext(t)
	mb := newMaintainBed(t)
	start := testEpoch.Add(-time.Hour)
	mb.fill(t)
	r := mb.open(t)
	doc := testDocument(t, start, nil)
	if _, _, err := r.Import(ctx, bytes.NewReader(doc), archive.JSON, repository.Snapshot{Time: start, SourceURL: mb.source}); err != nil {
		t.Fatal(err)
	}
	res, err := mb.handler(t, mb.config(), nil).Handle(ctx, MaintainInput{Export: true})
	if want := DefaultArchivePrefix + archive.FileName(start, false); err != nil || res.Archive != want || !res.Written {
		t.Fatalf("export: %+v %v; want %s", res, err, want)
	}
	man, err := backup.ReadManifest(ctx, mb.bucket, res.Archive)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := mb.bucket.Get(ctx, res.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, doc) || man.Format != archive.JSON || man.SHA256 != sha256Hex(doc) {
		t.Fatalf("the .json export differs from the backup it was imported from (manifest %+v)", man)
	}
}

// What cannot work fails with an error saying why, and writes nothing: no
// repository, another key, no snapshot to export. Deletes the store
// refuses are reported, not fatal.
func TestMaintainFailures(t *testing.T) {
	ctx := testContext(t)
	mb := newMaintainBed(t)
	h := mb.handler(t, mb.config(), nil)
	for _, in := range []MaintainInput{{}, {Export: true}} {
		_, err := h.Handle(ctx, in)
		if !errors.Is(err, repository.ErrNotRepository) || !strings.Contains(err.Error(), testRepositoryPrefix) {
			t.Errorf("%+v without a repository: %v", in, err)
		}
	}

	if _, err := repository.InitWith(ctx, mb.repo, repository.Credentials{Wrapper: mb.key}, repository.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, MaintainInput{Export: true}); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("export of an empty repository: %v, want ErrNoSnapshot", err)
	}
	if n := countKeys(ctx, t, mb.bucket, DefaultArchivePrefix); n != 0 {
		t.Errorf("%d objects under the archive prefix after failures", n)
	}

	other := *mb
	other.key = newTestKey(t)
	if _, err := other.handler(t, mb.config(), nil).Handle(ctx, MaintainInput{}); !errors.Is(err, repository.ErrWrongKey) {
		t.Errorf("another key: %v, want ErrWrongKey", err)
	}

	// Deletes refused (a bucket lock): reported, and the next run retries.
	mb.fill(t, testEpoch.AddDate(0, 0, -3), testEpoch.AddDate(0, 0, -2), testEpoch.AddDate(0, 0, -1))
	locked := blobtest.NewFaulty(mb.repo, false)
	locked.Inject(blobtest.Fault{Op: blobtest.OpDelete, Err: blob.ErrLocked})
	lockedBed := *mb
	lockedBed.repo = locked
	res, err := lockedBed.handler(t, mb.config(), nil).Handle(ctx, MaintainInput{})
	if err != nil || len(res.Locked) != 1 || res.Forgotten != 0 || res.Kept != 3 {
		t.Fatalf("forget with deletes refused: %+v %v; want the one snapshot reported locked", res, err)
	}
	if got := mb.metricSum(t, LockedFiles); got != 1 {
		t.Errorf("LockedFiles: %v, want 1", got)
	}
	if n := len(mb.snapshotIDs(t)); n != 3 {
		t.Errorf("%d snapshots after a refused forget, want 3", n)
	}
}

func countKeys(ctx context.Context, t *testing.T, s pipeline.BlobStore, prefix string) int {
	t.Helper()
	n := 0
	if err := s.List(ctx, prefix, func(blob.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// The maintain function's configuration: the retention and the grace
// period are required and checked.
func TestMaintainConfig(t *testing.T) {
	env := fullEnv()
	env[lambdaenv.RepositoryPrefix], env[lambdaenv.RepositoryKMSKey] = "repository/", "arn:aws:kms:eu-west-1:1:key/k"
	env[lambdaenv.Retention], env[lambdaenv.PruneGrace] = "last=7,daily=14", "72h"
	var asked []string
	c, err := ConfigFromEnv(lambdaenv.Maintain, func(k string) string { asked = append(asked, k); return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Retention != (repository.Policy{Last: 7, Daily: 14}) || c.PruneGrace != 72*time.Hour {
		t.Fatalf("%+v %v", c, err)
	}
	// It reads exactly its lambdaenv contract (and the test-only
	// overrides and Lambda's log level).
	slices.Sort(asked)
	asked = slices.Compact(asked)
	want := append(slices.Clone(lambdaenv.Reads[lambdaenv.Maintain]), lambdaenv.AWSEndpoint, lambdaenv.S3PathStyle, lambdaenv.LambdaEndpoint, lambdaenv.CloudflareAPIURL, "AWS_LAMBDA_LOG_LEVEL")
	slices.Sort(want)
	if !slices.Equal(asked, want) {
		t.Errorf("maintain reads %v, lambdaenv lists %v", asked, want)
	}
	if _, err := NewMaintain(c, Runtime{}, Deps{Store: blobtest.NewFaulty(nil, false)}); !errors.Is(err, ErrConfig) {
		t.Errorf("maintain without a repository store: %v", err)
	}
	for k, v := range map[string]string{lambdaenv.PruneGrace: "1h", lambdaenv.Retention: ""} {
		bad := maps.Clone(env)
		bad[k] = v
		c, err := ConfigFromEnv(lambdaenv.Maintain, func(k string) string { return bad[k] })
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s=%q accepted", k, v)
		}
	}
}

// On AWS (moto: S3 and KMS) the function's dependencies come from its
// environment through AWSDeps: the repository under its prefix of the
// bucket, opened with the KMS key (encryption context edgevault-repository),
// the export streamed into the bucket and checked there against its
// manifest, and forget+prune on S3.
func TestMaintainOnS3AndKMS(t *testing.T) {
	ctx := testContext(t)
	awsCfg := motoserver.Config(t)
	clients := motoserver.Clients(t)
	bucket := motoserver.Name(t, "backups")
	if _, err := clients.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	key, err := clients.KMS().CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecSymmetricDefault, KeyUsage: kmstypes.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		lambdaenv.Bucket: bucket, lambdaenv.RepositoryPrefix: testRepositoryPrefix, lambdaenv.RepositoryKMSKey: aws.ToString(key.KeyMetadata.Arn),
		lambdaenv.Retention: "last=1",
	}
	cfg, err := ConfigFromEnv(lambdaenv.Maintain, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.AWS = awsCfg
	cfg, d, err := AWSDeps(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Repository == nil || d.RepositoryKey == nil {
		t.Fatalf("AWSDeps connected no repository: %+v", d)
	}
	mb := &maintainBed{clock: &testClock{start: time.Now()}, repo: d.Repository, metrics: &lockedBuffer{}, logs: &lockedBuffer{}, source: "https://app.example"}
	// The scheduler creates the repository on first use, with the same key.
	r, err := repository.InitWith(ctx, d.Repository, repository.Credentials{Wrapper: d.RepositoryKey}, repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []time.Time{testEpoch.AddDate(0, 0, -2), testEpoch.AddDate(0, 0, -1)} {
		if _, _, err := r.Import(ctx, bytes.NewReader(testArchive(t, start)), archive.TarGz, repository.Snapshot{Time: start, SourceURL: mb.source}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := NewMaintain(cfg, Runtime{Now: mb.clock.Now, Logs: mb.logs, Metrics: mb.metrics}, d)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Handle(ctx, MaintainInput{Export: true})
	if err != nil || !res.Written {
		t.Fatalf("export: %+v %v", res, err)
	}
	man, err := backup.ReadManifest(ctx, d.Store, res.Archive)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := d.Store.Get(ctx, res.Archive)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := archive.VerifyStream(ctx, res.Archive, rc, &man)
	rc.Close()
	if err != nil || sum.Manifest != "ok" || sum.VerifiedObjects != 2 {
		t.Fatalf("the exported archive in the bucket: %+v %v", sum, err)
	}
	if res, err = h.Handle(ctx, MaintainInput{}); err != nil || res.Forgotten != 1 || res.Kept != 1 {
		t.Fatalf("forget on S3: %+v %v", res, err)
	}
	// Another KMS key does not open it.
	other, err := clients.KMS().CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecSymmetricDefault, KeyUsage: kmstypes.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		t.Fatal(err)
	}
	env[lambdaenv.RepositoryKMSKey] = aws.ToString(other.KeyMetadata.Arn)
	cfg2, _ := ConfigFromEnv(lambdaenv.Maintain, func(k string) string { return env[k] })
	cfg2.AWS = awsCfg
	cfg2, d2, err := AWSDeps(ctx, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := NewMaintain(cfg2, Runtime{Now: mb.clock.Now}, d2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Handle(ctx, MaintainInput{}); !errors.Is(err, repository.ErrWrongKey) {
		t.Fatalf("another KMS key: %v, want ErrWrongKey", err)
	}
}
