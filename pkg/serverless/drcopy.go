package serverless

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/url"
	"strings"

	awsevents "github.com/aws/aws-lambda-go/events"
	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// DRPartSize is the multipart part size of DR copies: 32 MiB x the
// store's 4 parts in flight bounds the copy's buffers to 128 MiB, and
// 10,000 parts allow archives up to 312 GiB.
const DRPartSize = 32 << 20

// readBackChunk is the size of the ranged reads of a read-back check.
const readBackChunk = 64 << 20

// ErrCopyMismatch marks a DR copy (or its source) that does not match the
// archive's manifest.
var ErrCopyMismatch = errors.New("serverless: DR copy does not match the manifest")

// DRCopy is the drcopy function: on the creation of an archive's manifest
// (S3 event) it copies the archive and then the manifest to the DR
// bucket, verified against the manifest.
//
// Verification costs no second read of the archive: the copy streams
// through a hash of every byte (whole file, each manifest part, and each
// upload part), so a source that does not match its manifest fails the
// upload before it completes; S3 checks each uploaded part's SHA-256 on
// receipt; and the stored object's size and composite SHA-256 (HeadObject
// with checksum mode) must equal what was hashed. Where the destination
// reports no checksum, the copy is read back instead, in parallel ranged
// reads per manifest part. The manifest lands last, so a manifest in the
// DR bucket always stands beside a verified archive.
type DRCopy struct {
	*base
	dst pipeline.BlobStore
}

// checksummer is a store that reports the checksum S3 keeps for an object
// (pkg/blob/s3); with another store drcopy verifies by reading back.
type checksummer interface {
	StoredChecksum(ctx context.Context, key string) (size int64, sha256 string, err error)
}

// NewDRCopy builds drcopy: the backup bucket (d.Store) and the DR bucket
// (d.DR; AWSDeps connects it with the role of lambdaenv.DRRoleARN when
// set).
func NewDRCopy(cfg Config, rt Runtime, d Deps) (*DRCopy, error) {
	if d.DR == nil {
		return nil, fmt.Errorf("%w for drcopy: no DR bucket", ErrConfig)
	}
	b, err := newBase(cfg, rt, d)
	if err != nil {
		return nil, err
	}
	return &DRCopy{base: b, dst: d.DR}, nil
}

// CopyResult is drcopy's answer.
type CopyResult struct {
	Copied  []CopiedArchive `json:"copied"`
	Skipped []string        `json:"skipped,omitempty"`
}

// CopiedArchive describes one verified copy.
type CopiedArchive struct {
	Archive  string `json:"archive"`
	Bytes    int64  `json:"bytes"`
	Verified string `json:"verified"` // how: "s3-checksum", "read-back" or "already-copied"
}

// Handle copies the archive of every manifest the event names. Any failure
// fails the invocation (Lambda retries it, then sends it to the DLQ and
// the stack's alarm fires); a repeated event re-verifies and skips.
func (h *DRCopy) Handle(ctx context.Context, ev awsevents.S3Event) (CopyResult, error) {
	log, reqID := h.invocation(ctx)
	var res CopyResult
	var errs []error
	for _, r := range ev.Records {
		key := r.S3.Object.URLDecodedKey
		if key == "" {
			k, err := url.QueryUnescape(r.S3.Object.Key)
			if err != nil {
				errs = append(errs, fmt.Errorf("serverless: event key %q: %w", r.S3.Object.Key, err))
				continue
			}
			key = k
		}
		if r.S3.Bucket.Name != "" && r.S3.Bucket.Name != h.cfg.Bucket {
			log.Warn("event of another bucket; ignored", "bucket", r.S3.Bucket.Name, "key", key)
			res.Skipped = append(res.Skipped, key)
			continue
		}
		if !strings.HasPrefix(key, h.cfg.ArchivePrefix) || !strings.HasSuffix(key, ".manifest.json") {
			log.Info("not an archive manifest; ignored", "key", key)
			res.Skipped = append(res.Skipped, key)
			continue
		}
		start := h.now()
		c, err := h.copyArchive(ctx, log.With("manifest", key), key)
		props := map[string]any{"requestId": reqID, "manifest": key}
		if err != nil {
			log.Error("DR copy failed", "manifest", key, "err", err)
			h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.CountOf(metrics.DRFailures, 1)}, Properties: props, Level: "ERROR"})
			errs = append(errs, err)
			continue
		}
		log.Info("DR copy verified", "archive", c.Archive, "bytes", c.Bytes, "verified", c.Verified)
		h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.CountOf(metrics.DRCopies, 1), metrics.BytesOf(metrics.Bytes, c.Bytes),
			metrics.Since(metrics.Duration, start, h.now())}, Properties: props})
		res.Copied = append(res.Copied, c)
	}
	return res, errors.Join(errs...)
}

func (h *DRCopy) copyArchive(ctx context.Context, log *slog.Logger, manKey string) (CopiedArchive, error) {
	archiveKey := strings.TrimSuffix(manKey, ".manifest.json")
	manBytes, err := readAll(ctx, h.store, manKey, 1<<20)
	if err != nil {
		return CopiedArchive{}, fmt.Errorf("serverless: drcopy: reading %s: %w", manKey, err)
	}
	man, err := archive.DecodeManifest(bytes.NewReader(manBytes))
	if err != nil {
		return CopiedArchive{}, fmt.Errorf("serverless: drcopy: %s: %w", manKey, err)
	}
	if man.Archive != archiveKey[strings.LastIndex(archiveKey, "/")+1:] {
		return CopiedArchive{}, fmt.Errorf("%w: %s names archive %q", ErrCopyMismatch, manKey, man.Archive)
	}
	out := CopiedArchive{Archive: archiveKey, Bytes: man.Size}

	// Already copied and intact: a repeated event changes nothing.
	if have, err := readAll(ctx, h.dst, manKey, 1<<20); err == nil && bytes.Equal(have, manBytes) {
		if how, err := h.verifyCopy(ctx, archiveKey, man, nil); err == nil {
			log.Info("archive already in the DR bucket and verified", "how", how)
			out.Verified = "already-copied"
			return out, nil
		}
	}

	src, err := h.store.Get(ctx, archiveKey)
	if err != nil {
		return out, fmt.Errorf("serverless: drcopy: %w", err)
	}
	defer src.Close()
	v := newCopyVerifier(src, man, DRPartSize)
	if err := h.dst.Put(ctx, archiveKey, v); err != nil {
		return out, fmt.Errorf("serverless: drcopy: copying %s: %w", archiveKey, err)
	}
	how, err := h.verifyCopy(ctx, archiveKey, man, v)
	if err != nil {
		return out, err
	}
	if err := h.dst.Put(ctx, manKey, bytes.NewReader(manBytes)); err != nil {
		return out, fmt.Errorf("serverless: drcopy: copying %s: %w", manKey, err)
	}
	if have, err := readAll(ctx, h.dst, manKey, 1<<20); err != nil || !bytes.Equal(have, manBytes) {
		return out, fmt.Errorf("%w: the DR copy of %s differs from the original (%v)", ErrCopyMismatch, manKey, err)
	}
	out.Verified = how
	return out, nil
}

// verifyCopy checks the stored copy: its size, then S3's own checksum of
// it against the one computed while copying (v; nil when the copy was made
// by an earlier invocation), else a read-back against the manifest.
func (h *DRCopy) verifyCopy(ctx context.Context, key string, man archive.Manifest, v *copyVerifier) (string, error) {
	var size int64
	var got string
	var err error
	if cs, ok := h.dst.(checksummer); ok {
		size, got, err = cs.StoredChecksum(ctx, key)
	} else {
		var info blob.Info
		info, err = h.dst.Stat(ctx, key)
		size = info.Size
	}
	if err != nil {
		return "", fmt.Errorf("serverless: drcopy: stat of the copy of %s: %w", key, err)
	}
	if size != man.Size {
		return "", fmt.Errorf("%w: the copy of %s has %d bytes, the manifest says %d", ErrCopyMismatch, key, size, man.Size)
	}
	if v != nil && got != "" && !h.cfg.VerifyReadBack {
		if want := v.s3Checksum(); !sameChecksum(got, want) {
			return "", fmt.Errorf("%w: S3 reports checksum %s for the copy of %s, the copied bytes give %s", ErrCopyMismatch, got, key, want)
		}
		return "s3-checksum", nil
	}
	if err := readBack(ctx, h.dst, key, man); err != nil {
		return "", err
	}
	return "read-back", nil
}

// readBack reads the copy and checks it against the manifest: each part in
// parallel when the manifest has parts, else the whole file in one stream
// (the assembler writes whole-file hashes only below its compose threshold).
func readBack(ctx context.Context, store pipeline.BlobStore, key string, man archive.Manifest) error {
	if len(man.Parts) == 0 {
		rc, err := store.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("serverless: drcopy: reading back %s: %w", key, err)
		}
		defer rc.Close()
		if err := man.CheckReader(rc); err != nil {
			return fmt.Errorf("%w: %v", ErrCopyMismatch, err)
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, p := range man.Parts {
		g.Go(func() error {
			h := sha256.New()
			for off := int64(0); off < p.Size; off += readBackChunk {
				n := min(readBackChunk, p.Size-off)
				rc, err := store.GetRange(gctx, key, p.Offset+off, n)
				if err != nil {
					return fmt.Errorf("serverless: drcopy: reading back %s: %w", key, err)
				}
				c, err := io.Copy(h, rc)
				rc.Close()
				if err != nil {
					return fmt.Errorf("serverless: drcopy: reading back %s: %w", key, err)
				}
				if c != n {
					return fmt.Errorf("%w: the copy of %s ends inside part %d", ErrCopyMismatch, key, i)
				}
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
				return fmt.Errorf("%w: part %d of the copy of %s has sha256 %s, the manifest says %s", ErrCopyMismatch, i, key, got, p.SHA256)
			}
			return nil
		})
	}
	return g.Wait()
}

func readAll(ctx context.Context, store pipeline.BlobStore, key string, limit int64) ([]byte, error) {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", key, limit)
	}
	return b, nil
}

// copyVerifier passes the archive through to the upload while hashing it:
// the whole file and each manifest part (checked at EOF, where a mismatch
// replaces io.EOF so the upload is aborted instead of completed), and each
// upload part of partSize bytes, from which S3's composite checksum of the
// stored object is predicted.
type copyVerifier struct {
	r        io.Reader
	man      archive.Manifest
	partSize int64

	n         int64
	whole     hash.Hash
	part      hash.Hash // current manifest part
	partIdx   int
	partLeft  int64
	upload    hash.Hash // current upload part
	uploadN   int64
	uploadSum []byte // concatenated upload-part digests
	uploads   int
	done      bool
	err       error
}

func newCopyVerifier(r io.Reader, man archive.Manifest, partSize int64) *copyVerifier {
	v := &copyVerifier{r: r, man: man, partSize: partSize, whole: sha256.New(), upload: sha256.New()}
	if len(man.Parts) > 0 {
		v.part, v.partLeft = sha256.New(), man.Parts[0].Size
	}
	return v
}

func (v *copyVerifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.consume(p[:n])
	if err == io.EOF {
		if verr := v.finish(); verr != nil {
			v.err = verr
			return n, verr
		}
	}
	return n, err
}

func (v *copyVerifier) consume(b []byte) {
	v.n += int64(len(b))
	v.whole.Write(b)
	for rest := b; len(rest) > 0; {
		k := min(int64(len(rest)), v.partSize-v.uploadN)
		v.upload.Write(rest[:k])
		v.uploadN += k
		if v.uploadN == v.partSize {
			v.uploadSum = v.upload.Sum(v.uploadSum)
			v.uploads++
			v.upload.Reset()
			v.uploadN = 0
		}
		rest = rest[k:]
	}
	for rest := b; len(rest) > 0 && v.part != nil; {
		k := min(int64(len(rest)), v.partLeft)
		v.part.Write(rest[:k])
		v.partLeft -= k
		rest = rest[k:]
		if v.partLeft == 0 && v.partIdx < len(v.man.Parts) {
			if got := hex.EncodeToString(v.part.Sum(nil)); got != v.man.Parts[v.partIdx].SHA256 && v.err == nil {
				v.err = fmt.Errorf("%w: part %d of the source archive has sha256 %s, the manifest says %s", ErrCopyMismatch, v.partIdx, got, v.man.Parts[v.partIdx].SHA256)
			}
			v.partIdx++
			v.part.Reset()
			if v.partIdx < len(v.man.Parts) {
				v.partLeft = v.man.Parts[v.partIdx].Size
			} else {
				v.part = nil
			}
		}
	}
}

func (v *copyVerifier) finish() error {
	if v.done {
		return v.err
	}
	v.done = true
	if v.err != nil {
		return v.err
	}
	if v.partIdx < len(v.man.Parts) {
		return fmt.Errorf("%w: the source archive ends inside part %d", ErrCopyMismatch, v.partIdx)
	}
	if err := v.man.Check(v.n, hex.EncodeToString(v.whole.Sum(nil))); err != nil {
		return fmt.Errorf("%w: source: %v", ErrCopyMismatch, err)
	}
	return nil
}

// s3Checksum is the ChecksumSHA256 S3 reports for the uploaded object: the
// object's SHA-256 for a single PutObject (smaller than one part), else
// the SHA-256 of the parts' digests and "-<parts>" (composite).
func (v *copyVerifier) s3Checksum() string {
	if v.n < v.partSize {
		return base64.StdEncoding.EncodeToString(v.whole.Sum(nil))
	}
	sums, parts := v.uploadSum, v.uploads
	if v.uploadN > 0 {
		sums = v.upload.Sum(append([]byte(nil), sums...))
		parts++
	}
	c := sha256.Sum256(sums)
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(c[:]), parts)
}

// sameChecksum compares S3's reported checksum with ours. S3 writes a
// composite checksum as "<base64>-<parts>"; some emulators (moto) leave
// the part count out, so only a count that is present must agree.
func sameChecksum(got, want string) bool {
	if got == want {
		return true
	}
	wantSum, _, composite := strings.Cut(want, "-")
	return composite && got == wantSum
}
