package serverless

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/archive"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// How a DR copy is verified (see docs/DEPLOY.md, "How the copy is made").
//
// The copy is made server-side, so no process sees its bytes. What proves
// it is S3's own SHA-256 of every copied part (the upload asks for SHA-256
// checksums; UploadPartCopy and ListParts report them) compared, before
// the upload is completed, with what the manifest says:
//
//   - the parts are planned along the manifest: a manifest part (a gzip
//     member of the archive; the whole file for an archive with a
//     whole-file SHA-256) of 5 MiB..5 GiB becomes exactly one copy part,
//     so S3's SHA-256 of that part must equal the manifest's: nothing is
//     read;
//   - manifest parts S3 cannot take as parts of their own (smaller than 5
//     MiB: the archive's head and trailer, small storage members; larger
//     than 5 GiB) are grouped, or split, into copy parts whose SHA-256 the
//     manifest does not give. Their range of the source is read (streamed,
//     in parallel where a range can be cut on a boundary of both kinds)
//     and hashed both ways: each manifest part against the manifest, each
//     copy part against S3's checksum of it. Typically that is the head
//     member and its neighbour, a few hundred MiB at most.
//
// A mismatch against the manifest aborts the upload (the source does not
// match its manifest), so nothing lands in the DR bucket. A part an
// earlier invocation copied (a resumed copy) that does not match is copied
// again once. After completion the object's size and composite checksum
// (S3's SHA-256 of the parts' SHA-256s) must equal what the verified parts
// give. An S3 that reports no part checksums (an emulator) is covered by
// reading every range of the source and relying on that composite check.

// drPlan is how an archive is copied part by part.
type drPlan struct {
	parts []s3store.Range
	// want[i] is the hex SHA-256 part i must have per the manifest, ""
	// when the manifest does not give it.
	want []string
	// units are the manifest's parts (the whole file for a whole-file
	// SHA-256).
	units []archive.ManifestPart
}

// planDRCopy plans the copy parts of an archive along its manifest.
// target is the size of the parts a group or a large range is cut into.
func planDRCopy(man archive.Manifest, target int64) drPlan {
	p := drPlan{units: man.Parts}
	if len(p.units) == 0 {
		p.units = []archive.ManifestPart{{Offset: 0, Size: man.Size, SHA256: man.SHA256}}
	}
	// Enough room under S3's part limit whatever the archive size.
	target = max(target, roundUp((man.Size+s3store.MaxParts/2-1)/(s3store.MaxParts/2), 1<<20), s3store.MinPartSize)
	target = min(target, s3store.MaxPartSize)
	var gStart, gSize int64
	flush := func() {
		if gSize == 0 {
			return
		}
		k := (gSize + target - 1) / target
		chunk := (gSize + k - 1) / k
		for off := gStart; off < gStart+gSize; off += chunk {
			p.parts = append(p.parts, s3store.Range{Offset: off, Size: min(chunk, gStart+gSize-off)})
			p.want = append(p.want, "")
		}
		gSize = 0
	}
	last := len(p.units) - 1
	for i, u := range p.units {
		fits := u.Size <= s3store.MaxPartSize && (u.Size >= s3store.MinPartSize || i == last)
		if gSize == 0 && fits && u.Size > 0 {
			p.parts = append(p.parts, s3store.Range{Offset: u.Offset, Size: u.Size})
			p.want = append(p.want, u.SHA256)
			continue
		}
		if gSize == 0 {
			gStart = u.Offset
		}
		gSize += u.Size
		if gSize >= s3store.MinPartSize {
			flush()
		}
	}
	flush()
	if len(p.parts) > s3store.MaxParts {
		// Tens of thousands of members: equal parts, every one verified by
		// reading.
		p.parts, p.want = nil, nil
		for off := int64(0); off < man.Size; off += target {
			p.parts = append(p.parts, s3store.Range{Offset: off, Size: min(target, man.Size-off)})
			p.want = append(p.want, "")
		}
	}
	return p
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// b64 turns a manifest's hex SHA-256 into S3's base64 form ("" if invalid).
func b64(hexSum string) string {
	b, err := hex.DecodeString(hexSum)
	if err != nil || len(b) != sha256.Size {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// drVerifier checks the parts of one copy against the manifest (before
// completion) and then the completed object.
type drVerifier struct {
	plan  drPlan
	src   rangeReader
	key   string // the source archive, for messages
	conc  int
	mu    sync.Mutex
	sums  [][]byte // the SHA-256 of every part, once known
	read  int64    // source bytes read
	reads int      // verifications that read
}

// rangeReader reads a range of the source archive.
type rangeReader interface {
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
}

// verify is s3store.CopyOptions.Verify.
func (v *drVerifier) verify(ctx context.Context, parts []s3store.CopiedPart) error {
	if len(parts) != len(v.plan.parts) {
		return fmt.Errorf("%d parts in the upload, %d planned", len(parts), len(v.plan.parts))
	}
	v.sums = make([][]byte, len(parts))
	needRead := make([]bool, len(parts))
	var bad []int32
	for i, p := range parts {
		got, _ := base64.StdEncoding.DecodeString(p.SHA256)
		switch {
		case v.plan.want[i] != "" && len(got) == sha256.Size:
			if p.SHA256 != b64(v.plan.want[i]) {
				if p.Resumed {
					bad = append(bad, p.Number)
					continue
				}
				return pipeline.Permanent(fmt.Errorf("%w: S3's SHA-256 of part %d (bytes %d-%d) of the copy of %s is %s, the manifest says %s",
					ErrCopyMismatch, p.Number, p.Offset, p.Offset+p.Size-1, v.key, p.SHA256, b64(v.plan.want[i])))
			}
			v.sums[i] = got
		default:
			needRead[i] = true
		}
	}
	readBad, err := v.readParts(ctx, parts, needRead)
	if err != nil {
		return err
	}
	if bad = append(bad, readBad...); len(bad) > 0 {
		return &s3store.BadPartsError{Numbers: bad, Err: fmt.Errorf("%w: parts an earlier copy of %s left differ from the source", ErrCopyMismatch, v.key)}
	}
	return nil
}

// span is a range of the source that is read in one stream: whole
// manifest parts and whole copy parts.
type span struct {
	off, end     int64
	unit, part   int // the first manifest part and copy part in it
	nUnit, nPart int
}

// readParts reads the source ranges of the parts that need it, checking
// every manifest part in them against the manifest and every copy part
// against S3's checksum (when there is one). It returns the resumed parts
// whose checksum differs from the source.
func (v *drVerifier) readParts(ctx context.Context, parts []s3store.CopiedPart, need []bool) ([]int32, error) {
	spans := v.spans(parts, need)
	if len(spans) == 0 {
		return nil, nil
	}
	v.reads++
	var bad []int32
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.conc)
	for _, sp := range spans {
		g.Go(func() error {
			b, err := v.readSpan(gctx, parts, sp)
			v.mu.Lock()
			bad = append(bad, b...)
			v.mu.Unlock()
			return err
		})
	}
	return bad, g.Wait()
}

// spans cuts the ranges to read where a manifest part and a copy part
// end together, so the pieces can be read in parallel.
func (v *drVerifier) spans(parts []s3store.CopiedPart, need []bool) []span {
	var out []span
	u := 0
	for i := 0; i < len(parts); {
		if !need[i] {
			i++
			continue
		}
		for u < len(v.plan.units) && v.plan.units[u].Offset+v.plan.units[u].Size <= parts[i].Offset {
			u++
		}
		sp := span{off: parts[i].Offset, part: i, unit: u}
		for i < len(parts) && need[i] {
			end := parts[i].Offset + parts[i].Size
			i++
			for u < len(v.plan.units) && v.plan.units[u].Offset+v.plan.units[u].Size <= end {
				u++
			}
			if u == len(v.plan.units) || v.plan.units[u].Offset == end {
				// A common boundary: close the span here.
				sp.end, sp.nPart, sp.nUnit = end, i-sp.part, u-sp.unit
				out = append(out, sp)
				sp = span{off: end, part: i, unit: u}
			}
		}
		if sp.off < parts[i-1].Offset+parts[i-1].Size {
			// Ends inside a manifest part whose other end needs no read
			// (cannot happen with planDRCopy's plans): read on to its end.
			sp.end = parts[i-1].Offset + parts[i-1].Size
			sp.nPart = i - sp.part
			sp.nUnit = u - sp.unit + 1
			out = append(out, sp)
		}
	}
	return out
}

func (v *drVerifier) readSpan(ctx context.Context, parts []s3store.CopiedPart, sp span) ([]int32, error) {
	var bad []int32
	unitH, partH := sha256.New(), sha256.New()
	u, p := sp.unit, sp.part
	unitLeft := v.unitLeft(u, sp.off)
	partLeft := parts[p].Size
	check := func(b []byte) error {
		for len(b) > 0 {
			n := min(int64(len(b)), unitLeft, partLeft)
			if n == 0 {
				return fmt.Errorf("serverless: drcopy: read of %s past its planned range", v.key)
			}
			unitH.Write(b[:n])
			partH.Write(b[:n])
			unitLeft -= n
			partLeft -= n
			b = b[n:]
			if unitLeft == 0 && u < sp.unit+sp.nUnit {
				if err := v.checkUnit(u, unitH); err != nil {
					return err
				}
				unitH.Reset()
				if u++; u < len(v.plan.units) {
					unitLeft = v.plan.units[u].Size
				}
			}
			if partLeft == 0 && p < sp.part+sp.nPart {
				if b := v.checkPart(parts[p], partH); b != 0 {
					bad = append(bad, b)
				}
				partH.Reset()
				if p++; p < len(parts) {
					partLeft = parts[p].Size
				}
			}
		}
		return nil
	}
	for off := sp.off; off < sp.end; off += readBackChunk {
		n := min(readBackChunk, sp.end-off)
		rc, err := v.src.GetRange(ctx, v.key, off, n)
		if err != nil {
			return nil, fmt.Errorf("serverless: drcopy: reading %s: %w", v.key, err)
		}
		c, err := io.Copy(writerFunc(check), rc)
		rc.Close()
		v.mu.Lock()
		v.read += c
		v.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if c != n {
			return nil, pipeline.Permanent(fmt.Errorf("%w: the source %s ends at %d, the manifest says %d bytes", ErrCopyMismatch, v.key, off+c, v.plan.units[len(v.plan.units)-1].Offset+v.plan.units[len(v.plan.units)-1].Size))
		}
	}
	return bad, nil
}

// unitLeft is how much of manifest part u lies from off on.
func (v *drVerifier) unitLeft(u int, off int64) int64 {
	if u >= len(v.plan.units) {
		return 0
	}
	return v.plan.units[u].Offset + v.plan.units[u].Size - off
}

func (v *drVerifier) checkUnit(u int, h hash.Hash) error {
	if got := hex.EncodeToString(h.Sum(nil)); got != v.plan.units[u].SHA256 {
		return pipeline.Permanent(fmt.Errorf("%w: part %d of the source archive %s has sha256 %s, the manifest says %s", ErrCopyMismatch, u, v.key, got, v.plan.units[u].SHA256))
	}
	return nil
}

// checkPart compares what was read of a copy part with S3's checksum of
// it; it returns the number of a resumed part that differs (to be copied
// again).
func (v *drVerifier) checkPart(p s3store.CopiedPart, h hash.Hash) int32 {
	sum := h.Sum(nil)
	v.mu.Lock()
	v.sums[p.Number-1] = sum
	v.mu.Unlock()
	if p.SHA256 == "" || p.SHA256 == base64.StdEncoding.EncodeToString(sum) {
		return 0
	}
	// The source matched the manifest, the copy of it does not: a part of
	// an earlier copy (another version of the source). A part copied just
	// now cannot differ from the version it was pinned to, unless the
	// source was replaced between the copy and this read; copying it again
	// settles both.
	return p.Number
}

// composite is the checksum S3 reports for the completed object: the
// SHA-256 of the parts' SHA-256s, "-<parts>". ok is false while a part's
// SHA-256 is unknown.
func (v *drVerifier) composite() (string, bool) {
	h := sha256.New()
	for _, s := range v.sums {
		if s == nil {
			return "", false
		}
		h.Write(s)
	}
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(h.Sum(nil)), len(v.sums)), true
}

// how names the verification for CopiedArchive.Verified.
func (v *drVerifier) how() string {
	if v.read == 0 {
		return "s3-checksum"
	}
	return "s3-checksum+read"
}

type writerFunc func([]byte) error

func (w writerFunc) Write(b []byte) (int, error) {
	if err := w(b); err != nil {
		return 0, err
	}
	return len(b), nil
}
