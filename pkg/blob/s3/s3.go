package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

var (
	_ pipeline.BlobStore = (*Store)(nil)
	_ pipeline.Composer  = (*Store)(nil)
)

// Checksum is the additional checksum sent with every uploaded byte.
type Checksum string

const (
	// ChecksumSHA256 is the default; S3 stores it per part (composite).
	ChecksumSHA256 Checksum = "SHA256"
	// ChecksumCRC32C is cheaper to compute.
	ChecksumCRC32C Checksum = "CRC32C"
)

// S3 limits and the defaults of Options.
const (
	MinPartSize        = 5 << 20 // every part but the last
	MaxPartSize        = 5 << 30
	MaxParts           = 10000
	DefaultPartSize    = 8 << 20
	DefaultConcurrency = 4
	DefaultPageSize    = 1000
)

const (
	// headBody is read before a part buffer is taken, so small blobs (job
	// records) never touch a PartSize buffer.
	headBody = 64 << 10
	// headConcurrency bounds the HEAD requests Compose sends up front.
	headConcurrency = 16
	abortTimeout    = 30 * time.Second
)

// Options tune a Store; the zero value gives the defaults.
type Options struct {
	// KMSKeyID, when set, encrypts every write (PutObject, multipart
	// uploads, Compose) with SSE-KMS under this key id or ARN; "" leaves
	// the bucket's default encryption in charge.
	KMSKeyID string
	// PartSize is the multipart part size (MinPartSize..MaxPartSize);
	// bodies up to it go up in one PutObject. Default DefaultPartSize.
	PartSize int64
	// Concurrency bounds the parts in flight per upload and so the
	// memory: about PartSize x Concurrency for Put and
	// 2 x MinPartSize x Concurrency for Compose. Default DefaultConcurrency.
	Concurrency int
	// Checksum is the algorithm of the per-object and per-part checksums
	// S3 verifies on upload. Default ChecksumSHA256.
	Checksum Checksum
	// PageSize is ListObjectsV2's MaxKeys (1..1000). Default 1000.
	PageSize int32
}

// Store keeps blobs as objects under bucket/prefix.
type Store struct {
	client *s3.Client
	bucket string
	prefix string
	o      Options
	// copyPartMax is the largest UploadPartCopy range (S3's 5 GiB part
	// limit); a field so tests can split sources without 5 GiB of data.
	copyPartMax int64
	bufs        sync.Pool
}

// New returns a Store over bucket. prefix ("" or e.g. "edgevault/") is
// prepended to every key and stripped from listings.
func New(client *s3.Client, bucket, prefix string, o Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("s3: nil client")
	}
	if bucket == "" {
		return nil, errors.New("s3: empty bucket name")
	}
	if err := blob.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize || o.PartSize > MaxPartSize {
		return nil, fmt.Errorf("s3: part size %d outside %d..%d", o.PartSize, MinPartSize, MaxPartSize)
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Concurrency < 1 {
		return nil, fmt.Errorf("s3: concurrency %d < 1", o.Concurrency)
	}
	switch o.Checksum {
	case "":
		o.Checksum = ChecksumSHA256
	case ChecksumSHA256, ChecksumCRC32C:
	default:
		return nil, fmt.Errorf("s3: unsupported checksum %q", o.Checksum)
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.PageSize < 1 || o.PageSize > 1000 {
		return nil, fmt.Errorf("s3: page size %d outside 1..1000", o.PageSize)
	}
	s := &Store{client: client, bucket: bucket, prefix: prefix, o: o, copyPartMax: MaxPartSize}
	s.bufs.New = func() any { b := make([]byte, o.PartSize); return &b }
	return s, nil
}

func (s *Store) key(k string) *string { return aws.String(s.prefix + k) }

func (s *Store) getBuf() []byte { return *s.bufs.Get().(*[]byte) }

// putBuf recycles a part buffer. Only buffers whose request succeeded come
// back: after an early error response the HTTP transport may still be
// reading the old body, so those are left to the garbage collector.
func (s *Store) putBuf(b []byte) { b = b[:cap(b)]; s.bufs.Put(&b) }

// Put implements pipeline.BlobStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.upload(ctx, "put", key, r, cond{})
}

// Create implements pipeline.BlobStore with a conditional write
// (If-None-Match: *) on PutObject or CompleteMultipartUpload, which S3
// decides atomically.
func (s *Store) Create(ctx context.Context, key string, r io.Reader) error {
	return s.upload(ctx, "create", key, r, cond{create: true})
}

// Replace implements pipeline.BlobStore with If-Match on the ETag, which
// S3 decides atomically too.
func (s *Store) Replace(ctx context.Context, key string, r io.Reader, v blob.Version) error {
	if v == "" {
		return fmt.Errorf("s3: replace %s: empty version: %w", key, blob.ErrConflict)
	}
	return s.upload(ctx, "replace", key, r, cond{ifMatch: string(v)})
}

// cond is the precondition of a write: none, create (If-None-Match: *),
// or replace the version ifMatch (If-Match).
type cond struct {
	create  bool
	ifMatch string
}

func (c cond) apply(ifNoneMatch, ifMatch **string) {
	if c.create {
		*ifNoneMatch = aws.String("*")
	}
	if c.ifMatch != "" {
		*ifMatch = aws.String(c.ifMatch)
	}
}

// failed maps the refusal of a conditional write onto the blob sentinels.
// A replace of a key that is gone is a conflict as well: it is not the
// version the caller read.
func (c cond) failed(op, key string, err error) error {
	switch {
	case c.create && (hasCode(err, "PreconditionFailed") || hasCode(err, "ConditionalRequestConflict")):
		return fmt.Errorf("s3: %s %s: %w", op, key, blob.ErrExist)
	case c.ifMatch != "" && (hasCode(err, "PreconditionFailed") || hasCode(err, "ConditionalRequestConflict") || isNotFound(err)):
		return fmt.Errorf("s3: %s %s: %w", op, key, blob.ErrConflict)
	}
	return nil
}

func (s *Store) upload(ctx context.Context, op, key string, r io.Reader, c cond) error {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("s3: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: %s %s: %w", op, key, err)
	}
	cr := iox.ContextReader(ctx, r)
	head := make([]byte, min(headBody, s.o.PartSize))
	n, err := io.ReadFull(cr, head)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return s.putObject(ctx, op, key, head[:n], c)
	}
	if err != nil {
		return fmt.Errorf("s3: %s %s: read: %w", op, key, err)
	}
	buf := s.getBuf()
	copy(buf, head)
	m, err := io.ReadFull(cr, buf[n:])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err := s.putObject(ctx, op, key, buf[:n+m], c)
		if err == nil {
			s.putBuf(buf)
		}
		return err
	}
	if err != nil {
		s.putBuf(buf)
		return fmt.Errorf("s3: %s %s: read: %w", op, key, err)
	}
	return s.multipart(ctx, op, key, buf, r, c)
}

func (s *Store) putObject(ctx context.Context, op, key string, data []byte, c cond) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           s.key(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	}
	in.ChecksumAlgorithm, in.ChecksumSHA256, in.ChecksumCRC32C = s.checksum(data)
	if s.o.KMSKeyID != "" {
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(s.o.KMSKeyID)
	}
	c.apply(&in.IfNoneMatch, &in.IfMatch)
	if _, err := s.client.PutObject(ctx, in); err != nil {
		if cerr := c.failed(op, key, err); cerr != nil {
			return cerr
		}
		return s.fail(op, key, err)
	}
	return nil
}

// multipart uploads first and the rest of r. A producer fills part buffers
// while up to Concurrency parts upload; a buffer slot is taken before a
// buffer is filled, so at most Concurrency buffers exist per upload.
func (s *Store) multipart(ctx context.Context, op, key string, first []byte, r io.Reader, c cond) (err error) {
	id, err := s.createUpload(ctx, key)
	if err != nil {
		s.putBuf(first)
		return s.fail(op, key, err)
	}
	defer func() {
		if err != nil {
			err = s.abort(ctx, op, key, id, err)
		}
	}()
	p := s.newParts(ctx, key, id)
	p.g.Go(func() error {
		buf, n := first, len(first)
		if err := p.acquire(); err != nil {
			s.putBuf(buf)
			return err
		}
		for {
			last := n < len(buf)
			b := buf
			if err := p.upload(b[:n], func() { s.putBuf(b) }); err != nil {
				return err
			}
			if last {
				return nil
			}
			if err := p.acquire(); err != nil {
				return err
			}
			buf = s.getBuf()
			var rerr error
			n, rerr = io.ReadFull(iox.ContextReader(p.ctx, r), buf)
			switch {
			case rerr == io.EOF:
				s.putBuf(buf)
				p.release()
				return nil
			case rerr == io.ErrUnexpectedEOF:
			case rerr != nil:
				s.putBuf(buf)
				p.release()
				return fmt.Errorf("read: %w", rerr)
			}
		}
	})
	parts, err := p.wait()
	if err != nil {
		return s.fail(op, key, err)
	}
	return s.complete(ctx, op, key, id, parts, c)
}

func (s *Store) createUpload(ctx context.Context, key string) (string, error) {
	in := &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               s.key(key),
		ChecksumAlgorithm: s.algorithm(),
	}
	if s.o.KMSKeyID != "" {
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(s.o.KMSKeyID)
	}
	out, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.UploadId), nil
}

func (s *Store) complete(ctx context.Context, op, key, id string, parts []types.CompletedPart, c cond) error {
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             s.key(key),
		UploadId:        aws.String(id),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	c.apply(&in.IfNoneMatch, &in.IfMatch)
	if _, err := s.client.CompleteMultipartUpload(ctx, in); err != nil {
		if cerr := c.failed(op, key, err); cerr != nil {
			return cerr
		}
		return s.fail(op, key, err)
	}
	return nil
}

// abort removes the parts of a failed upload even when ctx is what
// failed, and adds an abort failure to cause.
func (s *Store) abort(ctx context.Context, op, key, id string, cause error) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(s.bucket),
		Key:      s.key(key),
		UploadId: aws.String(id),
	})
	if err != nil && !hasCode(err, "NoSuchUpload") {
		return errors.Join(cause, s.fail(op+" (abort upload)", key, err))
	}
	return cause
}

func (s *Store) algorithm() types.ChecksumAlgorithm {
	if s.o.Checksum == ChecksumCRC32C {
		return types.ChecksumAlgorithmCrc32c
	}
	return types.ChecksumAlgorithmSha256
}

// checksum computes the checksum of data up front, so the SDK sends it as a
// header instead of reading the body again, and the part checksums for
// CompleteMultipartUpload are known without trusting a response.
func (s *Store) checksum(data []byte) (alg types.ChecksumAlgorithm, sha, crc *string) {
	var h hash.Hash
	if s.o.Checksum == ChecksumCRC32C {
		h = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	} else {
		h = sha256.New()
	}
	h.Write(data)
	v := aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil)))
	if s.o.Checksum == ChecksumCRC32C {
		return types.ChecksumAlgorithmCrc32c, nil, v
	}
	return types.ChecksumAlgorithmSha256, v, nil
}

// Get implements pipeline.BlobStore.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("s3: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: s.key(key)}, quietChecksumLog)
	if err != nil {
		return nil, s.fail("get", key, err)
	}
	return out.Body, nil
}

// ReadVersion implements pipeline.BlobStore: the version is the ETag of
// the object the body comes from.
func (s *Store) ReadVersion(ctx context.Context, key string) (io.ReadCloser, blob.Version, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, "", fmt.Errorf("s3: read version: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("s3: read version %s: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: s.key(key)}, quietChecksumLog)
	if err != nil {
		return nil, "", s.fail("read version", key, err)
	}
	if aws.ToString(out.ETag) == "" {
		out.Body.Close()
		return nil, "", fmt.Errorf("s3: read version %s: the server sent no ETag", key)
	}
	return out.Body, blob.Version(aws.ToString(out.ETag)), nil
}

// GetRange implements pipeline.BlobStore. A range past the end is cut at
// the end.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("s3: get range: %w", err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("s3: get range %s: negative offset %d", key, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3: get range %s: %w", key, err)
	}
	if length == 0 {
		// An empty range is not expressible; still report a missing key.
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 && length <= math.MaxInt64-offset {
		rng = fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: s.key(key), Range: aws.String(rng)}, quietChecksumLog)
	if err != nil {
		if hasCode(err, "InvalidRange") {
			// 416: the object exists and offset is at or past its end.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.fail("get range", key, err)
	}
	return out.Body, nil
}

// Stat implements pipeline.BlobStore.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, fmt.Errorf("s3: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("s3: stat %s: %w", key, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: s.key(key)})
	if err != nil {
		return blob.Info{}, s.fail("stat", key, err)
	}
	return blob.Info{Key: key, Size: aws.ToInt64(out.ContentLength)}, nil
}

// List implements pipeline.BlobStore, one ListObjectsV2 page in memory at a
// time. S3 lists keys in UTF-8 byte order.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("s3: list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: list %q: %w", prefix, err)
	}
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.bucket),
		Prefix:  aws.String(s.prefix + prefix),
		MaxKeys: aws.Int32(s.o.PageSize),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return s.fail("list", prefix, err)
		}
		for _, o := range page.Contents {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("s3: list %q: %w", prefix, err)
			}
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if err := fn(blob.Info{Key: k, Size: aws.ToInt64(o.Size)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements pipeline.BlobStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("s3: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: delete %s: %w", key, err)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: s.key(key)})
	switch {
	case err == nil, isNotFound(err):
		return nil
	case hasCode(err, "AccessDenied"):
		// Retention (Object Lock, an R2 bucket lock) or a policy: the
		// object stays, which a caller may skip and report.
		return fmt.Errorf("s3: delete %s: %w: %w", key, blob.ErrLocked, classify(err))
	}
	return s.fail("delete", key, err)
}

// copySource is the URL-encoded bucket/key of UploadPartCopy. '+' is
// escaped too because some servers decode it as a space.
func (s *Store) copySource(key string) *string {
	segs := strings.Split(s.prefix+key, "/")
	for i, seg := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(seg), "+", "%2B")
	}
	return aws.String(s.bucket + "/" + strings.Join(segs, "/"))
}

// sortParts orders completed parts by number, as CompleteMultipartUpload
// requires.
func sortParts(parts []types.CompletedPart) {
	slices.SortFunc(parts, func(a, b types.CompletedPart) int {
		return int(aws.ToInt32(a.PartNumber)) - int(aws.ToInt32(b.PartNumber))
	})
}

// quietChecksumLog stops the SDK from logging, on every GET of a
// multipart object or a range, that it could not validate a whole-object
// checksum; validation itself still runs where a checksum applies.
func quietChecksumLog(o *s3.Options) { o.DisableLogOutputChecksumValidationSkipped = true }

// StoredChecksum reports an object's size and the SHA-256 checksum S3
// keeps for it ("" when it keeps none): base64, and for a multipart
// upload the composite form "<base64>-<parts>".
func (s *Store) StoredChecksum(ctx context.Context, key string) (size int64, sha256 string, err error) {
	if err := blob.ValidateKey(key); err != nil {
		return 0, "", fmt.Errorf("s3: stored checksum: %w", err)
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: s.key(key), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return 0, "", s.fail("stored checksum", key, err)
	}
	return aws.ToInt64(head.ContentLength), aws.ToString(head.ChecksumSHA256), nil
}
