package edgebasetest

import (
	"context"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
)

// The emulator's R2 bucket can also be reached the way R2 itself is,
// through the S3 API: a real S3 server (gofakes3) serves the very store
// the admin and public routes use, so both APIs see one set of objects.
// It stands in for https://<account>.r2.cloudflarestorage.com.

// S3 credentials the emulator's S3 endpoint accepts; any other access key
// id is refused with InvalidAccessKeyId (403), as R2 refuses a wrong one.
const (
	S3AccessKeyID     = "emulator-r2-access-key"
	S3SecretAccessKey = "emulator-r2-secret"
)

// S3Bucket is the name the bucket has on the S3 endpoint.
func (e *Emulator) S3Bucket() string { return e.worker + "-storage" }

// S3Stats counts what the S3 endpoint served.
type S3Stats struct {
	Requests atomic.Int64
	Lists    atomic.Int64
	// MaxListKeys is the most keys one list reply held.
	MaxListKeys atomic.Int64
	Throttled   atomic.Int64
}

type s3Front struct {
	e        *Emulator
	fake     http.Handler
	throttle atomic.Int64 // 503 SlowDown replies still to give
	stats    *S3Stats
}

// S3 returns the emulator's S3 endpoint as a handler and the counters it
// keeps. Each call builds a new front over the same store.
func (e *Emulator) S3() (http.Handler, *S3Stats, func(n int64)) {
	f := &s3Front{e: e, stats: &S3Stats{}}
	f.fake = gofakes3.New(&r2Backend{e: e, stats: f.stats}, gofakes3.WithoutVersioning(),
		gofakes3.WithAutoBucket(false)).Server()
	return f, f.stats, func(n int64) { f.throttle.Store(n) }
}

// ServeS3 starts the S3 endpoint on 127.0.0.1 until tb ends and returns
// its URL, its counters and a function that makes the next n requests
// fail with 503 SlowDown.
func (e *Emulator) ServeS3(tb testing.TB) (endpoint string, stats *S3Stats, throttle func(n int64)) {
	tb.Helper()
	h, stats, throttle := e.S3()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL, stats, throttle
}

func (f *s3Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.stats.Requests.Add(1)
	if !strings.Contains(r.Header.Get("Authorization"), "Credential="+S3AccessKeyID+"/") {
		s3Error(w, http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
		return
	}
	for n := f.throttle.Load(); n > 0; n = f.throttle.Load() {
		if f.throttle.CompareAndSwap(n, n-1) {
			f.stats.Throttled.Add(1)
			s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
			return
		}
	}
	f.fake.ServeHTTP(w, r)
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName xml.Name `xml:"Error"`
		Code    string
		Message string
	}{Code: code, Message: msg})
}

// r2Backend is gofakes3's storage over the emulator's R2 store. The S3
// API stores a put's content type as sent (R2's S3 API does not
// normalise), and serves every type unmasked.
type r2Backend struct {
	e     *Emulator
	stats *S3Stats
}

var _ gofakes3.Backend = (*r2Backend)(nil)

func (b *r2Backend) check(name string) error {
	if name != b.e.S3Bucket() {
		return gofakes3.BucketNotFound(name)
	}
	return nil
}

func (b *r2Backend) ListBuckets() ([]gofakes3.BucketInfo, error) {
	return []gofakes3.BucketInfo{{Name: b.e.S3Bucket()}}, nil
}

func (b *r2Backend) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	if err := b.check(name); err != nil {
		return nil, err
	}
	limit := int(page.MaxKeys)
	if limit <= 0 {
		limit = gofakes3.DefaultMaxBucketKeys
	}
	p := ""
	if prefix != nil {
		p = prefix.Prefix
	}
	objs, more, err := b.e.r2.list(context.Background(), p, page.Marker, limit)
	if err != nil {
		return nil, err
	}
	b.stats.Lists.Add(1)
	for {
		m := b.stats.MaxListKeys.Load()
		if int64(len(objs)) <= m || b.stats.MaxListKeys.CompareAndSwap(m, int64(len(objs))) {
			break
		}
	}
	out := gofakes3.NewObjectList()
	for _, o := range objs {
		out.Add(&gofakes3.Content{Key: o.Key, LastModified: gofakes3.NewContentTime(o.Uploaded),
			ETag: `"` + o.ETag + `"`, Size: o.Size, StorageClass: "STANDARD"})
	}
	if more && len(objs) > 0 {
		out.IsTruncated, out.NextMarker = true, objs[len(objs)-1].Key
	}
	return out, nil
}

func (b *r2Backend) CreateBucket(name string) error {
	return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
}

func (b *r2Backend) BucketExists(name string) (bool, error) { return b.check(name) == nil, nil }

func (b *r2Backend) DeleteBucket(string) error { return gofakes3.ErrNotImplemented }

func (b *r2Backend) ForceDeleteBucket(string) error { return gofakes3.ErrNotImplemented }

func (b *r2Backend) object(bucket, key string, rng *gofakes3.ObjectRangeRequest, body bool) (*gofakes3.Object, error) {
	if err := b.check(bucket); err != nil {
		return nil, err
	}
	o, err := b.e.r2.head(context.Background(), key)
	if err != nil {
		return nil, gofakes3.KeyNotFound(key)
	}
	ct := o.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	hash, _ := hex.DecodeString(o.ETag)
	out := &gofakes3.Object{Name: key, Size: o.Size, Hash: hash, Contents: io.NopCloser(strings.NewReader("")),
		Metadata: map[string]string{"Content-Type": ct, "Last-Modified": o.Uploaded.UTC().Format(http.TimeFormat)}}
	if !body {
		return out, nil
	}
	r, err := rng.Range(o.Size)
	if err != nil {
		return nil, err
	}
	rc, err := b.e.r2.open(o)
	if err != nil {
		return nil, err
	}
	out.Contents = rc
	if r != nil {
		if _, err := io.CopyN(io.Discard, rc, r.Start); err != nil {
			rc.Close()
			return nil, err
		}
		out.Contents = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(rc, r.Length), rc}
		out.Range = r
	}
	return out, nil
}

func (b *r2Backend) GetObject(bucket, key string, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	return b.object(bucket, key, rng, true)
}

func (b *r2Backend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	return b.object(bucket, key, nil, false)
}

func (b *r2Backend) DeleteObject(bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	if err := b.check(bucket); err != nil {
		return gofakes3.ObjectDeleteResult{}, err
	}
	return gofakes3.ObjectDeleteResult{}, b.e.r2.delete(context.Background(), []string{key})
}

func (b *r2Backend) PutObject(bucket, key string, meta map[string]string, input io.Reader, _ int64, _ *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	if err := b.check(bucket); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	_, err := b.e.r2.put(context.Background(), key, meta["Content-Type"], input, b.e.now())
	return gofakes3.PutObjectResult{}, err
}

func (b *r2Backend) DeleteMulti(bucket string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	if err := b.check(bucket); err != nil {
		return res, err
	}
	if err := b.e.r2.delete(context.Background(), keys); err != nil {
		return res, err
	}
	for _, k := range keys {
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: k})
	}
	return res, nil
}

func (b *r2Backend) CopyObject(string, string, string, string, map[string]string) (gofakes3.CopyObjectResult, error) {
	return gofakes3.CopyObjectResult{}, gofakes3.ErrNotImplemented
}
