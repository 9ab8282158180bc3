package serverless

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

const mib = 1 << 20

// sparseManifest is a parted manifest of the given part sizes (hashes
// are placeholders: planning does not look at them).
func sparseManifest(sizes ...int64) archive.Manifest {
	m := archive.Manifest{Version: archive.ManifestVersion, Archive: "a.tar.gz"}
	for i, n := range sizes {
		m.Parts = append(m.Parts, archive.ManifestPart{Offset: m.Size, Size: n, SHA256: fmt.Sprintf("%064x", i)})
		m.Size += n
	}
	return m
}

func TestPlanDRCopy(t *testing.T) {
	// The assembler's layout: a small head member, storage members of up
	// to 256 MiB (some small), a tiny trailer.
	m := sparseManifest(100<<10, 256*mib, 256*mib, 3*mib, 1*mib, 2*mib, 200*mib, 1<<10)
	p := planDRCopy(m, DRPartSize)
	var got []string
	for i, r := range p.parts {
		w := "read"
		if p.want[i] != "" {
			w = "=" + p.want[i][62:]
		}
		got = append(got, fmt.Sprintf("%d+%d%s", r.Offset/mib, r.Size/mib, w))
	}
	// head + member 1 are read (9 parts of ~28 MiB); member 2 is its own
	// part (S3's SHA-256 = the manifest's); members 3-5 (6 MiB together)
	// are one part, read; member 6 and the trailer are their own parts.
	want := "[0+28read 28+28read 56+28read 85+28read 113+28read 142+28read 170+28read 199+28read 227+28read 256+256=02 512+6read 518+200=06 718+0=07]"
	if fmt.Sprint(got) != want {
		t.Fatalf("plan\n got %v\nwant %s", got, want)
	}
	var off int64
	for i, r := range p.parts {
		if r.Offset != off || (r.Size < s3store.MinPartSize && i < len(p.parts)-1) || r.Size > s3store.MaxPartSize {
			t.Fatalf("part %d: %+v", i, r)
		}
		off += r.Size
	}
	if off != m.Size {
		t.Fatalf("the parts cover %d of %d bytes", off, m.Size)
	}

	// A whole-file manifest up to 5 GiB is one part, verified by S3's
	// SHA-256 of it; above, it is cut and read.
	whole := archive.Manifest{Size: 900 * mib, SHA256: fmt.Sprintf("%064x", 7)}
	if p := planDRCopy(whole, DRPartSize); len(p.parts) != 1 || p.want[0] != whole.SHA256 {
		t.Fatalf("whole-file plan %+v", p)
	}
	whole.Size = 12 << 30
	if p := planDRCopy(whole, DRPartSize); len(p.parts) != 384 || p.want[0] != "" {
		t.Fatalf("12 GiB whole-file plan: %d parts", len(p.parts))
	}
	// Huge archives stay under S3's part limit.
	whole.Size = 2 << 40
	if p := planDRCopy(whole, DRPartSize); len(p.parts) > s3store.MaxParts || len(p.parts) < 4000 {
		t.Fatalf("2 TiB: %d parts", len(p.parts))
	}
	many := make([]int64, 30000)
	for i := range many {
		many[i] = 6 * mib
	}
	if p := planDRCopy(sparseManifest(many...), DRPartSize); len(p.parts) > s3store.MaxParts {
		t.Fatalf("30,000 members: %d parts", len(p.parts))
	}
}

// verifyFixture is an archive in a directory store with a manifest of
// its members, planned, and the parts S3 would report for a copy of it.
type verifyFixture struct {
	data  []byte
	man   archive.Manifest
	plan  drPlan
	store *fs.Store
	parts []s3store.CopiedPart
}

func newVerifyFixture(t *testing.T, withSums bool, sizes ...int) *verifyFixture {
	t.Helper()
	f := &verifyFixture{}
	m := archive.Manifest{Version: archive.ManifestVersion, Archive: "a.tar.gz"}
	for _, n := range sizes {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		s := sha256.Sum256(b)
		m.Parts = append(m.Parts, archive.ManifestPart{Offset: m.Size, Size: int64(n), SHA256: hex.EncodeToString(s[:])})
		m.Size += int64(n)
		f.data = append(f.data, b...)
	}
	f.man, f.plan = m, planDRCopy(m, 8*mib)
	var err error
	if f.store, err = fs.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Put(context.Background(), "a.tar.gz", bytes.NewReader(f.data)); err != nil {
		t.Fatal(err)
	}
	for i, r := range f.plan.parts {
		p := s3store.CopiedPart{Number: int32(i + 1), Offset: r.Offset, Size: r.Size, ETag: "e"}
		if withSums {
			s := sha256.Sum256(f.data[r.Offset : r.Offset+r.Size])
			p.SHA256 = base64.StdEncoding.EncodeToString(s[:])
		}
		f.parts = append(f.parts, p)
	}
	return f
}

func (f *verifyFixture) verifier() *drVerifier {
	return &drVerifier{plan: f.plan, src: f.store, key: "a.tar.gz", conc: 3}
}

func TestDRVerifier(t *testing.T) {
	ctx := context.Background()
	// head (small), a member of its own, three small ones, a trailer.
	sizes := []int{70 << 10, 6 * mib, 2 * mib, 2 * mib, 2 * mib, 300}
	f := newVerifyFixture(t, true, sizes...)
	// head+member 1 and members 2-4 are read, the trailer is its own part.
	if len(f.plan.parts) != 3 || f.plan.want[0] != "" || f.plan.want[1] != "" || f.plan.want[2] != f.man.Parts[5].SHA256 {
		t.Fatalf("plan %+v %q", f.plan.parts, f.plan.want)
	}
	v := f.verifier()
	if err := v.verify(ctx, f.parts); err != nil {
		t.Fatal(err)
	}
	whole := sha256.New()
	for _, p := range f.parts {
		raw, _ := base64.StdEncoding.DecodeString(p.SHA256)
		whole.Write(raw)
	}
	if c, ok := v.composite(); !ok || c != fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(whole.Sum(nil)), len(f.parts)) {
		t.Fatalf("composite %s %v", c, ok)
	}
	readable := int64(0)
	for i, r := range f.plan.parts {
		if f.plan.want[i] == "" {
			readable += r.Size
		}
	}
	if v.read != readable || v.how() != "s3-checksum+read" {
		t.Fatalf("read %d bytes (%s), want %d", v.read, v.how(), readable)
	}

	// Members of 5 MiB and more: nothing is read.
	g := newVerifyFixture(t, true, 6*mib, 5*mib, 7*mib, 100)
	v = g.verifier()
	if err := v.verify(ctx, g.parts); err != nil || v.read != 0 || v.how() != "s3-checksum" {
		t.Fatalf("aligned: %v, read %d", err, v.read)
	}
	// A part S3 copied just now that does not match the manifest: the
	// source does not match it, for good.
	bad := append([]s3store.CopiedPart(nil), g.parts...)
	bad[1].SHA256 = g.parts[0].SHA256
	if err := g.verifier().verify(ctx, bad); !errors.Is(err, ErrCopyMismatch) || !pipeline.IsPermanent(err) {
		t.Fatalf("mismatching part: %v", err)
	}
	// The same from an earlier invocation: copied again.
	bad[1].Resumed = true
	var bpe *s3store.BadPartsError
	if err := g.verifier().verify(ctx, bad); !errors.As(err, &bpe) || fmt.Sprint(bpe.Numbers) != "[2]" {
		t.Fatalf("mismatching resumed part: %v", err)
	}

	// No checksums from the server: everything is read, and the
	// composite to expect is known.
	h := newVerifyFixture(t, false, sizes...)
	v = h.verifier()
	if err := v.verify(ctx, h.parts); err != nil || v.read != int64(len(h.data)) {
		t.Fatalf("no checksums: %v, read %d of %d", err, v.read, len(h.data))
	}
	hw := sha256.New()
	for _, r := range h.plan.parts {
		s := sha256.Sum256(h.data[r.Offset : r.Offset+r.Size])
		hw.Write(s[:])
	}
	if c, ok := v.composite(); !ok || c != fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(hw.Sum(nil)), len(h.parts)) {
		t.Fatalf("composite without server checksums: %s %v", c, ok)
	}
	// A source that does not match its manifest.
	corrupt := append([]byte(nil), h.data...)
	corrupt[6*mib] ^= 1
	if err := h.store.Put(ctx, "a.tar.gz", bytes.NewReader(corrupt)); err != nil {
		t.Fatal(err)
	}
	if err := h.verifier().verify(ctx, h.parts); !errors.Is(err, ErrCopyMismatch) || !pipeline.IsPermanent(err) {
		t.Fatalf("corrupt source: %v", err)
	}
	if err := h.store.Put(ctx, "a.tar.gz", bytes.NewReader(h.data[:len(h.data)-10])); err != nil {
		t.Fatal(err)
	}
	if err := h.verifier().verify(ctx, h.parts); !errors.Is(err, ErrCopyMismatch) {
		t.Fatalf("short source: %v", err)
	}
}
