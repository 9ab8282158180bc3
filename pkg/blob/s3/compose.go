package s3

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/blob"
)

type srcInfo struct {
	key  string
	size int64
	etag string
}

// Compose implements pipeline.Composer with one multipart upload. Sources of
// at least MinPartSize are copied server-side (UploadPartCopy). Smaller
// ones are downloaded and merged with their neighbours into uploaded parts
// of at least MinPartSize; when a pending merge is followed by a large
// source, the merge is topped up from the start of that source and the rest
// is copied. A merge buffer stays below 2 x MinPartSize. Every source read
// is pinned to the ETag seen up front, so a source replaced meanwhile fails
// the compose instead of mixing versions. dst appears only on success.
func (s *Store) Compose(ctx context.Context, dst string, srcs []string) (err error) {
	if err := blob.ValidateKey(dst); err != nil {
		return fmt.Errorf("s3: compose: %w", err)
	}
	for _, src := range srcs {
		if err := blob.ValidateKey(src); err != nil {
			return fmt.Errorf("s3: compose %s: %w", dst, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: compose %s: %w", dst, err)
	}
	infos, err := s.headAll(ctx, srcs)
	if err != nil {
		return fmt.Errorf("s3: compose %s: %w", dst, err)
	}
	var total int64
	for _, in := range infos {
		total += in.size
	}
	if total == 0 {
		return s.putObject(ctx, "compose", dst, nil, cond{})
	}
	id, err := s.createUpload(ctx, dst)
	if err != nil {
		return s.fail("compose", dst, err)
	}
	defer func() {
		if err != nil {
			err = s.abort(ctx, "compose", dst, id, err)
		}
	}()
	p := s.newParts(ctx, dst, id)
	p.g.Go(func() error { return s.plan(p, infos) })
	parts, err := p.wait()
	if err != nil {
		return s.fail("compose", dst, err)
	}
	return s.complete(ctx, "compose", dst, id, parts, cond{})
}

func (s *Store) plan(p *parts, infos []srcInfo) error {
	var buf []byte // pending merge; holds a slot while non-nil
	flush := func() error {
		if buf == nil {
			return nil
		}
		b := buf
		buf = nil
		return p.upload(b, func() {})
	}
	appendRange := func(src srcInfo, start, end int64) error {
		if buf == nil {
			if err := p.acquire(); err != nil {
				return err
			}
			buf = make([]byte, 0, 2*MinPartSize)
		}
		var err error
		buf, err = s.readRange(p.ctx, src, start, end, buf)
		return err
	}
	defer func() {
		if buf != nil {
			p.release()
		}
	}()
	for _, src := range infos {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		switch need := MinPartSize - int64(len(buf)); {
		case src.size == 0:
		case len(buf) == 0 && src.size >= MinPartSize:
			if err := p.copyRange(src, 0, src.size); err != nil {
				return err
			}
		case src.size-need >= MinPartSize:
			if err := appendRange(src, 0, need); err != nil {
				return err
			}
			if err := flush(); err != nil {
				return err
			}
			if err := p.copyRange(src, need, src.size); err != nil {
				return err
			}
		default:
			if err := appendRange(src, 0, src.size); err != nil {
				return err
			}
			if len(buf) >= MinPartSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// readRange appends bytes [start, end) of src to buf.
func (s *Store) readRange(ctx context.Context, src srcInfo, start, end int64, buf []byte) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket:  aws.String(s.bucket),
		Key:     s.key(src.key),
		Range:   aws.String(fmt.Sprintf("bytes=%d-%d", start, end-1)),
		IfMatch: aws.String(src.etag),
	}, quietChecksumLog)
	if err != nil {
		return buf, fmt.Errorf("read %s bytes %d-%d: %w", src.key, start, end-1, err)
	}
	defer out.Body.Close()
	n := int(end - start)
	buf = buf[:len(buf)+n]
	if _, err := io.ReadFull(out.Body, buf[len(buf)-n:]); err != nil {
		return buf, fmt.Errorf("read %s bytes %d-%d: %w", src.key, start, end-1, err)
	}
	return buf, nil
}

// headAll fetches the size and ETag of every source, in parallel.
func (s *Store) headAll(ctx context.Context, srcs []string) ([]srcInfo, error) {
	infos := make([]srcInfo, len(srcs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(headConcurrency)
	for i, src := range srcs {
		g.Go(func() error {
			out, err := s.client.HeadObject(gctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: s.key(src)})
			if err != nil {
				if isNotFound(err) {
					return fmt.Errorf("source %s: %w", src, blob.ErrNotExist)
				}
				return fmt.Errorf("source %s: %w", src, classify(err))
			}
			infos[i] = srcInfo{key: src, size: aws.ToInt64(out.ContentLength), etag: aws.ToString(out.ETag)}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return infos, nil
}
