package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// verifiedSetup writes four snapshots of one source that share a part:
// the older three pass Verify, the newest is taken after it. Forget with
// Last 1 must keep the newest (last) and the third (newest verified).
type verifiedSetup struct {
	ids     []ID
	content [][]byte
}

func setupVerified(t *testing.T, store pipeline.BlobStore) verifiedSetup {
	t.Helper()
	ctx := context.Background()
	r, err := Init(ctx, store, testPass, smallOptions)
	if err != nil {
		t.Fatal(err)
	}
	shared := randomBytes(50, 200<<10)
	var vs verifiedSetup
	for i := range 4 {
		if i == 3 {
			rep, err := r.Verify(ctx)
			if err != nil || len(rep.Verified) != 3 {
				t.Fatalf("verify: %v, %+v; want 3 snapshots verified", err, rep)
			}
		}
		data := append(bytes.Clone(shared), randomBytes(uint64(80+i), 300<<10)...)
		l, _, err := r.SaveStream(ctx, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		id, err := r.SaveSnapshot(ctx, &Snapshot{SourceURL: "http://a", Time: t0.Add(time.Duration(i-4) * 24 * time.Hour), Units: []Unit{{Section: "config", Chunks: l}}})
		if err != nil {
			t.Fatal(err)
		}
		vs.ids = append(vs.ids, id)
		vs.content = append(vs.content, data)
	}
	return vs
}

// checkKept verifies the repository with read-data and the content of
// the snapshots forget must keep: the newest and the newest verified.
func (vs verifiedSetup) checkKept(t *testing.T, store pipeline.BlobStore) {
	t.Helper()
	verifyRepo(t, store, vs.ids[3], vs.content[3])
	verifyRepo(t, store, vs.ids[2], vs.content[2])
}

func TestForgetKeepsNewestVerified(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	vs := setupVerified(t, store)
	r, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := r.Forget(ctx, Policy{Last: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[ID]string{vs.ids[3]: "last snapshot", vs.ids[2]: ReasonVerified}
	for _, d := range ds {
		reason, keep := want[d.Snapshot.ID]
		if d.Keep != keep || keep && !strings.Contains(strings.Join(d.Reasons, ","), reason) {
			t.Errorf("snapshot %d: keep %v %v; want keep %v (%s)", d.Index, d.Keep, d.Reasons, keep, reason)
		}
		if d.Verified != (d.Snapshot.ID != vs.ids[3]) {
			t.Errorf("snapshot %d: verified %v", d.Index, d.Verified)
		}
	}
	if _, err := r.Forget(ctx, Policy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil || len(snaps) != 2 || snaps[0].ID != vs.ids[2] || snaps[1].ID != vs.ids[3] {
		t.Fatalf("after forget: %d snapshots, %v; want the newest verified and the newest", len(snaps), err)
	}
	ver, err := r.VerifiedSnapshots(ctx)
	if _, ok := ver[vs.ids[2]]; err != nil || len(ver) != 1 || !ok {
		t.Fatalf("verified markers after forget: %v, %v; want only the kept one's", ver, err)
	}
	if err := prune(ctx, store); err != nil {
		t.Fatal(err)
	}
	vs.checkKept(t, store)

	// A marker is bound to its snapshot: copied to another name, it does
	// not open.
	b, err := getAll(ctx, store, prefixVerified+vs.ids[2].String())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, prefixVerified+vs.ids[3].String(), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.VerifiedSnapshots(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a marker under another snapshot's name: %v, want ErrCorrupt", err)
	}
}

// lockedStore refuses deletes of keys match selects, as a store under
// retention does.
func lockedStore(store pipeline.BlobStore, match func(string) bool) *blobtest.Faulty {
	f := blobtest.NewFaulty(store, false)
	f.Inject(blobtest.Fault{Op: blobtest.OpDelete, Match: match, Err: blob.ErrLocked})
	return f
}

// TestPruneSkipsLockedPacks: the store refuses to delete one pack; prune
// skips it, reports it, keeps it marked, and deletes it once the lock is
// gone.
func TestPruneSkipsLockedPacks(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	keep, content := setupForgotten(t, store)
	var locked string
	f := lockedStore(store, func(k string) bool {
		if strings.HasPrefix(k, prefixData) && (locked == "" || locked == k) {
			locked = k
			return true
		}
		return false
	})
	r, err := Open(ctx, f, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0 }}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(2 * grace) }})
	if err != nil {
		t.Fatalf("prune with a locked pack: %v", err)
	}
	t.Logf("prune with a locked pack: %+v", rep)
	if len(rep.Locked) != 1 || rep.Locked[0] != locked || len(rep.Deleted) == 0 {
		t.Fatalf("report %+v; want the other packs deleted and %s reported locked", rep, locked)
	}
	if _, err := store.Stat(ctx, locked); err != nil {
		t.Fatalf("the locked pack: %v", err)
	}
	verifyRepo(t, store, keep, content)
	if r.marked[mustParseID(t, locked[strings.LastIndex(locked, "/")+1:])].IsZero() {
		t.Fatal("the locked pack is no longer marked: a writer could reuse it")
	}
	// Still locked: reported again, nothing else happens.
	rep, err = r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(3 * grace) }})
	if err != nil || len(rep.Locked) != 1 || len(rep.Deleted) != 0 {
		t.Fatalf("prune while still locked: %+v, %v", rep, err)
	}
	// The retention ends.
	f.Clear()
	rep, err = r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(4 * grace) }})
	if err != nil || len(rep.Locked) != 0 || len(rep.Deleted) != 1 || rep.Deleted[0].String() != locked[strings.LastIndex(locked, "/")+1:] {
		t.Fatalf("prune after the lock: %+v, %v; want the pack deleted", rep, err)
	}
	if after := verifyRepo(t, store, keep, content); len(after.Unreferenced) != 0 {
		t.Fatalf("unindexed packs left: %v", after.Unreferenced)
	}
}

func mustParseID(t *testing.T, s string) ID {
	t.Helper()
	id, err := ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPruneKeepsPacksOfALockedIndex: when the store refuses to delete the
// old index files, the packs they name must stay (an index naming a
// deleted pack is a broken repository); the deletes happen once the lock
// is gone.
func TestPruneKeepsPacksOfALockedIndex(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	keep, content := setupForgotten(t, store)
	f := lockedStore(store, func(k string) bool { return strings.HasPrefix(k, prefixIndex) })
	r, err := Open(ctx, f, testPass)
	if err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{t0, t0.Add(2 * grace)} {
		rep, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("prune at %v with locked index files: %+v", now, rep)
		if len(rep.Deleted) != 0 {
			t.Fatalf("deleted %d packs an undeletable index names", len(rep.Deleted))
		}
	}
	verifyRepo(t, store, keep, content)
	f.Clear()
	rep, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(3 * grace) }})
	if err != nil || len(rep.Deleted) == 0 || len(rep.Locked) != 0 {
		t.Fatalf("prune after the lock: %+v, %v; want the packs deleted", rep, err)
	}
	if after := verifyRepo(t, store, keep, content); len(after.Unreferenced) != 0 {
		t.Fatalf("unindexed packs left: %v", after.Unreferenced)
	}
}

func TestForgetSkipsLockedSnapshots(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	vs := setupVerified(t, store)
	r, err := Open(ctx, lockedStore(store, func(k string) bool { return k == prefixSnaps+vs.ids[0].String() }), testPass)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := r.Forget(ctx, Policy{Last: 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	locked := 0
	for _, d := range ds {
		if d.Locked {
			locked++
			if d.Snapshot.ID != vs.ids[0] {
				t.Errorf("snapshot %s reported locked", d.Snapshot.ID)
			}
		}
	}
	snaps, _ := r.ListSnapshots(ctx)
	if locked != 1 || len(snaps) != 3 {
		t.Fatalf("%d reported locked, %d snapshots left; want 1 and 3", locked, len(snaps))
	}
	// Its marker stays with it.
	if ver, err := r.VerifiedSnapshots(ctx); err != nil || len(ver) != 2 {
		t.Fatalf("verified markers: %v, %v; want the locked one's and the kept one's", ver, err)
	}
}

// forgetAndPrune is the retention job: forget by policy, then prune both
// phases.
func forgetAndPrune(ctx context.Context, store pipeline.BlobStore) error {
	r, err := Open(ctx, store, testPass)
	if err != nil {
		return err
	}
	if _, err := r.Forget(ctx, Policy{Last: 1}, false); err != nil {
		return err
	}
	return prune(ctx, store)
}

// TestForgetPruneCrashAtEveryStep kills the retention job (forget, then
// prune) at each of its writes and deletes, before the call and after it
// with the answer lost. The repository must check clean with read-data
// and keep the newest and the newest verified snapshot intact; running
// the job again must finish it: the snapshots and markers a clean run
// leaves, no unindexed pack, nothing left to mark.
func TestForgetPruneCrashAtEveryStep(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	setupVerified(t, store)
	f := blobtest.NewFaulty(store, true)
	if err := forgetAndPrune(ctx, f); err != nil {
		t.Fatal(err)
	}
	steps := blobtest.Writes(f.Calls())
	t.Logf("a clean forget and prune makes %d writes and deletes", len(steps))
	deletes := 0
	for _, s := range steps {
		if s.Op == blobtest.OpDelete {
			deletes++
		}
	}
	if deletes < 6 {
		t.Fatalf("a clean job made %d deletes", deletes)
	}
	for _, s := range steps {
		for _, after := range []bool{false, true} {
			name := fmt.Sprintf("%s#%d(%s)/after=%v", s.Op, s.Nth, s.Key[:min(len(s.Key), 14)], after)
			t.Run(name, func(t *testing.T) {
				store, _ := newStore(t)
				vs := setupVerified(t, store)
				f := blobtest.NewFaulty(store, false)
				f.Inject(s.Fault(after))
				if err := forgetAndPrune(ctx, f); err == nil {
					t.Fatal("the injected fault did not stop the job")
				}
				vs.checkKept(t, store)
				if err := forgetAndPrune(ctx, store); err != nil {
					t.Fatal(err)
				}
				vs.checkJobDone(t, store)
			})
		}
	}
}

// checkJobDone checks what a finished retention job leaves.
func (vs verifiedSetup) checkJobDone(t *testing.T, store pipeline.BlobStore) {
	t.Helper()
	ctx := context.Background()
	r, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(4 * grace) }}); err != nil {
		t.Fatal(err)
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil || len(snaps) != 2 || snaps[0].ID != vs.ids[2] || snaps[1].ID != vs.ids[3] {
		t.Fatalf("snapshots after the job: %d, %v", len(snaps), err)
	}
	ver, err := r.VerifiedSnapshots(ctx)
	if _, ok := ver[vs.ids[2]]; err != nil || len(ver) != 1 || !ok {
		t.Fatalf("verified markers after the job: %v, %v", ver, err)
	}
	if rep := verifyRepoAll(t, store, vs); len(rep.Unreferenced) != 0 {
		t.Fatalf("%d unindexed packs left after the job", len(rep.Unreferenced))
	}
	rep, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return t0.Add(6 * grace) }})
	if err != nil || rep.Marked != 0 || rep.Waiting != 0 || len(rep.Deleted) != 0 {
		t.Fatalf("a prune after the job finished: %+v, %v", rep, err)
	}
}

func verifyRepoAll(t *testing.T, store pipeline.BlobStore, vs verifiedSetup) CheckReport {
	t.Helper()
	verifyRepo(t, store, vs.ids[2], vs.content[2])
	return verifyRepo(t, store, vs.ids[3], vs.content[3])
}

// TestPruneAcrossABackup: a storage backup with a parent (Reuser, then
// SaveStream for what changed, SaveSnapshot at the end) runs while prune
// marks, while a prune inside the grace period runs, and is followed by
// prunes after it. The backup reuses chunks only a forgotten snapshot
// held, and packs it wrote before its index existed are stored but
// unindexed while prune looks. Nothing is lost: the repository verifies
// with read-data and the backup's snapshot exports intact.
func TestPruneAcrossABackup(t *testing.T) {
	ctx := context.Background()
	store, _ := newStore(t)
	r, err := Init(ctx, store, testPass, smallOptions)
	if err != nil {
		t.Fatal(err)
	}
	objs := makeBucket(60, 40<<10)
	old := makeBucket(20, 40<<10)
	for i := range old {
		old[i].seed += 7 << 32 // content only the forgotten snapshot has
	}
	backupStorage(t, r, nil, old)
	p1, s1, _ := backupStorage(t, r, nil, objs)
	if _, err := r.Forget(ctx, Policy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	// The next state of the bucket: a third changed, and the forgotten
	// snapshot's objects back under new keys.
	next := append([]bucketObject(nil), objs...)
	for i := 0; i < len(next); i += 3 {
		next[i].seed += 1 << 32
	}
	for i, o := range old {
		next = append(next, bucketObject{key: fmt.Sprintf("zz/%03d", i), seed: o.seed, size: o.size})
	}

	b, err := Open(ctx, store, testPass) // the backup opens before the prune
	if err != nil {
		t.Fatal(err)
	}
	pr, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	var reps []PruneReport
	at := func(now time.Time) {
		rep, err := pr.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return now }})
		if err != nil {
			t.Error(err)
		}
		reps = append(reps, rep)
	}
	u := b.NewReuser(ctx, s1)
	tw := b.NewTableWriter(ctx)
	done := make(chan struct{})
	for i, o := range next {
		switch i {
		case len(next) / 3:
			go func() { defer close(done); at(t0) }() // the mark, concurrent with the backup
		case 2 * len(next) / 3:
			<-done
			at(t0.Add(grace / 2)) // within the grace period: nothing goes
		}
		e, ok, err := u.Lookup(o.key, int64(o.size), o.etag())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			l, n, err := b.SaveStream(ctx, bytes.NewReader(randomBytes(o.seed, o.size)))
			if err != nil {
				t.Fatal(err)
			}
			e = StorageEntry{Key: o.key, Size: n, ETag: o.etag(), ContentType: "application/octet-stream", Chunks: l}
		}
		if err := tw.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	u.Close()
	table, err := tw.Close()
	if err != nil {
		t.Fatal(err)
	}
	s2 := &Snapshot{SourceURL: "http://src", Time: t0.Add(grace / 2), Parent: p1, Storage: table,
		Header: archive.Header{Version: archive.Version, Timestamp: archive.FormatTimestamp(t0), Source: archive.SourceDocker}}
	for _, u := range []Unit{{Section: archive.SectionControlD1, Size: 12}, {Section: archive.SectionAuthD1, Size: 12}, {Section: archive.SectionConfig, Size: 2}} {
		raw := map[int64]string{12: `{"_meta":[]}`, 2: `{}`}[u.Size]
		if u.Chunks, err = b.SaveBytes(ctx, []byte(raw)); err != nil {
			t.Fatal(err)
		}
		s2.Units = append(s2.Units, u)
	}
	id2, err := b.SaveSnapshot(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	at(t0.Add(2 * grace))
	at(t0.Add(4 * grace))
	t.Logf("backup: %d reused, %d fetched, %+v; prunes: %+v", u.Reused, u.Fetched, b.Stats(), reps)
	if reps[0].Marked == 0 || reps[2].Rescued == 0 || len(reps[2].Deleted)+len(reps[3].Deleted) == 0 {
		t.Fatalf("the prunes did not mark, rescue and delete: %+v", reps)
	}
	if u.Reused == 0 || b.Stats().ChunksDup == 0 {
		t.Fatal("the backup reused nothing")
	}

	r2, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := r2.Verify(ctx); err != nil || len(rep.Unreferenced) != 0 {
		t.Fatalf("verify after the backup and the prunes: %v, %+v", err, rep)
	}
	var buf bytes.Buffer
	if err := r2.Export(ctx, s2, &buf, archive.TarGz); err != nil {
		t.Fatalf("export of the backup's snapshot %s: %v", id2, err)
	}
	got := map[string]bool{}
	for _, body := range tarContent(t, buf.Bytes()) {
		got[sha256Hex(body)] = true
	}
	for _, o := range next {
		if !got[sha256Hex(randomBytes(o.seed, o.size))] {
			t.Fatalf("object %s does not export intact", o.key)
		}
	}
}

// TestPruneOnObjectLockBucket: on an S3 bucket with Object Lock (and so
// versioning) and a default retention, a plain DELETE is not refused: it
// adds a delete marker and the locked version stays until its retention
// ends. Prune therefore completes, the repository checks clean, and the
// bytes of the packs it dropped remain in the bucket as noncurrent
// versions (a lifecycle rule expires them after the retention).
func TestPruneOnObjectLockBucket(t *testing.T) {
	ctx := context.Background()
	client := motoserver.Clients(t).S3()
	bucket := motoserver.Name(t, "locked")
	if _, err := client.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(bucket), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	_, err := client.PutObjectLockConfiguration(ctx, &awss3.PutObjectLockConfigurationInput{Bucket: aws.String(bucket),
		ObjectLockConfiguration: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled,
			Rule: &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeGovernance, Days: aws.Int32(1)}}}})
	if err != nil {
		t.Fatalf("object lock configuration: %v", err)
	}
	store, err := s3.New(client, bucket, "repo/", s3.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keep, content := setupForgotten(t, store)
	r, err := Open(ctx, store, testPass)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []ID
	for _, now := range []time.Time{t0, t0.Add(2 * grace)} {
		rep, err := r.Prune(ctx, PruneOptions{Grace: grace, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatalf("prune on an Object Lock bucket: %v", err)
		}
		deleted = append(deleted, rep.Deleted...)
		if len(rep.Locked) != 0 {
			t.Fatalf("prune reported %v locked; S3 takes a delete marker", rep.Locked)
		}
	}
	if len(deleted) == 0 {
		t.Fatal("nothing pruned")
	}
	verifyRepo(t, store, keep, content)
	vers, err := client.ListObjectVersions(ctx, &awss3.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: aws.String("repo/" + prefixData)})
	if err != nil {
		t.Fatal(err)
	}
	retained := map[string]bool{}
	for _, v := range vers.Versions {
		retained[aws.ToString(v.Key)] = true
	}
	for _, id := range deleted {
		if !retained["repo/"+packKey(id)] {
			t.Fatalf("pack %s: no retained version", id)
		}
	}
	t.Logf("%d packs pruned; %d delete markers, their locked versions retained", len(deleted), len(vers.DeleteMarkers))
}
