package s3

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// parts runs the part requests of one multipart upload: a producer takes a
// slot before it holds a buffer or starts a copy, and the part's goroutine
// gives it back, so at most Concurrency parts (and buffers) are in flight.
type parts struct {
	s     *Store
	key   string
	id    string
	g     *errgroup.Group
	ctx   context.Context
	slots chan struct{}
	mu    sync.Mutex
	done  []types.CompletedPart
	next  int32
}

func (s *Store) newParts(ctx context.Context, key, id string) *parts {
	g, gctx := errgroup.WithContext(ctx)
	return &parts{s: s, key: key, id: id, g: g, ctx: gctx, slots: make(chan struct{}, s.o.Concurrency)}
}

func (p *parts) acquire() error {
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

func (p *parts) release() { <-p.slots }

func (p *parts) number() (int32, error) {
	if p.next >= MaxParts {
		return 0, fmt.Errorf("more than %d parts (raise the part size)", MaxParts)
	}
	p.next++
	return p.next, nil
}

func (p *parts) add(cp types.CompletedPart) {
	p.mu.Lock()
	p.done = append(p.done, cp)
	p.mu.Unlock()
}

// upload sends data as the next part on a held slot; free runs once the
// part is stored (see putBuf for why not after a failure).
func (p *parts) upload(data []byte, free func()) error {
	num, err := p.number()
	if err != nil {
		free()
		p.release()
		return err
	}
	p.g.Go(func() error {
		defer p.release()
		in := &s3.UploadPartInput{
			Bucket:        aws.String(p.s.bucket),
			Key:           p.s.key(p.key),
			UploadId:      aws.String(p.id),
			PartNumber:    aws.Int32(num),
			Body:          bytes.NewReader(data),
			ContentLength: aws.Int64(int64(len(data))),
		}
		var sha, crc *string
		in.ChecksumAlgorithm, sha, crc = p.s.checksum(data)
		in.ChecksumSHA256, in.ChecksumCRC32C = sha, crc
		out, err := p.s.client.UploadPart(p.ctx, in)
		if err != nil {
			return fmt.Errorf("upload part %d: %w", num, err)
		}
		free()
		p.add(types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumSHA256: sha, ChecksumCRC32C: crc})
		return nil
	})
	return nil
}

// copyRange adds bytes [start, end) of src as parts copied server-side,
// split so no part exceeds copyPartMax. The slots are taken here.
func (p *parts) copyRange(src srcInfo, start, end int64) error {
	n := end - start
	k := (n + p.s.copyPartMax - 1) / p.s.copyPartMax
	chunk := (n + k - 1) / k
	for off := start; off < end; off += chunk {
		last := min(off+chunk, end) - 1
		num, err := p.number()
		if err != nil {
			return err
		}
		if err := p.acquire(); err != nil {
			return err
		}
		p.g.Go(func() error {
			defer p.release()
			out, err := p.s.client.UploadPartCopy(p.ctx, &s3.UploadPartCopyInput{
				Bucket:            aws.String(p.s.bucket),
				Key:               p.s.key(p.key),
				UploadId:          aws.String(p.id),
				PartNumber:        aws.Int32(num),
				CopySource:        p.s.copySource(src.key),
				CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", off, last)),
				CopySourceIfMatch: aws.String(src.etag),
			})
			if err != nil {
				return fmt.Errorf("copy %s bytes %d-%d into part %d: %w", src.key, off, last, num, err)
			}
			cp := types.CompletedPart{PartNumber: aws.Int32(num)}
			if r := out.CopyPartResult; r != nil {
				cp.ETag, cp.ChecksumSHA256, cp.ChecksumCRC32C = r.ETag, r.ChecksumSHA256, r.ChecksumCRC32C
			}
			p.add(cp)
			return nil
		})
	}
	return nil
}

// wait returns the completed parts in order once every part is done.
func (p *parts) wait() ([]types.CompletedPart, error) {
	if err := p.g.Wait(); err != nil {
		return nil, err
	}
	sortParts(p.done)
	return p.done, nil
}
