package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

const mib = 1 << 20

// opCounter counts the S3 operations a client sends, through the SDK's
// own middleware stack (the requests still go to the real server).
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *opCounter) register(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("opCounter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.n[awsmiddleware.GetOperationName(ctx)]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

func countingStore(t *testing.T, o Options) (*Store, *opCounter) {
	t.Helper()
	c := &opCounter{n: map[string]int{}}
	client := motoserver.Clients(t).S3(func(so *s3.Options) { so.APIOptions = append(so.APIOptions, c.register) })
	bucket := motoserver.Name(t, "bucket")
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	s, err := New(client, bucket, "", o)
	if err != nil {
		t.Fatal(err)
	}
	c.take()
	return s, c
}

func wantOps(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s sent %v, want %v", what, got, want)
	}
}

func TestUploadPaths(t *testing.T) {
	s, ops := countingStore(t, testOptions)
	ctx := context.Background()
	if err := s.Put(ctx, "small", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	wantOps(t, "small Put", ops.take(), map[string]int{"PutObject": 1})
	if err := s.Put(ctx, "exact", blobtest.Random(1, MinPartSize)); err != nil {
		t.Fatal(err)
	}
	wantOps(t, "Put of exactly one part", ops.take(), map[string]int{"CreateMultipartUpload": 1, "UploadPart": 1, "CompleteMultipartUpload": 1})
	if err := s.Put(ctx, "big", blobtest.Random(1, 12*mib)); err != nil {
		t.Fatal(err)
	}
	wantOps(t, "12 MiB Put", ops.take(), map[string]int{"CreateMultipartUpload": 1, "UploadPart": 3, "CompleteMultipartUpload": 1})

	// Failures abort the upload so no parts linger.
	boom := errors.New("boom")
	err := s.Put(ctx, "failed", io.MultiReader(blobtest.Random(2, 11*mib), errReader{boom}))
	if !errors.Is(err, boom) {
		t.Fatalf("Put = %v", err)
	}
	if n := ops.take(); n["AbortMultipartUpload"] != 1 || n["CompleteMultipartUpload"] != 0 {
		t.Errorf("failed Put sent %v, want one abort and no complete", n)
	}
	err = s.Create(ctx, "big", blobtest.Random(3, 6*mib))
	if !errors.Is(err, blob.ErrExist) {
		t.Fatalf("Create over big = %v", err)
	}
	if n := ops.take(); n["AbortMultipartUpload"] != 1 {
		t.Errorf("refused multipart Create sent %v, want an abort", n)
	}
	out, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left open", len(out.Uploads))
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestComposePlan(t *testing.T) {
	s, ops := countingStore(t, testOptions)
	ctx := context.Background()
	sizes := []int64{1024, 6 * mib, 100, 2 * mib, 5*mib + 1, 0, 3 * mib, 7 * mib, 8 * mib, 1}
	var srcs []string
	want := sha256.New()
	for i, n := range sizes {
		k := fmt.Sprintf("src/%d", i)
		if err := s.Put(ctx, k, blobtest.Random(uint64(i), n)); err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(want, blobtest.Random(uint64(i), n))
		srcs = append(srcs, k)
	}
	ops.take()
	if err := s.Compose(ctx, "dst", srcs); err != nil {
		t.Fatal(err)
	}
	// Merged: [1K+6M] [100+2M+5M+1] [3M+first 2M of 7M] [1]; copied: the
	// last 5M of 7M and all of 8M.
	wantOps(t, "Compose", ops.take(), map[string]int{
		"HeadObject": 10, "GetObject": 8, "CreateMultipartUpload": 1,
		"UploadPart": 4, "UploadPartCopy": 2, "CompleteMultipartUpload": 1,
	})
	rc, err := s.Get(ctx, "dst")
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	_, err = io.Copy(got, rc)
	rc.Close()
	if err != nil || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("composed content differs (%v)", err)
	}

	// Sources above the copy part limit are split into several copies.
	s.copyPartMax = 10 * mib
	if err := s.Put(ctx, "huge", blobtest.Random(99, 23*mib)); err != nil {
		t.Fatal(err)
	}
	ops.take()
	if err := s.Compose(ctx, "split", []string{"huge"}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, "split Compose", ops.take(), map[string]int{
		"HeadObject": 1, "CreateMultipartUpload": 1, "UploadPartCopy": 3, "CompleteMultipartUpload": 1,
	})
	info, err := s.Stat(ctx, "split")
	if err != nil || info.Size != 23*mib {
		t.Fatalf("split Compose: %+v, %v", info, err)
	}
}

func TestEncryptionAndChecksums(t *testing.T) {
	const kmsKey = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
	for _, alg := range []Checksum{ChecksumSHA256, ChecksumCRC32C} {
		t.Run(string(alg), func(t *testing.T) {
			o := testOptions
			o.KMSKeyID = kmsKey
			o.Checksum = alg
			s := newStore(t, "", o)
			ctx := context.Background()
			if err := s.Put(ctx, "small", strings.NewReader("hello")); err != nil {
				t.Fatal(err)
			}
			if err := s.Create(ctx, "big", blobtest.Random(1, 11*mib)); err != nil {
				t.Fatal(err)
			}
			if err := s.Compose(ctx, "composed", []string{"small", "big"}); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"small", "big", "composed"} {
				out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
					Bucket: aws.String(s.bucket), Key: aws.String(k), ChecksumMode: types.ChecksumModeEnabled,
				})
				if err != nil {
					t.Fatal(err)
				}
				if out.ServerSideEncryption != types.ServerSideEncryptionAwsKms || aws.ToString(out.SSEKMSKeyId) != kmsKey {
					t.Errorf("%s: encryption %q key %q, want aws:kms with %s", k, out.ServerSideEncryption, aws.ToString(out.SSEKMSKeyId), kmsKey)
				}
				if k != "small" {
					continue
				}
				// The server keeps the checksum we sent with the body.
				var want, got string
				if alg == ChecksumSHA256 {
					sum := sha256.Sum256([]byte("hello"))
					want, got = base64.StdEncoding.EncodeToString(sum[:]), aws.ToString(out.ChecksumSHA256)
				} else {
					sum := crc32.Checksum([]byte("hello"), crc32.MakeTable(crc32.Castagnoli))
					want = base64.StdEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
					got = aws.ToString(out.ChecksumCRC32C)
				}
				if got != want {
					t.Errorf("%s checksum = %q, want %q", alg, got, want)
				}
			}
		})
	}
}

func TestPrefixIsolation(t *testing.T) {
	client, bucket := newBucket(t)
	inner, err := New(client, bucket, "tenant/", testOptions)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := New(client, bucket, "", testOptions)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"a", "b/c"} {
		if err := inner.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := outer.Put(ctx, "tenantless", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	listKeys := func(s *Store) []string {
		var ks []string
		if err := s.List(ctx, "", func(i blob.Info) error { ks = append(ks, i.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		return ks
	}
	if got := listKeys(inner); !slices.Equal(got, []string{"a", "b/c"}) {
		t.Errorf("prefixed List = %q", got)
	}
	if got := listKeys(outer); !slices.Equal(got, []string{"tenant/a", "tenant/b/c", "tenantless"}) {
		t.Errorf("bucket List = %q", got)
	}
}

func TestNew(t *testing.T) {
	client := s3.New(s3.Options{Region: "us-east-1"})
	for _, c := range []struct {
		bucket, prefix string
		o              Options
	}{
		{"", "", Options{}},
		{"b", "/abs/", Options{}},
		{"b", "a//", Options{}},
		{"b", "", Options{PartSize: MinPartSize - 1}},
		{"b", "", Options{Concurrency: -1}},
		{"b", "", Options{Checksum: "MD5"}},
		{"b", "", Options{PageSize: 1001}},
	} {
		if _, err := New(client, c.bucket, c.prefix, c.o); err == nil {
			t.Errorf("New(%q, %q, %+v) accepted a bad configuration", c.bucket, c.prefix, c.o)
		}
	}
	if _, err := New(nil, "b", "", Options{}); err == nil {
		t.Error("New accepted a nil client")
	}
}

// TestErrorClasses checks the permanent/transient split against a real
// HTTP server that answers like S3 does when throttling or denying.
func TestErrorClasses(t *testing.T) {
	var status atomic.Int32
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(int(status.Load()))
		_, _ = io.WriteString(w, body.Load().(string))
	}))
	defer srv.Close()
	clients, err := awsconfig.Load(context.Background(), awsconfig.Config{
		Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s", Endpoint: srv.URL, S3PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(clients.S3(func(o *s3.Options) { o.RetryMaxAttempts = 1 }), "bucket", "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	xmlErr := func(code string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>m</Message></Error>`
	}
	for _, c := range []struct {
		status    int
		code      string
		permanent bool
		notExist  bool
	}{
		{503, "SlowDown", false, false},
		{500, "InternalError", false, false},
		{409, "ConditionalRequestConflict", false, false},
		{403, "AccessDenied", true, false},
		{404, "NoSuchBucket", true, false},
		{404, "NoSuchKey", false, true},
		{400, "InvalidArgument", true, false},
	} {
		status.Store(int32(c.status))
		body.Store(xmlErr(c.code))
		_, err := s.Get(context.Background(), "k")
		if err == nil {
			t.Fatalf("%s: no error", c.code)
		}
		if got := pipeline.IsPermanent(err); got != c.permanent {
			t.Errorf("%s: permanent = %v, want %v (%v)", c.code, got, c.permanent, err)
		}
		if got := errors.Is(err, blob.ErrNotExist); got != c.notExist {
			t.Errorf("%s: not-exist = %v, want %v", c.code, got, c.notExist)
		}
		// A refused delete is blob.ErrLocked (retention, a bucket lock,
		// a policy), and only that one.
		err = s.Delete(context.Background(), "k")
		if got, want := errors.Is(err, blob.ErrLocked), c.code == "AccessDenied"; got != want {
			t.Errorf("%s: delete: locked = %v, want %v (%v)", c.code, got, want, err)
		}
	}
}

// TestListThousands lists past S3's 1000-key page with the default page
// size.
func TestListThousands(t *testing.T) {
	if os.Getenv("EDGEVAULT_SLOW") == "" {
		t.Skip("set EDGEVAULT_SLOW=1 to write 1001 objects")
	}
	s := newStore(t, "", Options{})
	ctx := context.Background()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range 1001 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.Put(ctx, fmt.Sprintf("k/%04d", i), strings.NewReader("x")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n := 0
	if err := s.List(ctx, "k/", func(i blob.Info) error {
		if want := fmt.Sprintf("k/%04d", n); i.Key != want {
			return fmt.Errorf("key %d is %s, want %s", n, i.Key, want)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1001 {
		t.Fatalf("listed %d keys", n)
	}
}

// TestUploadMemory streams 200 MiB of unknown size through Put with the
// default options and reports the peak Go heap, which must stay near
// PartSize x Concurrency (32 MiB) rather than the body size.
func TestUploadMemory(t *testing.T) {
	if os.Getenv("EDGEVAULT_SLOW") == "" {
		t.Skip("set EDGEVAULT_SLOW=1 to upload 200 MiB")
	}
	const size = 200 * mib
	s := newStore(t, "", Options{})
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	hwmBefore := vmHWM()
	var peakInuse, peakSys uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peakInuse = max(peakInuse, m.HeapInuse)
			peakSys = max(peakSys, m.Sys)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	err := s.Put(context.Background(), "big", blobtest.Random(7, size))
	elapsed := time.Since(start)
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(context.Background(), "big")
	if err != nil || info.Size != size {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	growth := int64(peakInuse) - int64(base.HeapInuse)
	t.Logf("200 MiB Put in %v: heap in use %d MiB before, peak %d MiB (+%d MiB); runtime Sys peak %d MiB; process peak RSS %s before, %s after; part %d MiB x %d",
		elapsed.Round(time.Millisecond), base.HeapInuse/mib, peakInuse/mib, growth/mib, peakSys/mib, hwmBefore, vmHWM(), DefaultPartSize/mib, DefaultConcurrency)
	if limit := int64(3 * DefaultPartSize * DefaultConcurrency); growth > limit {
		t.Errorf("heap grew by %d MiB, more than %d MiB", growth/mib, limit/mib)
	}
}

// vmHWM is the process's peak resident set size where /proc reports it.
func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "n/a"
}
