package repository

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

// bucketObject is one object of a simulated bucket: its bytes come from
// seed, its etag names the seed.
type bucketObject struct {
	key  string
	seed uint64
	size int
}

func (o bucketObject) etag() string { return fmt.Sprintf("%016x", o.seed) }

func makeBucket(n, avg int) []bucketObject {
	objs := make([]bucketObject, n)
	for i := range objs {
		objs[i] = bucketObject{key: keyName(i), seed: uint64(1000 + i), size: avg/3 + (i*7919)%(avg*4/3)}
	}
	return objs
}

// backupStorage writes a snapshot of objs the way a backup with a parent
// does: an object the parent holds unchanged is not fetched; every other
// object is "fetched" (its bytes generated) and saved. It returns the
// snapshot id, its storage table, and how many objects were fetched.
func backupStorage(t *testing.T, r *Repository, parent *SnapshotInfo, objs []bucketObject) (ID, *Snapshot, int64) {
	t.Helper()
	ctx := context.Background()
	var ps *Snapshot
	if parent != nil {
		ps = parent.Snapshot
	}
	u := r.NewReuser(ctx, ps)
	defer u.Close()
	tw := r.NewTableWriter(ctx)
	for _, o := range objs {
		e, ok, err := u.Lookup(o.key, int64(o.size), o.etag())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			l, n, err := r.SaveStream(ctx, bytes.NewReader(randomBytes(o.seed, o.size)))
			if err != nil {
				t.Fatal(err)
			}
			e = StorageEntry{Key: o.key, Size: n, ETag: o.etag(), ContentType: "application/octet-stream", Chunks: l}
		}
		if err := tw.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	table, err := tw.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{SourceURL: "http://src", Storage: table}
	if parent != nil {
		s.Parent = parent.ID
	}
	id, err := r.SaveSnapshot(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	return id, s, u.Fetched
}

func runIncremental(t *testing.T, store pipeline.BlobStore, n, avg int) {
	ctx := context.Background()
	r := initRepo(t, store)
	objs := makeBucket(n, avg)
	id1, s1, fetched1 := backupStorage(t, r, nil, objs)
	first := r.Stats()
	if fetched1 != int64(n) {
		t.Fatalf("first backup fetched %d of %d", fetched1, n)
	}

	// 1 % of the objects change (new bytes, new etag).
	changed := n / 100
	for i := 0; i < changed; i++ {
		j := i * 100
		objs[j].seed += 1 << 32
	}
	_, s2, fetched2 := backupStorage(t, r, &SnapshotInfo{ID: id1, Snapshot: s1}, objs)
	second := r.Stats()
	written2 := second.Written - first.Written
	ratio := float64(written2) / float64(first.Written)
	t.Logf("%d objects, %d bytes: first snapshot wrote %d bytes (%d packs)", n, s1.Storage.Bytes, first.Written, first.Packs)
	t.Logf("second snapshot after %d changed objects: fetched %d, wrote %d bytes = %.2f%% of the first (%d new chunks, %d reused)",
		changed, fetched2, written2, 100*ratio, second.ChunksNew-first.ChunksNew, second.ChunksDup-first.ChunksDup)
	if fetched2 != int64(changed) {
		t.Fatalf("second backup fetched %d objects, want only the %d changed", fetched2, changed)
	}
	if ratio > 0.02 {
		t.Fatalf("second snapshot wrote %.2f%% of the first, want about 1%%", 100*ratio)
	}

	// Both snapshots read back object by object.
	r2, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	err = r2.ReadTable(ctx, s2.Storage, func(e StorageEntry) error {
		if i%97 == 0 || i%100 == 0 {
			if got := load(t, r2, e.Chunks); !bytes.Equal(got, randomBytes(objs[i].seed, objs[i].size)) {
				t.Fatalf("object %s does not read back", e.Key)
			}
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := r2.Check(ctx, true, 100); err != nil || rep.Snapshots != 2 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

func TestIncrementalStorageFS(t *testing.T) {
	store, _ := newStore(t)
	runIncremental(t, store, 2000, 48<<10) // the bench's M=2000, ~96 MiB
}

func TestIncrementalStorageS3(t *testing.T) {
	client := motoserver.Clients(t).S3()
	bucket := motoserver.Name(t, "repo")
	if _, err := client.CreateBucket(context.Background(), &awss3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	store, err := s3.New(client, bucket, "repo", s3.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runIncremental(t, store, 300, 32<<10)
}
