package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Verify checks a backup file end to end: everything Read checks (for a
// .tar.gz including every object's SHA-256 where storage.objects lists
// one), that the whole file was consumed, and the manifest beside it when
// there is one (size and SHA-256 of the file). The Summary is filled as far
// as the check got, also on error; its warnings include a file holding
// secrets that others may read.
func Verify(ctx context.Context, path string) (Summary, error) {
	empty := Summary{File: path, Format: DetectFormat(path), Sections: []string{}, Dumps: []DumpSummary{}, Warnings: []string{}}
	f, err := os.Open(path)
	if err != nil {
		return empty, fmt.Errorf("archive: verify: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return empty, fmt.Errorf("archive: verify: %w", err)
	}
	if !st.Mode().IsRegular() {
		return empty, fmt.Errorf("archive: verify %s: not a regular file", path)
	}
	h := sha256.New()
	rd := newReader(ctx, nil, empty.Format)
	err = rd.read(io.TeeReader(f, h))
	if err == nil {
		// Read consumes its input to the end; anything left is a bug here.
		if n, cerr := io.Copy(h, f); cerr != nil || n != 0 {
			err = fmt.Errorf("archive: verify %s: %d bytes left unread (%v)", path, n, cerr)
		}
	}
	s := rd.summary()
	s.File = path
	s.Mode = fmt.Sprintf("%04o", st.Mode().Perm())
	if (s.Secrets > 0 || rd.inlineSecrets > 0) && st.Mode().Perm()&0o077 != 0 {
		s.warn("the file holds secrets but its mode is %s; it should be 0600", s.Mode)
	}
	if err != nil {
		if rd.idx.missing > 0 {
			err = nameMissing(ctx, path, rd, err)
		}
		return s, err
	}
	s.SHA256 = hex.EncodeToString(h.Sum(nil))
	m, err := ReadManifestFile(ManifestName(path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.Manifest = "absent"
		return s, nil
	case err != nil:
		s.Manifest = "invalid"
		return s, err
	}
	if m.Archive != filepath.Base(path) {
		s.warn("the manifest names %s, not %s", m.Archive, filepath.Base(path))
	}
	if err := m.Check(s.Bytes, s.SHA256); err != nil {
		s.Manifest = "mismatch"
		return s, err
	}
	if len(m.Parts) > 0 {
		if _, err := CheckManifestFile(path); err != nil {
			s.Manifest = "mismatch"
			return s, err
		}
	}
	s.Manifest = "ok"
	return s, nil
}

// nameMissing reads backup.json again to name some of the storage.objects
// entries that had no member; the first pass keeps only key hashes.
func nameMissing(ctx context.Context, path string, first *reader, err error) error {
	var ae *Error
	if !errors.As(err, &ae) {
		return err
	}
	want := make(map[uint64]bool)
	for _, h := range first.idx.missingHashes(5) {
		want[h] = true
	}
	f, ferr := os.Open(path)
	if ferr != nil {
		return err
	}
	defer f.Close()
	v := &missingNamer{seed: first.idx.seed, want: want}
	Read(ctx, f, first.f, v)
	if len(v.names) > 0 {
		named := *ae
		named.Detail += fmt.Sprintf("; for example %q", v.names)
		return &named
	}
	return err
}

type missingNamer struct {
	NopVisitor
	seed  maphash.Seed
	want  map[uint64]bool
	names []string
}

var errStop = errors.New("stop")

func (v *missingNamer) StorageObject(_ context.Context, o Object) error {
	if v.want[maphash.String(v.seed, o.Key)] {
		v.names = append(v.names, o.Key)
	}
	return nil
}

// StorageMember stops the second pass: the listing is complete by then.
func (v *missingNamer) StorageMember(context.Context, Member, io.Reader) error { return errStop }
