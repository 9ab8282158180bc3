package archive

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// A .tar.gz archive is written as concatenated gzip members:
//
//	head member      tar header + backup.json, and the storage/ directory
//	storage members  tar entries storage/<key>, no end-of-archive blocks
//	trailer member   the two zero blocks that end a tar archive
//
// A multi-member gzip file is one valid gzip stream (RFC 1952; GNU tar,
// gzip, Go and Node read it), and the tar data runs on across member
// boundaries, so parts produced independently — by parallel workers, or at
// different times — are assembled by plain concatenation, without
// recompressing anything.
//
// Files are written with mode 0600 and directories 0700: a backup may hold
// secrets and user data. Note that a tar.gz with no storage object makes the
// official restore wipe the target bucket (the storage/ directory exists),
// so write a .json when there is no object.

// StorageLevel is the gzip level of storage members. Object bytes are
// mostly already compressed (images, archives), where higher levels cost
// CPU for nothing.
const StorageLevel = gzip.BestSpeed

// Entry describes one object written to a storage member.
type Entry struct {
	Key     string `json:"key"`
	Name    string `json:"name"` // tar member name
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"` // hex SHA-256 of the bytes written
	Escaped bool   `json:"escaped,omitempty"`
}

// WriteHeadMember writes the archive's first gzip member: backup.json (mode
// 0600, exactly size bytes read from backupJSON) and the storage/ directory.
func WriteHeadMember(w io.Writer, backupJSON io.Reader, size int64, mtime time.Time) error {
	zw := newGzip(w, gzip.DefaultCompression, mtime)
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "backup.json", Mode: 0o600, Size: size, ModTime: mtime}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive: head member: %w", err)
	}
	n, err := io.Copy(tw, backupJSON)
	switch {
	case errors.Is(err, tar.ErrWriteTooLong):
		return fmt.Errorf("archive: head member: backup.json is longer than %d bytes", size)
	case err != nil:
		return fmt.Errorf("archive: head member: backup.json: %w", err)
	case n != size:
		return fmt.Errorf("archive: head member: backup.json has %d bytes, want %d", n, size)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "storage/", Mode: 0o700, ModTime: mtime}); err != nil {
		return fmt.Errorf("archive: head member: %w", err)
	}
	return closeMember(tw, zw, "head")
}

// WriteTrailerMember writes the last gzip member: the tar end-of-archive
// blocks.
func WriteTrailerMember(w io.Writer) error {
	zw := newGzip(w, gzip.BestSpeed, time.Time{})
	if err := tar.NewWriter(zw).Close(); err != nil {
		return fmt.Errorf("archive: trailer member: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("archive: trailer member: %w", err)
	}
	return nil
}

func newGzip(w io.Writer, level int, mtime time.Time) *gzip.Writer {
	zw, _ := gzip.NewWriterLevel(w, level) // the levels used here are valid
	if !mtime.IsZero() {
		zw.ModTime = mtime
	}
	return zw
}

// closeMember ends a member without the tar end-of-archive blocks, which
// only the trailer member carries.
func closeMember(tw *tar.Writer, zw *gzip.Writer, what string) error {
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("archive: %s member: %w", what, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("archive: %s member: %w", what, err)
	}
	return nil
}

// StorageMember writes one gzip member of storage/<key> tar entries. Each
// object is streamed; names that do not fit a ustar header get PAX records.
// After an error the member is unusable and its output must be discarded.
type StorageMember struct {
	zw    *gzip.Writer
	tw    *tar.Writer
	mtime time.Time
	buf   []byte
	err   error
}

// NewStorageMember starts a storage member on w. mtime is recorded in the
// tar headers.
func NewStorageMember(w io.Writer, mtime time.Time) *StorageMember {
	return newStorageMember(w, mtime, StorageLevel)
}

func newStorageMember(w io.Writer, mtime time.Time, level int) *StorageMember {
	zw := newGzip(w, level, mtime)
	return &StorageMember{zw: zw, tw: tar.NewWriter(zw), mtime: mtime, buf: make([]byte, 64<<10)}
}

// Add writes the object key with exactly size bytes from r, stored under
// ObjectPath(key). r must hold exactly size bytes.
func (m *StorageMember) Add(key string, size int64, r io.Reader) (Entry, error) {
	if m.err != nil {
		return Entry{}, m.err
	}
	if key == "" || !utf8.ValidString(key) {
		return Entry{}, fmt.Errorf("archive: storage object key %q: want non-empty UTF-8", key)
	}
	if size < 0 {
		return Entry{}, fmt.Errorf("archive: storage object %q: negative size %d", key, size)
	}
	name, escaped := ObjectPath(key)
	e := Entry{Key: key, Name: name, Size: size, Escaped: escaped}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: size, ModTime: m.mtime}
	if err := m.tw.WriteHeader(hdr); err != nil {
		m.err = fmt.Errorf("archive: storage object %q: %w", key, err)
		return e, m.err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(m.tw, h), io.LimitReader(r, size), m.buf)
	if err == nil && n < size {
		err = fmt.Errorf("short object: %d of %d bytes", n, size)
	}
	if err == nil {
		var one [1]byte
		if k, _ := io.ReadFull(r, one[:]); k > 0 {
			err = fmt.Errorf("object is longer than its size %d", size)
		}
	}
	if err != nil {
		m.err = fmt.Errorf("archive: storage object %q: %w", key, err)
		return e, m.err
	}
	e.SHA256 = hex.EncodeToString(h.Sum(nil))
	return e, nil
}

// Close ends the member. It does not close the underlying writer.
func (m *StorageMember) Close() error {
	if m.err != nil {
		return m.err
	}
	m.err = closeMember(m.tw, m.zw, "storage")
	if m.err == nil {
		m.err = errors.New("archive: storage member is closed")
		return nil
	}
	return m.err
}

// TarGzWriter writes a whole archive sequentially: WriteBackupJSON, any
// number of AddObject, Close. It is the head, one storage member and the
// trailer in a row; callers that build parts in parallel use the member
// functions directly.
type TarGzWriter struct {
	w       io.Writer
	mtime   time.Time
	level   int
	head    bool
	storage *StorageMember
	err     error
}

// NewTarGzWriter starts an archive on w.
func NewTarGzWriter(w io.Writer, mtime time.Time) *TarGzWriter {
	return &TarGzWriter{w: w, mtime: mtime, level: StorageLevel}
}

// NewStoredTarGzWriter is NewTarGzWriter whose storage member is not
// compressed (gzip's stored blocks): for an archive read back in the
// same process, where compressing costs CPU and saves nothing.
func NewStoredTarGzWriter(w io.Writer, mtime time.Time) *TarGzWriter {
	return &TarGzWriter{w: w, mtime: mtime, level: gzip.NoCompression}
}

// WriteBackupJSON writes backup.json; it must come first.
func (t *TarGzWriter) WriteBackupJSON(r io.Reader, size int64) error {
	if t.err != nil {
		return t.err
	}
	if t.head {
		return errors.New("archive: TarGzWriter: backup.json written twice")
	}
	t.head = true
	t.err = WriteHeadMember(t.w, r, size, t.mtime)
	return t.err
}

// AddObject writes one storage object.
func (t *TarGzWriter) AddObject(key string, size int64, r io.Reader) (Entry, error) {
	if t.err != nil {
		return Entry{}, t.err
	}
	if !t.head {
		return Entry{}, errors.New("archive: TarGzWriter: AddObject before WriteBackupJSON")
	}
	if t.storage == nil {
		t.storage = newStorageMember(t.w, t.mtime, t.level)
	}
	e, err := t.storage.Add(key, size, r)
	t.err = err
	return e, err
}

// Close writes the rest of the archive. It does not close the underlying
// writer.
func (t *TarGzWriter) Close() error {
	if t.err != nil {
		return t.err
	}
	if !t.head {
		return errors.New("archive: TarGzWriter: Close before WriteBackupJSON")
	}
	if t.storage != nil {
		if t.err = t.storage.Close(); t.err != nil {
			return t.err
		}
	}
	t.err = WriteTrailerMember(t.w)
	if t.err == nil {
		t.err = errors.New("archive: TarGzWriter is closed")
		return nil
	}
	return t.err
}
