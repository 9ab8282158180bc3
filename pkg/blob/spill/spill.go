// Package spill is the BlobStore of a run's scratch staging: blobs up to
// Options.Small bytes are kept in memory while they fit Options.Budget,
// every other blob goes to a directory store underneath. A local run
// writes thousands of small records (task outcomes, done markers, DO
// dumps of a few KiB): as files, creating them costs more than the run's
// own work on some file systems; in memory it costs nothing, and the
// budget bounds what it holds. Nothing of a spill store outlives its
// process, so it is only for staging that is recreated after a crash
// anyway.
//
// Every change of a key happens under that key's lock, after its body
// has been read (into memory, or into a temporary blob on disk that is
// renamed into place), so a key is in one tier at a time and readers see
// the old blob or the new one, never neither.
package spill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Disk is the store under a spill store: a BlobStore that can also move
// a blob to another key (fs.Store).
type Disk interface {
	pipeline.BlobStore
	Rename(ctx context.Context, from, to string) error
}

// Options size the memory tier.
type Options struct {
	// Small is the largest blob kept in memory (default 32 KiB).
	Small int64
	// Budget bounds the bytes the memory tier holds, keys included
	// (default 4 MiB).
	Budget int64
}

// tmpPrefix holds bodies on their way to the disk tier; keys under it are
// reserved.
const tmpPrefix = ".spill/"

// overhead is what one memory entry costs besides its key and bytes.
const overhead = 64

// Store is a spill store. Its owner closes the disk tier.
type Store struct {
	disk   Disk
	small  int64
	budget int64

	locks [64]sync.Mutex // by key hash: every change of a key, and reads

	mu      sync.Mutex // mem, used, seq, written
	mem     map[string]entry
	used    int64
	seq     uint64
	written bool // something went to disk: List reads it too
	onDisk  bloom
}

// entry is one blob in memory; data is never modified once stored.
type entry struct {
	data []byte
	seq  uint64 // its write: the version
}

// New returns a spill store over disk, which must hold nothing but what
// this store writes (a fresh scratch directory); it is checked: a disk
// that already holds blobs is consulted for every key.
func New(ctx context.Context, disk Disk, o Options) (*Store, error) {
	if o.Small <= 0 {
		o.Small = 32 << 10
	}
	if o.Budget <= 0 {
		o.Budget = 4 << 20
	}
	s := &Store{disk: disk, small: o.Small, budget: o.Budget, mem: map[string]entry{}}
	errFound := errors.New("found")
	err := disk.List(ctx, "", func(blob.Info) error { return errFound })
	switch {
	case errors.Is(err, errFound):
		s.written = true
		s.onDisk.saturate()
	case err != nil:
		return nil, fmt.Errorf("spill: %w", err)
	}
	return s, nil
}

func (s *Store) lock(key string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m
}

func check(op, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("spill: %s: %w", op, err)
	}
	if strings.HasPrefix(key, tmpPrefix) {
		return fmt.Errorf("spill: %s: key %q: the prefix %q is reserved", op, key, tmpPrefix)
	}
	return nil
}

func start(ctx context.Context, op, key string) error {
	if err := check(op, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spill: %s %s: %w", op, key, err)
	}
	return nil
}

// body is a write's content, read before the key is locked: in memory
// when small, else in a temporary blob on disk.
type body struct {
	data []byte
	tmp  string
}

// read takes r to EOF.
func (s *Store) read(ctx context.Context, r io.Reader) (body, error) {
	r = iox.ContextReader(ctx, r)
	buf, err := io.ReadAll(io.LimitReader(r, s.small+1))
	if err != nil {
		return body{}, err
	}
	if int64(len(buf)) <= s.small {
		return body{data: bytes.Clone(buf)}, nil // no spare capacity held
	}
	s.mu.Lock()
	s.seq++
	tmp := tmpPrefix + strconv.FormatUint(s.seq, 10)
	s.mu.Unlock()
	if err := s.disk.Put(ctx, tmp, io.MultiReader(bytes.NewReader(buf), r)); err != nil {
		return body{}, err
	}
	return body{tmp: tmp}, nil
}

// drop discards a body that was not stored.
func (s *Store) drop(b body) {
	if b.tmp != "" {
		_ = s.disk.Delete(context.Background(), b.tmp)
	}
}

// commit stores b under key; the caller holds key's lock. A failed
// commit leaves key as it was.
func (s *Store) commit(ctx context.Context, key string, b body) error {
	if b.tmp == "" {
		cost := int64(len(b.data) + len(key) + overhead)
		s.mu.Lock()
		fits := s.used+cost <= s.budget
		if fits {
			s.used += cost // reserved
		}
		maybe := s.onDisk.has(key)
		s.mu.Unlock()
		if fits {
			if maybe {
				if err := s.disk.Delete(ctx, key); err != nil {
					s.mu.Lock()
					s.used -= cost
					s.mu.Unlock()
					return err
				}
			}
			s.mu.Lock()
			if old, ok := s.mem[key]; ok {
				s.used -= int64(len(old.data) + len(key) + overhead)
			}
			s.seq++
			s.mem[key] = entry{data: b.data, seq: s.seq}
			s.mu.Unlock()
			return nil
		}
		// Over budget: to disk, straight from memory.
		s.markDisk(key)
		if err := s.disk.Put(ctx, key, bytes.NewReader(b.data)); err != nil {
			return err
		}
	} else {
		s.markDisk(key)
		if err := s.disk.Rename(ctx, b.tmp, key); err != nil {
			return err
		}
	}
	s.forget(key)
	return nil
}

// markDisk notes that key may be on disk, before it is.
func (s *Store) markDisk(key string) {
	s.mu.Lock()
	s.written = true
	s.onDisk.add(key)
	s.mu.Unlock()
}

// forget removes key's memory entry.
func (s *Store) forget(key string) {
	s.mu.Lock()
	if old, ok := s.mem[key]; ok {
		delete(s.mem, key)
		s.used -= int64(len(old.data) + len(key) + overhead)
	}
	s.mu.Unlock()
}

// find returns key's memory entry, and whether the disk may hold it.
func (s *Store) find(key string) (e entry, inMem, maybeDisk bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, inMem = s.mem[key]
	return e, inMem, !inMem && s.onDisk.has(key)
}

func notExist(op, key string) error {
	return fmt.Errorf("spill: %s %s: %w", op, key, blob.ErrNotExist)
}

// Put implements pipeline.BlobStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.write(ctx, "put", key, r, nil)
}

// Create implements pipeline.BlobStore.
func (s *Store) Create(ctx context.Context, key string, r io.Reader) error {
	if err := check("create", key); err != nil {
		return err
	}
	absent := func() error {
		switch ok, err := s.exists(ctx, key); {
		case err != nil:
			return err
		case ok:
			return blob.ErrExist
		}
		return nil
	}
	// Fail before consuming r; the check under the key's lock decides.
	if err := absent(); err != nil {
		return fmt.Errorf("spill: create %s: %w", key, err)
	}
	return s.write(ctx, "create", key, r, absent)
}

// Replace implements pipeline.BlobStore.
func (s *Store) Replace(ctx context.Context, key string, r io.Reader, v blob.Version) error {
	return s.write(ctx, "replace", key, r, func() error {
		cur, err := s.version(ctx, key)
		if errors.Is(err, blob.ErrNotExist) || err == nil && cur != v {
			return blob.ErrConflict
		}
		return err
	})
}

// write reads r, then, holding key's lock, stores it unless cond (when
// given) says otherwise.
func (s *Store) write(ctx context.Context, op, key string, r io.Reader, cond func() error) error {
	if err := start(ctx, op, key); err != nil {
		return err
	}
	b, err := s.read(ctx, r)
	if err != nil {
		return fmt.Errorf("spill: %s %s: %w", op, key, err)
	}
	m := s.lock(key)
	defer m.Unlock()
	if cond != nil {
		err = cond()
	}
	if err == nil {
		err = s.commit(ctx, key, b)
	}
	if err != nil {
		s.drop(b)
		return fmt.Errorf("spill: %s %s: %w", op, key, err)
	}
	return nil
}

// exists says whether key is stored; the disk is asked only when it may
// hold key.
func (s *Store) exists(ctx context.Context, key string) (bool, error) {
	_, inMem, maybeDisk := s.find(key)
	if inMem || !maybeDisk {
		return inMem, nil
	}
	_, err := s.disk.Stat(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// version is key's current version; the caller holds key's lock.
func (s *Store) version(ctx context.Context, key string) (blob.Version, error) {
	e, inMem, maybeDisk := s.find(key)
	if inMem {
		return memVersion(e), nil
	}
	if !maybeDisk {
		return "", blob.ErrNotExist
	}
	rc, v, err := s.disk.ReadVersion(ctx, key)
	if err != nil {
		return "", err
	}
	rc.Close()
	return v, nil
}

// memVersion names a memory entry's write; a disk version never starts
// with "mem:".
func memVersion(e entry) blob.Version { return blob.Version("mem:" + strconv.FormatUint(e.seq, 10)) }

// open finds key in memory (the entry) or opens it on disk (the reader),
// under key's lock.
func (s *Store) open(ctx context.Context, op, key string, fromDisk func() (io.ReadCloser, error)) (entry, io.ReadCloser, error) {
	if err := start(ctx, op, key); err != nil {
		return entry{}, nil, err
	}
	m := s.lock(key)
	defer m.Unlock()
	e, inMem, maybeDisk := s.find(key)
	switch {
	case inMem:
		return e, nil, nil
	case !maybeDisk:
		return entry{}, nil, notExist(op, key)
	}
	rc, err := fromDisk()
	return entry{}, rc, err
}

func memReader(ctx context.Context, data []byte) io.ReadCloser {
	return io.NopCloser(iox.ContextReader(ctx, bytes.NewReader(data)))
}

// ReadVersion implements pipeline.BlobStore.
func (s *Store) ReadVersion(ctx context.Context, key string) (io.ReadCloser, blob.Version, error) {
	var v blob.Version
	e, rc, err := s.open(ctx, "read version", key, func() (io.ReadCloser, error) {
		rc, dv, err := s.disk.ReadVersion(ctx, key)
		v = dv
		return rc, err
	})
	if err != nil || rc != nil {
		return rc, v, err
	}
	return memReader(ctx, e.data), memVersion(e), nil
}

// Get implements pipeline.BlobStore.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	e, rc, err := s.open(ctx, "get", key, func() (io.ReadCloser, error) { return s.disk.Get(ctx, key) })
	if err != nil || rc != nil {
		return rc, err
	}
	return memReader(ctx, e.data), nil
}

// GetRange implements pipeline.BlobStore.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("spill: get range %s: negative offset %d", key, offset)
	}
	e, rc, err := s.open(ctx, "get range", key, func() (io.ReadCloser, error) { return s.disk.GetRange(ctx, key, offset, length) })
	if err != nil || rc != nil {
		return rc, err
	}
	data := e.data[min(offset, int64(len(e.data))):]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return memReader(ctx, data), nil
}

// Stat implements pipeline.BlobStore.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := start(ctx, "stat", key); err != nil {
		return blob.Info{}, err
	}
	m := s.lock(key)
	defer m.Unlock()
	e, inMem, maybeDisk := s.find(key)
	switch {
	case inMem:
		return blob.Info{Key: key, Size: int64(len(e.data))}, nil
	case !maybeDisk:
		return blob.Info{}, notExist("stat", key)
	}
	return s.disk.Stat(ctx, key)
}

// Delete implements pipeline.BlobStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := start(ctx, "delete", key); err != nil {
		return err
	}
	m := s.lock(key)
	defer m.Unlock()
	s.forget(key)
	s.mu.Lock()
	maybe := s.onDisk.has(key)
	s.mu.Unlock()
	if maybe {
		return s.disk.Delete(ctx, key)
	}
	return nil
}

// List implements pipeline.BlobStore: the memory tier's keys under prefix
// (at most a budget's worth), taken when it starts, merged with the disk's
// listing. A key that moves from disk to memory while it runs (rewritten
// smaller) may be left out; no staging key is rewritten so.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("spill: list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spill: list %s: %w", prefix, err)
	}
	s.mu.Lock()
	var mem []blob.Info
	for k, e := range s.mem {
		if strings.HasPrefix(k, prefix) {
			mem = append(mem, blob.Info{Key: k, Size: int64(len(e.data))})
		}
	}
	written := s.written
	s.mu.Unlock()
	slices.SortFunc(mem, func(a, b blob.Info) int { return strings.Compare(a.Key, b.Key) })
	emit := func(in blob.Info) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(in)
	}
	i := 0
	if written {
		err := s.disk.List(ctx, prefix, func(in blob.Info) error {
			if strings.HasPrefix(in.Key, tmpPrefix) {
				return nil
			}
			for ; i < len(mem) && mem[i].Key < in.Key; i++ {
				if err := emit(mem[i]); err != nil {
					return err
				}
			}
			if i < len(mem) && mem[i].Key == in.Key {
				i++ // moved while listed: one entry
				return emit(mem[i-1])
			}
			return emit(in)
		})
		if err != nil {
			return fmt.Errorf("spill: list %s: %w", prefix, err)
		}
	}
	for ; i < len(mem); i++ {
		if err := emit(mem[i]); err != nil {
			return fmt.Errorf("spill: list %s: %w", prefix, err)
		}
	}
	return nil
}

// bloom says which keys may be on disk (never "no" for one that is).
type bloom struct{ bits [1 << 13]uint64 } // 64 KiB

func (b *bloom) positions(key string) [4]uint32 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	x := h.Sum64()
	h1, h2 := uint32(x), uint32(x>>32)|1
	var p [4]uint32
	for i := range p {
		p[i] = (h1 + uint32(i)*h2) % (uint32(len(b.bits)) * 64)
	}
	return p
}

func (b *bloom) add(key string) {
	for _, p := range b.positions(key) {
		b.bits[p/64] |= 1 << (p % 64)
	}
}

func (b *bloom) has(key string) bool {
	for _, p := range b.positions(key) {
		if b.bits[p/64]&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}

func (b *bloom) saturate() {
	for i := range b.bits {
		b.bits[i] = ^uint64(0)
	}
}
