package archive

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// DeepReport is what VerifyDeep checked.
type DeepReport struct {
	// Units is the number of dumps (DOs, D1 databases, namespaces, config,
	// secrets) decompressed and parsed.
	Units int `json:"units"`
	// Objects are storage.objects entries; Members the storage members.
	Objects int64 `json:"objects"`
	Members int64 `json:"members"`
	// SHA256Checked members were compared with a full listed SHA-256;
	// MD5Checked with a single-part MD5 etag. ETagsNotMD5 counts etags of
	// another form (multipart "…-N"), checked by size and SHA-256 only.
	SHA256Checked int64 `json:"sha256Checked"`
	MD5Checked    int64 `json:"md5Checked"`
	ETagsNotMD5   int64 `json:"etagsNotMD5"`
}

// VerifyDeep reads a backup once more, past what Verify checks: every
// storage member is re-hashed (MD5 and SHA-256) and compared in full with
// its storage.objects entry (size, SHA-256 when listed, the etag when it
// is a single-part MD5), entry by entry by exact key. The archive is
// streamed; memory grows by about 80 bytes per storage object waiting for
// its member (none in edgevault's own archives after each member is
// matched, since a listing precedes its members), never with object size.
func VerifyDeep(ctx context.Context, path string) (DeepReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return DeepReport{}, fmt.Errorf("archive: deep verify: %w", err)
	}
	defer f.Close()
	v := &deepVisitor{listed: map[[16]byte]deepRec{}, early: map[[16]byte]deepRec{}}
	_, err = Read(ctx, f, DetectFormat(path), v)
	if err != nil {
		return v.rep, err
	}
	if DetectFormat(path) == TarGz && len(v.listed) > 0 {
		for _, r := range v.listed {
			return v.rep, fmt.Errorf("%w: deep: %d storage.objects entries have no member, e.g. %q", ErrInvalid, len(v.listed), r.key)
		}
	}
	if len(v.early) > 0 {
		for _, r := range v.early {
			return v.rep, fmt.Errorf("%w: deep: %d members are not in storage.objects, e.g. %q", ErrInvalid, len(v.early), r.key)
		}
	}
	return v.rep, nil
}

type deepRec struct {
	key    string
	size   int64
	sha    []byte // nil: not listed
	md5    []byte // nil: the etag is not a single-part MD5
	member bool   // computed from a member (early), not listed
}

type deepVisitor struct {
	NopVisitor
	rep    DeepReport
	listed map[[16]byte]deepRec // listing entries waiting for their member
	early  map[[16]byte]deepRec // members read before the listing
	buf    []byte
}

func keyID(key string) [16]byte {
	s := sha256.Sum256([]byte(key))
	var k [16]byte
	copy(k[:], s[:16])
	return k
}

// etagMD5 returns the MD5 a single-part etag holds, or nil.
func etagMD5(etag string) []byte {
	e := strings.Trim(etag, `"`)
	if len(e) != 32 {
		return nil
	}
	b, err := hex.DecodeString(strings.ToLower(e))
	if err != nil {
		return nil
	}
	return b
}

func (v *deepVisitor) EndValue(context.Context, ValueRef, ValueStats) error {
	v.rep.Units++
	return nil
}

func (v *deepVisitor) StorageObject(_ context.Context, o Object) error {
	v.rep.Objects++
	r := deepRec{size: o.Size, md5: etagMD5(o.ETag)}
	if r.md5 == nil {
		v.rep.ETagsNotMD5++
	}
	if o.SHA256 != "" {
		r.sha, _ = hex.DecodeString(o.SHA256)
	}
	id := keyID(o.Key)
	if m, ok := v.early[id]; ok {
		delete(v.early, id)
		return v.compare(o.Key, r, m)
	}
	r.key = o.Key
	v.listed[id] = r
	return nil
}

func (v *deepVisitor) StorageMember(_ context.Context, m Member, body io.Reader) error {
	v.rep.Members++
	hm, hs := md5.New(), sha256.New()
	if v.buf == nil {
		v.buf = make([]byte, 256<<10)
	}
	n, err := io.CopyBuffer(io.MultiWriter(hm, hs), body, v.buf)
	if err != nil {
		return err
	}
	got := deepRec{key: m.Key, size: n, sha: hs.Sum(nil), md5: hm.Sum(nil), member: true}
	id := keyID(m.Key)
	want, ok := v.listed[id]
	if !ok {
		v.early[id] = got
		return nil
	}
	delete(v.listed, id)
	return v.compare(m.Key, want, got)
}

// compare checks a member's sums (got) against its listing entry (want).
func (v *deepVisitor) compare(key string, want, got deepRec) error {
	if got.size != want.size {
		return fmt.Errorf("%w: deep: object %q: the member has %d bytes, storage.objects says %d", ErrInvalid, key, got.size, want.size)
	}
	if want.sha != nil {
		if hex.EncodeToString(got.sha) != hex.EncodeToString(want.sha) {
			return fmt.Errorf("%w: deep: object %q: the member's sha256 is %x, storage.objects says %x", ErrInvalid, key, got.sha, want.sha)
		}
		v.rep.SHA256Checked++
	}
	if want.md5 != nil {
		if hex.EncodeToString(got.md5) != hex.EncodeToString(want.md5) {
			return fmt.Errorf("%w: deep: object %q: the member's md5 is %x, its etag says %x", ErrInvalid, key, got.md5, want.md5)
		}
		v.rep.MD5Checked++
	}
	return nil
}
