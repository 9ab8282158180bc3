package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

var (
	_ pipeline.BlobStore = (*Store)(nil)
	_ pipeline.Composer  = (*Store)(nil)
)

// TempPrefix starts the names of in-progress writes. List never shows
// them, and keys with a segment starting with it are rejected so a blob
// can never be mistaken for one.
const TempPrefix = ".edgevault-tmp-"

const (
	filePerm = 0o600
	dirPerm  = 0o700
	// copyChunk bounds how long a Compose copy runs between ctx checks.
	copyChunk = 64 << 20
)

// Store keeps blobs as files under a root directory.
type Store struct {
	root   *os.Root
	noSync func(key string) bool

	// dirs caches handles on directories: os.Root walks every path
	// component (symlink-safely) on each call, which for deep staging
	// keys costs more than the writes themselves. A cached handle can go
	// stale when its directory is pruned; every use that meets ENOENT
	// drops it and walks again.
	// Handles are counted: an evicted handle is closed once its last
	// user releases it, so open descriptors stay bounded by the cache
	// and the operations in flight.
	mu   sync.Mutex
	dirs map[string]*dirHandle
	// replaceMu serialises Replace within this process; flockDir fences
	// other processes.
	replaceMu sync.Mutex
}

// dirHandle is a cached directory handle and its users.
type dirHandle struct {
	root    *os.Root
	refs    int
	evicted bool
}

const maxCachedDirs = 256

// Options tune a Store.
type Options struct {
	// NoSync, when it returns true for a key, skips the fsyncs that make
	// a write survive an operating-system crash (the write stays atomic
	// for every other reader). Staging data that is recreated anyway (a
	// restore's unpacked archive, resumable backup parts) does not need
	// them, and on a busy disk they are most of the cost of a write.
	NoSync func(key string) bool
}

// New opens (creating it 0700 if needed) the directory dir as a Store
// whose writes are durable. Close releases the directory handle.
func New(dir string) (*Store, error) { return NewWithOptions(dir, Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(dir string, o Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fs: empty root directory")
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("fs: create root %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fs: open root %s: %w", dir, err)
	}
	return &Store{root: root, noSync: o.NoSync, dirs: map[string]*dirHandle{}}, nil
}

// Close releases the root directory and the cached directory handles.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.dirs {
		h.root.Close()
	}
	s.dirs = map[string]*dirHandle{}
	return s.root.Close()
}

// sub returns a handle on directory dir ("." is the root), creating it
// first when create is set, and the function that releases it.
func (s *Store) sub(dir string, create bool) (*os.Root, func(), error) {
	if dir == "." {
		return s.root, func() {}, nil
	}
	s.mu.Lock()
	h := s.dirs[dir]
	if h != nil {
		h.refs++
	}
	s.mu.Unlock()
	if h == nil {
		if create {
			if err := s.root.MkdirAll(dir, dirPerm); err != nil {
				return nil, nil, fmt.Errorf("create directory %s: %w", dir, err)
			}
		}
		r, err := s.root.OpenRoot(dir)
		if err != nil {
			// os.Root reports a file in the way with a plain error; make
			// it ENOTDIR so it reads as "not found" like everywhere else.
			if fi, serr := s.root.Lstat(dir); serr == nil && !fi.IsDir() {
				return nil, nil, &iofs.PathError{Op: "open", Path: dir, Err: syscall.ENOTDIR}
			}
			return nil, nil, err
		}
		h = s.cache(dir, r)
	}
	return h.root, func() { s.release(h) }, nil
}

// cache adds a new handle on dir (or takes the one a concurrent caller
// added first), with one user.
func (s *Store) cache(dir string, r *os.Root) *dirHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.dirs[dir]; old != nil {
		r.Close()
		old.refs++
		return old
	}
	if len(s.dirs) >= maxCachedDirs {
		for k := range s.dirs {
			s.evictLocked(k)
		}
	}
	h := &dirHandle{root: r, refs: 1}
	s.dirs[dir] = h
	return h
}

func (s *Store) release(h *dirHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.refs--; h.refs == 0 && h.evicted {
		h.root.Close()
	}
}

// evictLocked forgets the handle of dir; it is closed now or by its last
// user.
func (s *Store) evictLocked(dir string) {
	h := s.dirs[dir]
	delete(s.dirs, dir)
	if h.evicted = true; h.refs == 0 {
		h.root.Close()
	}
}

// drop forgets the handles of dir and everything below it.
func (s *Store) drop(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.dirs {
		if k == dir || strings.HasPrefix(k, dir+"/") {
			s.evictLocked(k)
		}
	}
}

// inDir runs op on the handle of key's directory and key's base name,
// walking afresh once if a cached handle turned out stale.
func (s *Store) inDir(key string, op func(r *os.Root, base string) error) error {
	dir, base := path.Dir(key), path.Base(key)
	for attempt := 0; ; attempt++ {
		r, release, err := s.sub(dir, false)
		if err == nil {
			err = op(r, base)
			release()
		}
		if attempt == 0 && dir != "." && (errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
			s.drop(dir)
			continue
		}
		return err
	}
}

func checkKey(key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	for _, seg := range strings.Split(key, "/") {
		if strings.HasPrefix(seg, TempPrefix) {
			return fmt.Errorf("fs: key %q: segments starting with %q are reserved", key, TempPrefix)
		}
	}
	return nil
}

// Put implements pipeline.BlobStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.write(ctx, "put", key, r, false)
}

// Create implements pipeline.BlobStore. The blob is hard-linked into place,
// which fails atomically when the name exists, so of concurrent Creates
// exactly one wins.
func (s *Store) Create(ctx context.Context, key string, r io.Reader) error {
	return s.write(ctx, "create", key, r, true)
}

func (s *Store) write(ctx context.Context, op, key string, r io.Reader, exclusive bool) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("fs: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	if exclusive {
		// Fail before consuming r; the link below still decides races.
		if s.inDir(key, func(r *os.Root, base string) error { _, err := r.Lstat(base); return err }) == nil {
			return fmt.Errorf("fs: %s %s: %w", op, key, blob.ErrExist)
		}
	}
	tmp, err := s.newTemp(path.Dir(key))
	if err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	defer tmp.discard()
	if _, err := io.Copy(tmp.f, iox.ContextReader(ctx, r)); err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	if err := s.commit(tmp, key, exclusive); err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	return nil
}

// Replace implements pipeline.BlobStore. The new content is written to a
// temporary file first; then, holding the store's replace lock and an
// exclusive flock on the key's directory (so other processes over the same
// directory are fenced too), the current file's identity is compared with
// v and the temporary file renamed over it.
func (s *Store) Replace(ctx context.Context, key string, r io.Reader, v blob.Version) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("fs: replace: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fs: replace %s: %w", key, err)
	}
	tmp, err := s.newTemp(path.Dir(key))
	if err != nil {
		return fmt.Errorf("fs: replace %s: %w", key, err)
	}
	defer tmp.discard()
	if _, err := io.Copy(tmp.f, iox.ContextReader(ctx, r)); err != nil {
		return fmt.Errorf("fs: replace %s: %w", key, err)
	}
	s.replaceMu.Lock()
	defer s.replaceMu.Unlock()
	unlock, err := flockDir(tmp.d)
	if err != nil {
		return fmt.Errorf("fs: replace %s: %w", key, err)
	}
	defer unlock()
	var fi iofs.FileInfo
	err = s.inDir(key, func(r *os.Root, base string) (err error) { fi, err = r.Lstat(base); return err })
	if err != nil && !errors.Is(mapNotExist(err), blob.ErrNotExist) {
		return fmt.Errorf("fs: replace %s: %w", key, err)
	}
	if err != nil || !fi.Mode().IsRegular() || versionOf(fi) != v {
		return fmt.Errorf("fs: replace %s: %w", key, blob.ErrConflict)
	}
	if err := s.commit(tmp, key, false); err != nil {
		return fmt.Errorf("fs: replace %s: %w", key, err)
	}
	return nil
}

// ReadVersion implements pipeline.BlobStore. The version is the identity
// of the open file (inode, modification time, size): every write replaces
// the file with a new one, so a replaced blob never shows the old version.
func (s *Store) ReadVersion(ctx context.Context, key string) (io.ReadCloser, blob.Version, error) {
	if err := checkKey(key); err != nil {
		return nil, "", fmt.Errorf("fs: read version: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("fs: read version %s: %w", key, err)
	}
	f, _, err := s.openRegular(key)
	if err != nil {
		return nil, "", fmt.Errorf("fs: read version: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("fs: read version %s: %w", key, err)
	}
	return iox.ReadCloser{Reader: iox.ContextReader(ctx, f), Closer: f}, versionOf(fi), nil
}

// versionOf is a file's identity as a blob.Version.
func versionOf(fi iofs.FileInfo) blob.Version {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return blob.Version(fmt.Sprintf("%d-%d-%d-%d", st.Dev, st.Ino, fi.ModTime().UnixNano(), fi.Size()))
	}
	return blob.Version(fmt.Sprintf("%d-%d", fi.ModTime().UnixNano(), fi.Size()))
}

// flockDir takes an exclusive advisory lock on directory d.
func flockDir(d *os.Root) (unlock func(), err error) {
	f, err := d.Open(".")
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Compose implements pipeline.Composer by copying the sources into one
// temporary file (copy_file_range where the kernel supports it) that then
// replaces dst. A missing source leaves dst untouched.
func (s *Store) Compose(ctx context.Context, dst string, srcs []string) error {
	if err := checkKey(dst); err != nil {
		return fmt.Errorf("fs: compose: %w", err)
	}
	for _, src := range srcs {
		if err := checkKey(src); err != nil {
			return fmt.Errorf("fs: compose %s: %w", dst, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fs: compose %s: %w", dst, err)
	}
	tmp, err := s.newTemp(path.Dir(dst))
	if err != nil {
		return fmt.Errorf("fs: compose %s: %w", dst, err)
	}
	defer tmp.discard()
	for _, src := range srcs {
		if err := s.appendFile(ctx, tmp.f, src); err != nil {
			return fmt.Errorf("fs: compose %s: %w", dst, err)
		}
	}
	if err := s.commit(tmp, dst, false); err != nil {
		return fmt.Errorf("fs: compose %s: %w", dst, err)
	}
	return nil
}

func (s *Store) appendFile(ctx context.Context, dst *os.File, src string) error {
	f, _, err := s.openRegular(src)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// *os.File to *os.File through a LimitedReader keeps the
		// copy_file_range fast path.
		n, err := io.CopyN(dst, f, copyChunk)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if n < copyChunk {
			return nil
		}
	}
}

// Get implements pipeline.BlobStore.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("fs: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fs: get %s: %w", key, err)
	}
	f, _, err := s.openRegular(key)
	if err != nil {
		return nil, fmt.Errorf("fs: get: %w", err)
	}
	return iox.ReadCloser{Reader: iox.ContextReader(ctx, f), Closer: f}, nil
}

// GetRange implements pipeline.BlobStore. A range past the end is cut at
// the end, as with io.SectionReader.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("fs: get range: %w", err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("fs: get range %s: negative offset %d", key, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fs: get range %s: %w", key, err)
	}
	f, size, err := s.openRegular(key)
	if err != nil {
		return nil, fmt.Errorf("fs: get range: %w", err)
	}
	n := max(size-offset, 0)
	if length >= 0 {
		n = min(n, length)
	}
	return iox.ReadCloser{Reader: iox.ContextReader(ctx, io.NewSectionReader(f, offset, n)), Closer: f}, nil
}

// Stat implements pipeline.BlobStore.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := checkKey(key); err != nil {
		return blob.Info{}, fmt.Errorf("fs: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("fs: stat %s: %w", key, err)
	}
	var fi iofs.FileInfo
	err := s.inDir(key, func(r *os.Root, base string) (err error) { fi, err = r.Stat(base); return err })
	if err != nil {
		return blob.Info{}, fmt.Errorf("fs: stat %s: %w", key, mapNotExist(err))
	}
	if !fi.Mode().IsRegular() {
		return blob.Info{}, fmt.Errorf("fs: stat %s: %w", key, blob.ErrNotExist)
	}
	return blob.Info{Key: key, Size: fi.Size()}, nil
}

// List implements pipeline.BlobStore. It walks only the directories that can
// hold matching keys, one directory listing in memory at a time; sorting
// each directory with a '/' after subdirectory names yields byte-wise key
// order overall.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("fs: list: %w", err)
	}
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	if err := s.walk(ctx, start, prefix, fn); err != nil {
		return fmt.Errorf("fs: list %q: %w", prefix, err)
	}
	return nil
}

type entry struct {
	name  string
	sort  string
	isDir bool
	size  int64
}

func (s *Store) walk(ctx context.Context, dir, prefix string, fn func(blob.Info) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := s.readDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := e.name
		if dir != "." {
			key = dir + "/" + e.name
		}
		if e.isDir {
			if sub := key + "/"; strings.HasPrefix(sub, prefix) || strings.HasPrefix(prefix, sub) {
				if err := s.walk(ctx, key, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		if err := fn(blob.Info{Key: key, Size: e.size}); err != nil {
			return err
		}
	}
	return nil
}

// readDir returns the blobs and subdirectories of dir in key order; a
// missing dir is empty.
func (s *Store) readDir(dir string) ([]entry, error) {
	f, err := s.root.Open(dir)
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil // removed while listed (a Delete pruning it)
	}
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, TempPrefix) {
			continue
		}
		switch t := de.Type(); {
		case t.IsDir():
			out = append(out, entry{name: name, sort: name + "/", isDir: true})
		case t.IsRegular():
			fi, err := de.Info() // relative to the open directory: one syscall
			if errors.Is(err, iofs.ErrNotExist) {
				continue // deleted while listing
			}
			if err != nil {
				return nil, err
			}
			out = append(out, entry{name: name, sort: name, size: fi.Size()})
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.sort, b.sort) })
	return out, nil
}

// Rename moves the blob at from to the key to, replacing what to held.
// A missing from wraps blob.ErrNotExist.
func (s *Store) Rename(ctx context.Context, from, to string) error {
	for _, k := range []string{from, to} {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("fs: rename: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fs: rename %s: %w", from, err)
	}
	d, release, err := s.sub(path.Dir(to), true)
	if err != nil {
		return fmt.Errorf("fs: rename %s: %w", from, err)
	}
	defer release()
	if err := s.root.Rename(from, to); err != nil {
		return fmt.Errorf("fs: rename %s to %s: %w", from, to, mapNotExist(err))
	}
	if s.noSync != nil && s.noSync(to) {
		return nil
	}
	f, err := d.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Delete implements pipeline.BlobStore. Directories left empty are removed
// up to the root so deleted jobs leave nothing behind.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("fs: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fs: delete %s: %w", key, err)
	}
	var isDir bool
	err := s.inDir(key, func(r *os.Root, base string) error {
		fi, err := r.Lstat(base)
		if err != nil {
			return err
		}
		if isDir = fi.IsDir(); isDir {
			return nil // a prefix of other keys, not a blob
		}
		return r.Remove(base)
	})
	if err != nil {
		if errors.Is(mapNotExist(err), blob.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("fs: delete %s: %w", key, err)
	}
	if isDir {
		return nil
	}
	for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
		// Fails on the first non-empty directory; a concurrent writer that
		// loses its directory recreates it (see newTemp).
		if s.root.Remove(dir) != nil {
			break
		}
		s.drop(dir)
	}
	return nil
}

// openRegular opens key for reading and returns its size; directories and
// anything that is not a regular file count as missing.
func (s *Store) openRegular(key string) (*os.File, int64, error) {
	var f *os.File
	err := s.inDir(key, func(r *os.Root, base string) (err error) { f, err = r.Open(base); return err })
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", key, mapNotExist(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w", key, blob.ErrNotExist)
	}
	return f, fi.Size(), nil
}

// mapNotExist turns "no such file" and "a parent is a file" into
// blob.ErrNotExist.
func mapNotExist(err error) error {
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return blob.ErrNotExist
	}
	return err
}

// tempFile is a file being written in directory dir (handle d), to be
// renamed or linked to its key's base name there.
type tempFile struct {
	d       *os.Root
	release func() // of d
	f       *os.File
	name    string
	dir     string
	done    bool
}

// newTemp creates a temporary file in dir, creating dir as needed. It
// retries when a concurrent Delete prunes the directory in between.
func (s *Store) newTemp(dir string) (*tempFile, error) {
	var err error
	for range 5 {
		var d *os.Root
		var release func()
		// The directory may be pruned between its creation and its
		// opening, or between its opening and the file's creation.
		if d, release, err = s.sub(dir, true); err == nil {
			var rnd [8]byte
			if _, err := rand.Read(rnd[:]); err != nil {
				release()
				return nil, err
			}
			name := TempPrefix + hex.EncodeToString(rnd[:])
			var f *os.File
			if f, err = d.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm); err == nil {
				return &tempFile{d: d, release: release, f: f, name: name, dir: dir}, nil
			}
			release()
		}
		if !errors.Is(err, iofs.ErrNotExist) {
			break
		}
		s.drop(dir) // pruned (or a stale handle): walk again
	}
	return nil, fmt.Errorf("create temporary file in %s: %w", dir, err)
}

// commit makes the temporary file durable (unless NoSync says otherwise)
// and moves it to key.
func (s *Store) commit(t *tempFile, key string, exclusive bool) error {
	durable := s.noSync == nil || !s.noSync(key)
	if durable {
		if err := t.f.Sync(); err != nil {
			return err
		}
	}
	if err := t.f.Close(); err != nil {
		return err
	}
	t.f = nil
	base := path.Base(key)
	if exclusive {
		if err := t.d.Link(t.name, base); err != nil {
			if errors.Is(err, iofs.ErrExist) {
				return blob.ErrExist
			}
			return err
		}
	} else if err := t.d.Rename(t.name, base); err != nil {
		return err
	} else {
		t.done = true
	}
	if !durable {
		return nil
	}
	d, err := t.d.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// discard removes the temporary file unless it was renamed into place.
func (t *tempFile) discard() {
	if t.f != nil {
		t.f.Close()
	}
	if !t.done {
		_ = t.d.Remove(t.name)
	}
	t.release()
}
