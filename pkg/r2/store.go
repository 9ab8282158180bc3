package r2

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Sentinels callers branch on. Credential and bucket errors are also
// marked pipeline.Permanent: retrying cannot fix a setting.
var (
	ErrCredentials = errors.New("r2: the credentials were refused")
	ErrNoBucket    = errors.New("r2: no such bucket")
	ErrThrottled   = errors.New("r2: the endpoint is throttling requests (503 SlowDown)")
	ErrCorrupt     = errors.New("r2: an object's bytes do not match its size or etag")
)

// MaxDeleteKeys is the most keys one DeleteObjects call takes.
const MaxDeleteKeys = 1000

// DefaultPageSize is R2's (and S3's) largest ListObjectsV2 page.
const DefaultPageSize = 1000

// Store is one R2 bucket.
type Store struct {
	c        *s3.Client
	bucket   string
	endpoint string
	attempts int
}

// New builds a store from a validated config. Checksums are calculated
// and validated only where an operation requires them: newer SDK
// defaults add checksum headers that S3-compatible servers may reject.
// The secret goes to the signer only; the client logs nothing.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	attempts := cfg.MaxAttempts
	if attempts == 0 {
		attempts = DefaultMaxAttempts
	}
	c := s3.New(s3.Options{
		Region:       "auto",
		BaseEndpoint: aws.String(cfg.EndpointURL()),
		UsePathStyle: !cfg.VirtualHosted,
		// One resolution per store instead of one per request.
		EndpointResolverV2: newCachedEndpoints(),
		Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKeyID,
			cfg.SecretAccessKey.Reveal(), ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.MaxBackoff = 2 * time.Second
		}),
	})
	return &Store{c: c, bucket: cfg.Bucket, endpoint: cfg.EndpointURL(), attempts: attempts}, nil
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// ListPages streams the keys after startAfter up to and including end
// ("" = to the last key), one ListObjectsV2 page at a time (pageSize
// keys, 0 = DefaultPageSize): fn sees one page and never more.
func (s *Store) ListPages(ctx context.Context, startAfter, end string, pageSize int, fn func([]edgebase.Object) error) error {
	if pageSize <= 0 || pageSize > DefaultPageSize {
		pageSize = DefaultPageSize
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), MaxKeys: aws.Int32(int32(pageSize))}
	if startAfter != "" {
		in.StartAfter = aws.String(startAfter)
	}
	for {
		out, err := s.c.ListObjectsV2(ctx, in)
		if err != nil {
			return s.fail("list", "", err)
		}
		page := make([]edgebase.Object, 0, len(out.Contents))
		done := !aws.ToBool(out.IsTruncated)
		for _, o := range out.Contents {
			k := aws.ToString(o.Key)
			if end != "" && k > end {
				done = true
				break
			}
			page = append(page, edgebase.Object{Key: k, Size: aws.ToInt64(o.Size), ETag: unquote(aws.ToString(o.ETag))})
			if k == end {
				done = true
				break
			}
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
		}
		if done || out.NextContinuationToken == nil {
			return nil
		}
		in.StartAfter, in.ContinuationToken = nil, out.NextContinuationToken
	}
}

// GetObject streams one object to fn with the type R2 stored for it.
// The reader fails at its end when the bytes do not match the
// Content-Length or a single-part ETag (an MD5), so a short or damaged
// body never passes for the object. A missing key is
// edgebase.ErrNotFound, as through the admin API.
func (s *Store) GetObject(ctx context.Context, key string, fn func(io.Reader, edgebase.ObjectInfo) error) error {
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return s.fail("get", key, err)
	}
	defer out.Body.Close()
	ct := aws.ToString(out.ContentType)
	if ct == "" {
		ct = edgebase.DefaultContentType
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	etag := unquote(aws.ToString(out.ETag))
	info := edgebase.ObjectInfo{Key: key, Size: size, ContentType: ct, ServedContentType: ct, ETag: etag}
	vr := &verifyingReader{r: out.Body, key: key, size: size, etag: etag}
	if md5ETag.MatchString(etag) {
		vr.h = md5.New()
	}
	return fn(vr, info)
}

var md5ETag = regexp.MustCompile(`^[0-9a-f]{32}$`)

// verifyingReader checks size and MD5 when the body ends.
type verifyingReader struct {
	r    io.Reader
	key  string
	size int64
	etag string
	h    hash.Hash
	n    int64
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			return n, fmt.Errorf("%w: %q: read %d bytes, Content-Length %d", ErrCorrupt, v.key, v.n, v.size)
		}
		if v.h != nil && hex.EncodeToString(v.h.Sum(nil)) != v.etag {
			return n, fmt.Errorf("%w: %q: MD5 differs from ETag %s", ErrCorrupt, v.key, v.etag)
		}
	}
	return n, err
}

// PutObject uploads one object with its content type (no ACL: R2 has
// none). size may be -1 when unknown. The payload is sent unsigned (the
// body streams; TLS protects it on R2).
func (s *Store) PutObject(ctx context.Context, key, contentType string, size int64, body edgebase.BodyFunc) error {
	if contentType == "" {
		contentType = edgebase.DefaultContentType
	}
	rc, err := body()
	if err != nil {
		return fmt.Errorf("r2: put %s: %w", key, err)
	}
	defer rc.Close()
	in := &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key), Body: io.NopCloser(rc), ContentType: aws.String(contentType)}
	if size >= 0 {
		in.ContentLength = aws.Int64(size)
	}
	// A streamed body cannot be rewound, so the SDK must not retry it.
	_, err = s.c.PutObject(ctx, in, func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		o.RetryMaxAttempts = 1
	})
	if err != nil {
		return s.fail("put", key, err)
	}
	return nil
}

// DeleteObjects deletes keys, MaxDeleteKeys a call; a key that is
// already gone counts as deleted (S3 semantics).
func (s *Store) DeleteObjects(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), MaxDeleteKeys)
		ids := make([]types.ObjectIdentifier, n)
		for i, k := range keys[:n] {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := s.c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(s.bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return s.fail("delete", "", err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("r2: delete %s: %s %s (%d keys failed)", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message), len(out.Errors))
		}
		keys = keys[n:]
	}
	return nil
}

// fail names the setting a refused request points at.
func (s *Store) fail(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re interface{ HTTPStatusCode() int }
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchKey" || (op == "get" && status == http.StatusNotFound && code != "NoSuchBucket"):
		return fmt.Errorf("r2: %s: %w", what, edgebase.ErrNotFound)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "AccessDenied" ||
		code == "Unauthorized" || status == http.StatusUnauthorized || status == http.StatusForbidden:
		return pipeline.Permanent(fmt.Errorf("%w (%s at %s, %s): check %s and %s; a backup needs an R2 token with Object Read, a restore Object Read & Write",
			ErrCredentials, code, s.endpoint, what, FlagAccessKey, FlagSecret))
	case code == "NoSuchBucket":
		return pipeline.Permanent(fmt.Errorf("%w: %q at %s (%s): check %s", ErrNoBucket, s.bucket, s.endpoint, what, FlagBucket))
	case code == "SlowDown" || status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s still answered %d %s after %d attempts (%s): check %s, lower the concurrency or retry later",
			ErrThrottled, s.endpoint, status, code, s.attempts, what, FlagEndpoint)
	}
	return fmt.Errorf("r2: %s at %s (%s): %w", what, s.endpoint, FlagEndpoint, err)
}

func unquote(etag string) string { return strings.Trim(etag, `"`) }
