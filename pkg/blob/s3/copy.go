package s3

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// DefaultCopyConcurrency bounds the part copies of one CopyFrom in flight.
// S3 moves the bytes; the caller holds no buffer per part, so it can be
// higher than an upload's Concurrency.
const DefaultCopyConcurrency = 16

// Source is an object another Store (another bucket, account or region)
// copies server-side with CopyFrom, pinned to one version of it: every
// part copy names VersionID (when the bucket is versioned) and sends
// x-amz-copy-source-if-match with ETag, so a source replaced meanwhile
// fails the copy instead of mixing versions.
type Source struct {
	Bucket    string
	Key       string // the object's full key (with its store's prefix)
	Size      int64
	ETag      string
	VersionID string // "" when the bucket is not versioned
}

// Source reports key as a copy source (HeadObject on this store).
func (s *Store) Source(ctx context.Context, key string) (Source, error) {
	if err := blob.ValidateKey(key); err != nil {
		return Source{}, fmt.Errorf("s3: source: %w", err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: s.key(key)})
	if err != nil {
		return Source{}, s.fail("source", key, err)
	}
	src := Source{Bucket: s.bucket, Key: s.prefix + key, Size: aws.ToInt64(out.ContentLength),
		ETag: aws.ToString(out.ETag), VersionID: aws.ToString(out.VersionId)}
	if src.VersionID == "null" {
		src.VersionID = ""
	}
	if src.ETag == "" {
		return Source{}, fmt.Errorf("s3: source %s: the server sent no ETag", key)
	}
	return src, nil
}

// header is the x-amz-copy-source value: URL-encoded bucket/key and the
// version. '+' is escaped too because some servers decode it as a space.
func (src Source) header() *string {
	segs := strings.Split(src.Key, "/")
	for i, seg := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(seg), "+", "%2B")
	}
	v := src.Bucket + "/" + strings.Join(segs, "/")
	if src.VersionID != "" {
		v += "?versionId=" + url.QueryEscape(src.VersionID)
	}
	return aws.String(v)
}

// Range is a byte range of a source that becomes one part.
type Range struct {
	Offset, Size int64
}

// CopyOptions tune CopyFrom.
type CopyOptions struct {
	// Parts are the byte ranges of the parts, consecutive from 0 and
	// covering the source; each at most MaxPartSize and, but for the last,
	// at least MinPartSize. nil splits the source into parts of PartSize.
	// A caller that plans them can make parts coincide with ranges whose
	// SHA-256 it knows, since S3 reports a SHA-256 per copied part.
	Parts []Range
	// PartSize when Parts is nil; default the store's PartSize, raised so
	// the source fits in MaxParts parts.
	PartSize int64
	// Concurrency bounds the part copies in flight (DefaultCopyConcurrency).
	Concurrency int
	// Verify, when set, sees every part, with the SHA-256 S3 computed for
	// it, once all are in the upload and before it is completed: the copy
	// is completed only if it returns nil. A *BadPartsError naming only
	// parts found in the upload (copied by an earlier call) has them
	// copied again and Verify called once more. An error marked
	// pipeline.Permanent aborts the upload (it can never be completed as
	// it is); any other leaves it for the next CopyFrom to resume.
	Verify func(ctx context.Context, parts []CopiedPart) error
}

// CopiedPart is one part of a CopyFrom upload.
type CopiedPart struct {
	Number       int32
	Offset, Size int64
	ETag         string
	// SHA256 is the base64 SHA-256 S3 computed for the part ("" when the
	// server reports none).
	SHA256 string
	// Resumed marks a part an earlier, interrupted CopyFrom copied.
	Resumed bool
}

// CopyResult is what CopyFrom did.
type CopyResult struct {
	Parts []CopiedPart
	// Copied parts were copied by this call, Resumed ones found in an
	// earlier call's upload (and verified, when Verify is set).
	Copied, Resumed int
	// Recopied counts resumed parts Verify refused and that were copied
	// again.
	Recopied int
	UploadID string
}

// BadPartsError is Verify's way to name parts whose content is not what
// they should be.
type BadPartsError struct {
	Numbers []int32
	Err     error
}

func (e *BadPartsError) Error() string {
	return fmt.Sprintf("parts %v: %v", e.Numbers, e.Err)
}

func (e *BadPartsError) Unwrap() error { return e.Err }

// CopyFrom creates dst as a server-side copy of src (UploadPartCopy, part
// by part; no byte passes through the caller, so memory stays flat
// whatever the size), completed with If-None-Match: *, so it only ever
// creates dst: when dst exists (before or by the time the copy completes)
// it fails with blob.ErrExist and leaves it untouched.
//
// It is resumable: it looks for an unfinished multipart upload of dst
// (ListMultipartUploads) and its parts (ListParts), and copies only the
// planned parts that are missing; a copy cut short (a cancelled context,
// a Lambda timeout) leaves its upload for the next call. An upload whose
// parts do not fit the plan (a part of another size: another layout) is
// aborted and the copy starts afresh. Parts found that way carry no proof of the source version they
// came from; Verify is where the caller checks them (S3's SHA-256 of each
// part against what it expects).
//
// The upload asks for SHA-256 checksums (x-amz-checksum-algorithm), so
// S3 reports a SHA-256 per copied part and keeps the composite checksum of
// the object (StoredChecksum). The caller's credentials must be able to
// read src and write dst: across accounts, a read grant on the source.
func (s *Store) CopyFrom(ctx context.Context, src Source, dst string, o CopyOptions) (res CopyResult, err error) {
	if err := blob.ValidateKey(dst); err != nil {
		return res, fmt.Errorf("s3: copy: %w", err)
	}
	parts, err := planCopy(src.Size, s.o.PartSize, o)
	if err != nil {
		return res, fmt.Errorf("s3: copy %s to %s: %w", src.Key, dst, err)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("s3: copy %s: %w", dst, err)
	}
	if _, err := s.Stat(ctx, dst); err == nil {
		return res, fmt.Errorf("s3: copy %s: %w", dst, blob.ErrExist)
	} else if !errors.Is(err, blob.ErrNotExist) {
		return res, err
	}
	if src.Size == 0 {
		// Nothing to copy part by part: an empty object.
		return res, s.putObject(ctx, "copy", dst, nil, cond{create: true})
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultCopyConcurrency
	}
	id, found, err := s.resumable(ctx, dst)
	if err != nil {
		return res, s.fail("copy (find upload)", dst, err)
	}
	if id == "" {
		if id, err = s.createUpload(ctx, dst); err != nil {
			return res, s.fail("copy", dst, err)
		}
	}
	res.UploadID = id
	defer func() {
		if err != nil && pipeline.IsPermanent(err) && !errors.Is(err, blob.ErrExist) {
			err = s.abort(ctx, "copy", dst, id, err)
		}
	}()

	for n, f := range found {
		if int(n) > len(parts) || parts[n-1].Size != f.Size {
			// Another layout (the plan changed): its parts hold other
			// ranges of the source, even where a size happens to match.
			if err := s.abort(ctx, "copy", dst, id, nil); err != nil {
				return res, err
			}
			if id, err = s.createUpload(ctx, dst); err != nil {
				return res, s.fail("copy", dst, err)
			}
			res.UploadID, found = id, nil
			break
		}
	}
	todo := make([]int, 0, len(parts))
	for i := range parts {
		p := &parts[i]
		if f, ok := found[p.Number]; ok {
			p.ETag, p.SHA256, p.Resumed = f.ETag, f.SHA256, true
			res.Resumed++
			continue
		}
		todo = append(todo, i)
	}
	if err := s.copyParts(ctx, src, dst, id, parts, todo, o.Concurrency); err != nil {
		return res, err
	}
	res.Copied = len(todo)
	if o.Verify != nil {
		verr := o.Verify(ctx, parts)
		var bad *BadPartsError
		if errors.As(verr, &bad) && allResumed(parts, bad.Numbers) {
			// Parts of an earlier call that are not what they should be
			// (copied from another version of the source): copy them again.
			redo := make([]int, 0, len(bad.Numbers))
			for _, n := range bad.Numbers {
				i := int(n) - 1
				parts[i].Resumed = false
				redo = append(redo, i)
			}
			if err := s.copyParts(ctx, src, dst, id, parts, redo, o.Concurrency); err != nil {
				return res, err
			}
			res.Recopied, res.Resumed, res.Copied = len(redo), res.Resumed-len(redo), res.Copied+len(redo)
			verr = o.Verify(ctx, parts)
		}
		if verr != nil {
			res.Parts = parts
			return res, fmt.Errorf("s3: copy %s: verify: %w", dst, verr)
		}
	}
	res.Parts = parts
	completed := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
		if p.SHA256 != "" {
			completed[i].ChecksumSHA256 = aws.String(p.SHA256)
		}
	}
	if err := s.completeCopy(ctx, dst, id, completed); err != nil {
		return res, err
	}
	s.abortOthers(ctx, dst, id)
	return res, nil
}

func allResumed(parts []CopiedPart, numbers []int32) bool {
	if len(numbers) == 0 {
		return false
	}
	for _, n := range numbers {
		if n < 1 || int(n) > len(parts) || !parts[n-1].Resumed {
			return false
		}
	}
	return true
}

// planCopy turns the options into the parts to copy, numbered from 1.
func planCopy(size, storePart int64, o CopyOptions) ([]CopiedPart, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative source size %d", size)
	}
	ranges := o.Parts
	if ranges == nil {
		ps := max(o.PartSize, storePart)
		if least := (size + MaxParts - 1) / MaxParts; ps < least {
			ps = (least + 1<<20 - 1) &^ (1<<20 - 1)
		}
		ps = max(min(ps, MaxPartSize), MinPartSize)
		for off := int64(0); off < size; off += ps {
			ranges = append(ranges, Range{Offset: off, Size: min(ps, size-off)})
		}
	}
	if len(ranges) > MaxParts {
		return nil, fmt.Errorf("%d parts, more than S3's %d", len(ranges), MaxParts)
	}
	parts := make([]CopiedPart, len(ranges))
	var off int64
	for i, r := range ranges {
		switch {
		case r.Offset != off:
			return nil, fmt.Errorf("part %d starts at %d, want %d", i+1, r.Offset, off)
		case r.Size <= 0 || r.Size > MaxPartSize:
			return nil, fmt.Errorf("part %d has %d bytes (1..%d)", i+1, r.Size, MaxPartSize)
		case r.Size < MinPartSize && i < len(ranges)-1:
			return nil, fmt.Errorf("part %d has %d bytes; every part but the last needs %d", i+1, r.Size, MinPartSize)
		}
		parts[i] = CopiedPart{Number: int32(i + 1), Offset: r.Offset, Size: r.Size}
		off += r.Size
	}
	if off != size {
		return nil, fmt.Errorf("the parts cover %d bytes of %d", off, size)
	}
	return parts, nil
}

// resumable finds the newest unfinished upload of key and the parts it
// holds (by number).
func (s *Store) resumable(ctx context.Context, key string) (string, map[int32]CopiedPart, error) {
	full := s.prefix + key
	var id string
	var newest time.Time
	pages := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(full)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return "", nil, err
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) != full {
				continue
			}
			if t := aws.ToTime(u.Initiated); id == "" || !t.Before(newest) {
				id, newest = aws.ToString(u.UploadId), t
			}
		}
	}
	if id == "" {
		return "", nil, nil
	}
	found := map[int32]CopiedPart{}
	parts := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: aws.String(id)})
	for parts.HasMorePages() {
		page, err := parts.NextPage(ctx)
		if err != nil {
			if hasCode(err, "NoSuchUpload") {
				// Completed or aborted since it was listed: start afresh.
				return "", nil, nil
			}
			return "", nil, err
		}
		for _, p := range page.Parts {
			n := aws.ToInt32(p.PartNumber)
			found[n] = CopiedPart{Number: n, Size: aws.ToInt64(p.Size), ETag: aws.ToString(p.ETag), SHA256: aws.ToString(p.ChecksumSHA256)}
		}
	}
	return id, found, nil
}

// copyParts copies parts[i] for every i of todo, at most n at once.
func (s *Store) copyParts(ctx context.Context, src Source, dst, id string, parts []CopiedPart, todo []int, n int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	var mu sync.Mutex
	for _, i := range todo {
		if gctx.Err() != nil {
			break
		}
		p := parts[i]
		g.Go(func() error {
			out, err := s.client.UploadPartCopy(gctx, &s3.UploadPartCopyInput{
				Bucket:            aws.String(s.bucket),
				Key:               s.key(dst),
				UploadId:          aws.String(id),
				PartNumber:        aws.Int32(p.Number),
				CopySource:        src.header(),
				CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", p.Offset, p.Offset+p.Size-1)),
				CopySourceIfMatch: aws.String(src.ETag),
			})
			if err != nil {
				return fmt.Errorf("copy %s bytes %d-%d into part %d: %w", src.Key, p.Offset, p.Offset+p.Size-1, p.Number, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if r := out.CopyPartResult; r != nil {
				parts[i].ETag, parts[i].SHA256 = aws.ToString(r.ETag), aws.ToString(r.ChecksumSHA256)
			}
			if parts[i].ETag == "" {
				return fmt.Errorf("copy into part %d: the server sent no ETag", p.Number)
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if hasCode(err, "PreconditionFailed") {
			// x-amz-copy-source-if-match: the source changed since Source.
			return fmt.Errorf("s3: copy %s: the source %s changed: %w", dst, src.Key, pipeline.Permanent(err))
		}
		return s.fail("copy", dst, err)
	}
	return nil
}

// completeCopy completes the upload with If-None-Match: *. A concurrent
// CopyFrom of the same key may have completed this very upload first
// (NoSuchUpload): then the object exists, which is reported as such.
func (s *Store) completeCopy(ctx context.Context, dst, id string, parts []types.CompletedPart) error {
	err := s.complete(ctx, "copy", dst, id, parts, cond{create: true})
	if err == nil || errors.Is(err, blob.ErrExist) {
		return err
	}
	if hasCode(err, "NoSuchUpload") {
		if _, serr := s.Stat(ctx, dst); serr == nil {
			return fmt.Errorf("s3: copy %s: %w", dst, blob.ErrExist)
		}
	}
	return err
}

// abortOthers aborts the other unfinished uploads of a key that now
// exists: none of them can ever be completed (If-None-Match), and their
// parts would be billed until a lifecycle rule removes them.
func (s *Store) abortOthers(ctx context.Context, key, done string) {
	full := s.prefix + key
	out, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(full)})
	if err != nil {
		return
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) == full && aws.ToString(u.UploadId) != done {
			_ = s.abort(ctx, "copy", key, aws.ToString(u.UploadId), nil)
		}
	}
}

// Uploads lists the unfinished multipart uploads of key (ids, oldest
// first) with the numbers of the parts each holds.
func (s *Store) Uploads(ctx context.Context, key string) (map[string][]int32, error) {
	full := s.prefix + key
	out := map[string][]int32{}
	pages := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(full)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.fail("uploads", key, err)
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) != full {
				continue
			}
			var nums []int32
			parts := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: u.UploadId})
			for parts.HasMorePages() {
				pp, err := parts.NextPage(ctx)
				if err != nil {
					return nil, s.fail("uploads", key, err)
				}
				for _, p := range pp.Parts {
					nums = append(nums, aws.ToInt32(p.PartNumber))
				}
			}
			slices.Sort(nums)
			out[aws.ToString(u.UploadId)] = nums
		}
	}
	return out, nil
}
