package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/s3/s3test"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// copyFixture is a source object in one bucket and an empty destination
// bucket whose client counts its operations and can be cut short.
type copyFixture struct {
	src, dst *Store
	ops      *opCounter
	data     []byte
	key      string
	mu       sync.Mutex
	stopAt   int // cancel after this many answered UploadPartCopy requests
	stop     context.CancelFunc
}

// newCopyFixture builds the stores; front, when set, gets the moto
// endpoint and the destination bucket and returns the endpoint the
// destination's client uses.
func newCopyFixture(t *testing.T, size int, front func(moto, bucket string) string) *copyFixture {
	t.Helper()
	ctx := context.Background()
	srcStore := newStore(t, "", testOptions)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	key := "backups/a.tar.gz"
	if err := srcStore.Put(ctx, key, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	f := &copyFixture{src: srcStore, data: data, key: key, ops: &opCounter{n: map[string]int{}}}
	clients := motoserver.Clients(t)
	bucket := motoserver.Name(t, "dr")
	if _, err := clients.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	endpoint := motoserver.Start(t)
	if front != nil {
		endpoint = front(endpoint, bucket)
	}
	client := s3.NewFromConfig(clients.AWS(), func(o *s3.Options) {
		o.BaseEndpoint, o.UsePathStyle = aws.String(endpoint), true
		o.APIOptions = append(o.APIOptions, f.ops.register, f.register)
	})
	var err error
	if f.dst, err = New(client, bucket, "", testOptions); err != nil {
		t.Fatal(err)
	}
	return f
}

// cutAfter makes the context it returns end once n UploadPartCopy
// requests have been answered: a copy cut short (a killed function, a
// deadline) between parts.
func (f *copyFixture) cutAfter(n int) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.stopAt, f.stop = n, cancel
	f.mu.Unlock()
	return ctx
}

func (f *copyFixture) register(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("cutAfter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			if awsmiddleware.GetOperationName(ctx) == "UploadPartCopy" && err == nil {
				f.mu.Lock()
				if f.stopAt > 0 {
					if f.stopAt--; f.stopAt == 0 {
						f.stop()
					}
				}
				f.mu.Unlock()
			}
			return out, md, err
		}), middleware.After)
}

func (f *copyFixture) read(t *testing.T) []byte {
	t.Helper()
	rc, err := f.dst.Get(context.Background(), f.key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

// composite is the SHA-256 composite checksum of data uploaded in parts of
// the given sizes.
func composite(data []byte, sizes ...int) string {
	var sums []byte
	off := 0
	for _, n := range sizes {
		s := sha256.Sum256(data[off : off+n])
		sums = append(sums, s[:]...)
		off += n
	}
	c := sha256.Sum256(sums)
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(c[:]), len(sizes))
}

func TestCopyFrom(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t, 23*mib+17, nil)
	src, err := f.src.Source(ctx, f.key)
	if err != nil || src.Size != int64(len(f.data)) || src.ETag == "" || src.Key != f.key {
		t.Fatalf("source %+v %v", src, err)
	}
	var seen []CopiedPart
	res, err := f.dst.CopyFrom(ctx, src, f.key, CopyOptions{Verify: func(_ context.Context, parts []CopiedPart) error {
		seen = append([]CopiedPart(nil), parts...)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Copied != 5 || res.Resumed != 0 || len(res.Parts) != 5 || len(seen) != 5 {
		t.Fatalf("result %+v, verify saw %d parts", res, len(seen))
	}
	if seen[4].Offset != 20*mib || seen[4].Size != 3*mib+17 || seen[0].ETag == "" {
		t.Fatalf("parts %+v", seen)
	}
	if !bytes.Equal(f.read(t), f.data) {
		t.Fatal("the copy differs")
	}
	// No byte passed through the client: part copies, no part uploads.
	ops := f.ops.take()
	if ops["UploadPartCopy"] != 5 || ops["UploadPart"] != 0 || ops["PutObject"] != 0 || ops["CompleteMultipartUpload"] != 1 {
		t.Fatalf("operations %v", ops)
	}
	size, sum, err := f.dst.StoredChecksum(ctx, f.key)
	want := composite(f.data, 5*mib, 5*mib, 5*mib, 5*mib, 3*mib+17)
	if err != nil || size != int64(len(f.data)) || !strings.HasPrefix(want, sum) {
		t.Fatalf("stored checksum %d %q %v, want %s", size, sum, err, want)
	}
	// The key exists: refused before any copy, and it is left alone.
	_, err = f.dst.CopyFrom(ctx, src, f.key, CopyOptions{})
	if !errors.Is(err, blob.ErrExist) {
		t.Fatalf("copy onto an existing key: %v", err)
	}
	if ops := f.ops.take(); ops["UploadPartCopy"] != 0 || ops["CreateMultipartUpload"] != 0 {
		t.Fatalf("copied onto an existing key: %v", ops)
	}
	// Planned parts: any layout S3 accepts.
	res, err = f.dst.CopyFrom(ctx, src, "other", CopyOptions{Parts: []Range{{0, 6 * mib}, {6 * mib, 17*mib + 17}}})
	if err != nil || res.Copied != 2 {
		t.Fatalf("planned parts: %+v %v", res, err)
	}
	if _, sum, _ := f.dst.StoredChecksum(ctx, "other"); !strings.HasPrefix(composite(f.data, 6*mib, 17*mib+17), sum) {
		t.Fatalf("planned parts: checksum %s", sum)
	}
	for _, bad := range [][]Range{
		{{0, 4 * mib}, {4 * mib, 19*mib + 17}}, // a small part that is not the last
		{{0, 6 * mib}, {7 * mib, 16*mib + 17}}, // a gap
		{{0, 6 * mib}, {6 * mib, 6 * mib}},     // short of the end
		{{0, 6 * mib}, {6 * mib, 17*mib + 18}}, // past the end
		{{0, 6 * mib}, {6 * mib, 0}, {6 * mib, 17*mib + 17}},
	} {
		if _, err := f.dst.CopyFrom(ctx, src, "bad", CopyOptions{Parts: bad}); err == nil {
			t.Errorf("parts %v accepted", bad)
		}
	}
	// An empty source is an empty object.
	if err := f.src.Put(ctx, "empty", strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	esrc, _ := f.src.Source(ctx, "empty")
	if _, err := f.dst.CopyFrom(ctx, esrc, "empty", CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if info, err := f.dst.Stat(ctx, "empty"); err != nil || info.Size != 0 {
		t.Fatalf("empty copy: %+v %v", info, err)
	}
}

// A copy interrupted after two parts resumes from the third: the next
// call finds the upload (ListMultipartUploads), its parts (ListParts), and
// copies only the three missing ones.
func TestCopyFromResumes(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t, 23*mib+17, nil)
	src, err := f.src.Source(ctx, f.key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.dst.CopyFrom(f.cutAfter(2), src, f.key, CopyOptions{Concurrency: 1, Verify: func(context.Context, []CopiedPart) error {
		t.Error("verified an unfinished copy")
		return nil
	}})
	if !errors.Is(err, context.Canceled) || pipeline.IsPermanent(err) {
		t.Fatalf("interrupted copy: %v", err)
	}
	if _, err := f.dst.Stat(ctx, f.key); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("an interrupted copy created the key: %v", err)
	}
	ups, err := f.dst.Uploads(ctx, f.key)
	if err != nil || len(ups) != 1 {
		t.Fatalf("uploads %v %v", ups, err)
	}
	for _, nums := range ups {
		if fmt.Sprint(nums) != "[1 2]" {
			t.Fatalf("the interrupted upload holds parts %v", nums)
		}
	}
	f.ops.take()
	res, err := f.dst.CopyFrom(ctx, src, f.key, CopyOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	ops := f.ops.take()
	if res.Resumed != 2 || res.Copied != 3 || ops["UploadPartCopy"] != 3 || ops["ListParts"] != 1 || ops["CreateMultipartUpload"] != 0 {
		t.Fatalf("resumed copy: %+v, operations %v", res, ops)
	}
	if !bytes.Equal(f.read(t), f.data) {
		t.Fatal("the resumed copy differs")
	}
	if ups, err := f.dst.Uploads(ctx, f.key); err != nil || len(ups) != 0 {
		t.Fatalf("uploads left after completion: %v %v", ups, err)
	}
}

// An upload whose parts do not fit the plan (another layout) is dropped
// and the copy starts afresh; parts Verify refuses are copied again once;
// a Verify error marked permanent aborts the upload.
func TestCopyFromResumeChecks(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t, 23*mib+17, nil)
	src, _ := f.src.Source(ctx, f.key)
	if _, err := f.dst.CopyFrom(f.cutAfter(3), src, f.key, CopyOptions{Concurrency: 1}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	// Another layout: part 3 is now 6 MiB.
	plan := []Range{{0, 5 * mib}, {5 * mib, 5 * mib}, {10 * mib, 6 * mib}, {16 * mib, 7*mib + 17}}
	f.ops.take()
	res, err := f.dst.CopyFrom(ctx, src, "elsewhere", CopyOptions{}) // another key's upload is not touched
	if err != nil {
		t.Fatal(err)
	}
	if res, err = f.dst.CopyFrom(ctx, src, f.key, CopyOptions{Parts: plan, Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	if ops := f.ops.take(); res.Resumed != 0 || res.Copied != 4 || ops["AbortMultipartUpload"] != 1 {
		t.Fatalf("resume of another layout: %+v, operations %v", res, ops)
	}
	if !bytes.Equal(f.read(t), f.data) {
		t.Fatal("the copy differs")
	}

	// The same layout, but Verify finds resumed part 2 wrong (say, copied
	// from an older version of the source): it is copied again.
	if _, err := f.dst.CopyFrom(f.cutAfter(3), src, "again", CopyOptions{Concurrency: 1}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	calls := 0
	f.ops.take()
	res, err = f.dst.CopyFrom(ctx, src, "again", CopyOptions{Concurrency: 1, Verify: func(_ context.Context, parts []CopiedPart) error {
		calls++
		if calls == 1 {
			if !parts[0].Resumed || !parts[1].Resumed || !parts[2].Resumed || parts[3].Resumed {
				t.Errorf("resumed flags %+v", parts)
			}
			return &BadPartsError{Numbers: []int32{2}, Err: errors.New("not the manifest's bytes")}
		}
		if parts[1].Resumed {
			t.Error("part 2 not copied again")
		}
		return nil
	}})
	if err != nil || calls != 2 {
		t.Fatalf("recopy: %+v %v (verify called %d times)", res, err, calls)
	}
	if ops := f.ops.take(); res.Recopied != 1 || res.Resumed != 2 || res.Copied != 3 || ops["UploadPartCopy"] != 3 { // parts 4 and 5, part 2 again
		t.Fatalf("result %+v, operations %v", res, ops)
	}

	// Verify refuses for good: nothing is created, the upload is gone.
	_, err = f.dst.CopyFrom(ctx, src, "refused", CopyOptions{Verify: func(context.Context, []CopiedPart) error {
		return pipeline.Permanent(errors.New("the source does not match its manifest"))
	}})
	if err == nil || !pipeline.IsPermanent(err) {
		t.Fatalf("refused copy: %v", err)
	}
	if _, err := f.dst.Stat(ctx, "refused"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("a refused copy was created: %v", err)
	}
	if ups, _ := f.dst.Uploads(ctx, "refused"); len(ups) != 0 {
		t.Fatalf("a refused copy left its upload: %v", ups)
	}
	// A transient Verify failure keeps the upload for the next call.
	_, err = f.dst.CopyFrom(ctx, src, "later", CopyOptions{Verify: func(context.Context, []CopiedPart) error {
		return errors.New("could not read the source just now")
	}})
	if err == nil || pipeline.IsPermanent(err) {
		t.Fatalf("transient verify failure: %v", err)
	}
	if ups, _ := f.dst.Uploads(ctx, "later"); len(ups) != 1 {
		t.Fatalf("uploads after a transient failure: %v", ups)
	}
}

// A copy is pinned to the version Source saw: the source replaced in the
// meantime (versioned bucket) still gives the bytes of that version.
func TestCopyFromPinsTheVersion(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t, 11*mib, nil)
	if _, err := f.src.client.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(f.src.bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	if err := f.src.Put(ctx, f.key, bytes.NewReader(f.data)); err != nil {
		t.Fatal(err)
	}
	src, err := f.src.Source(ctx, f.key)
	if err != nil || src.VersionID == "" {
		t.Fatalf("versioned source %+v %v", src, err)
	}
	if err := f.src.Put(ctx, f.key, bytes.NewReader(bytes.Repeat([]byte("x"), 11*mib))); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dst.CopyFrom(ctx, src, f.key, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.read(t), f.data) {
		t.Fatal("the copy is not of the pinned version")
	}
}

// Behind the DR bucket's policy (simulated: moto does not evaluate bucket
// policies): a server-side copy passes (part copies are exempt, the
// completion carries If-None-Match), a plain Put and a delete are refused,
// and no copy replaces an existing object.
func TestCopyFromUnderTheDRPolicy(t *testing.T) {
	ctx := context.Background()
	var proxy *s3test.PolicyProxy
	f := newCopyFixture(t, 12*mib, func(moto, bucket string) string {
		proxy = s3test.NewPolicyProxy(t, moto, s3test.Policy{Buckets: []string{bucket}})
		return proxy.URL
	})
	src, _ := f.src.Source(ctx, f.key)
	if _, err := f.dst.CopyFrom(ctx, src, f.key, CopyOptions{}); err != nil {
		t.Fatalf("copy under the policy: %v (denied: %v)", err, proxy.Denied())
	}
	if err := f.dst.Put(ctx, f.key, strings.NewReader("overwrite")); err == nil || !pipeline.IsPermanent(err) {
		t.Fatalf("Put under the policy: %v", err)
	}
	if err := f.dst.Put(ctx, "big", bytes.NewReader(make([]byte, 11*mib))); err == nil {
		t.Fatal("a multipart Put without If-None-Match was completed")
	}
	if err := f.dst.Delete(ctx, f.key); err == nil {
		t.Fatal("Delete under the policy")
	}
	if _, err := f.dst.CopyFrom(ctx, src, f.key, CopyOptions{}); !errors.Is(err, blob.ErrExist) {
		t.Fatalf("second copy: %v", err)
	}
	if err := f.dst.Create(ctx, f.key, strings.NewReader("overwrite")); !errors.Is(err, blob.ErrExist) {
		t.Fatalf("Create of an existing key: %v", err)
	}
	if err := f.dst.Create(ctx, "new", bytes.NewReader(make([]byte, 11*mib))); err != nil {
		t.Fatalf("multipart Create under the policy: %v", err)
	}
	if !bytes.Equal(f.read(t), f.data) {
		t.Fatal("the object was replaced")
	}
	if len(proxy.Denied()) != 3 {
		t.Fatalf("denied %v", proxy.Denied())
	}
}
