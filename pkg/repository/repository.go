package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// FormatVersion is the only repository format version read and written.
const FormatVersion = 1

// Sentinels callers branch on.
var (
	// ErrWrongPassphrase: no key file opens with the passphrase given.
	ErrWrongPassphrase = errors.New("repository: wrong passphrase (no key file opens with it)")
	// ErrWrongKey: no key file opens with the key wrapper given (another
	// KMS key, access denied, a changed wrapped key), or the wrapper
	// refused to wrap a new key.
	ErrWrongKey = errors.New("repository: wrong key")
	// ErrNotRepository: there is no config at the location.
	ErrNotRepository = errors.New("repository: no repository here (config not found)")
	// ErrExists: Init found a repository already.
	ErrExists = errors.New("repository: a repository already exists here")
	// ErrVersion: the config names a format version this code does not read.
	ErrVersion = errors.New("repository: unsupported format version")
	// ErrCorrupt: stored content fails its check (authentication, hash,
	// structure).
	ErrCorrupt = errors.New("repository: corrupt data")
	// ErrMissing: something referenced is not stored (a chunk not in the
	// index, a pack not in the store).
	ErrMissing = errors.New("repository: missing data")
)

const (
	keyConfig    = "config"
	prefixKeys   = "keys/"
	prefixData   = "data/"
	prefixIndex  = "index/"
	prefixSnaps  = "snapshots/"
	maxMetaBytes = 64 << 20 // bound on a config, key, index or snapshot file
)

// Options are the parameters of a new repository. Zero values take the
// defaults.
type Options struct {
	// MinChunk and MaxChunk bound chunk sizes (restic's 512 KiB and 8 MiB).
	MinChunk, MaxChunk uint
	// PackSize is the size at which a pack is closed (4 MiB).
	PackSize int
	// Polynomial is the chunker's; zero picks a random one (the default:
	// a secret polynomial keeps chunk boundaries from revealing content).
	// A fixed one makes chunking reproducible in tests.
	Polynomial chunker.Pol
	// ScryptN, ScryptR, ScryptP are the passphrase KDF's cost (32768, 8, 1).
	ScryptN, ScryptR, ScryptP int
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.MinChunk == 0 {
		o.MinChunk = chunker.MinSize
	}
	if o.MaxChunk == 0 {
		o.MaxChunk = chunker.MaxSize
	}
	if o.PackSize == 0 {
		o.PackSize = 4 << 20
	}
	if o.ScryptN == 0 {
		o.ScryptN, o.ScryptR, o.ScryptP = 32768, 8, 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// configFile is the plain JSON of config.
type configFile struct {
	Version int       `json:"version"`
	ID      ID        `json:"id"`
	Created time.Time `json:"created"`
	Data    []byte    `json:"data"`
}

// configData is config's sealed part.
type configData struct {
	ChunkerPolynomial chunker.Pol `json:"chunkerPolynomial"`
	MinChunk          uint        `json:"minChunk"`
	MaxChunk          uint        `json:"maxChunk"`
	PackSize          int         `json:"packSize"`
}

// Repository is an open repository. Its methods are safe for concurrent
// use; saving is serialised on the one open pack.
type Repository struct {
	store pipeline.BlobStore
	id    ID
	cfg   configData
	seal  sealer
	macK  []byte
	mk    masterKey // for AddKey
	kdf   Options   // the scrypt cost of passphrase key files AddKey writes
	enc   *zstd.Encoder
	dec   *zstd.Decoder
	now   func() time.Time

	chunkers sync.Pool // of *chunkState
	packers  sync.Pool // of emptied *packer, shared by writers

	// w is the repository's own writer (SaveStream, Flush): its packs
	// join the index as they are uploaded and reach an index file at
	// Flush.
	w *Writer

	mu     sync.Mutex // guards everything below
	index  map[ID]location
	packs  map[ID]int64     // indexed packs and their sizes
	marked map[ID]time.Time // packs a prune marked: never reused
	// unflushed are packs of w in the index above that no index file
	// names yet.
	unflushed map[ID]bool
	stats     Stats
}

// Stats counts what this Repository value wrote, through its own saves and
// every Writer made from it.
type Stats struct {
	// ChunksNew/BytesNew are chunks stored (raw bytes); ChunksDup/BytesDup
	// those found already stored.
	ChunksNew, ChunksDup int64
	BytesNew, BytesDup   int64
	// Written is the bytes of packs, index and snapshot files written.
	Written int64
	Packs   int64
}

// Init creates a repository in an empty store location, with one
// passphrase key file, and opens it.
func Init(ctx context.Context, store pipeline.BlobStore, passphrase string, o Options) (*Repository, error) {
	return InitWith(ctx, store, Credentials{Passphrase: sensitive.String(passphrase)}, o)
}

// InitWith creates a repository in an empty store location and opens it.
// It writes one key file per credential given (a passphrase, a key
// wrapper, or both). A wrapper that cannot wrap, or cannot unwrap what it
// wrapped, fails here before anything is written.
func InitWith(ctx context.Context, store pipeline.BlobStore, c Credentials, o Options) (*Repository, error) {
	o.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if _, err := store.Stat(ctx, keyConfig); err == nil {
		return nil, ErrExists
	} else if !errors.Is(err, blob.ErrNotExist) {
		return nil, fmt.Errorf("repository: init: %w", err)
	}
	pol := o.Polynomial
	if pol == 0 {
		var err error
		if pol, err = chunker.RandomPolynomial(); err != nil {
			return nil, err
		}
	} else if !pol.Irreducible() {
		return nil, fmt.Errorf("repository: chunker polynomial %v is not irreducible", pol)
	}
	mk, err := newMasterKey()
	if err != nil {
		return nil, err
	}
	r, err := newRepository(store, mk, o.Now)
	if err != nil {
		return nil, err
	}
	r.kdf = o
	cf := configFile{Version: FormatVersion, Created: o.Now().UTC()}
	if _, err := rand.Read(cf.ID[:]); err != nil {
		return nil, err
	}
	r.id = cf.ID // a wrapped key is bound to it
	kfs, err := r.keyFiles(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, kf := range kfs {
		if err := putJSON(ctx, store, prefixKeys, kf); err != nil {
			return nil, err
		}
	}
	r.cfg = configData{ChunkerPolynomial: pol, MinChunk: o.MinChunk, MaxChunk: o.MaxChunk, PackSize: o.PackSize}
	plain, err := json.Marshal(r.cfg)
	if err != nil {
		return nil, err
	}
	if cf.Data, err = r.seal.seal(nil, plain, aadConfig); err != nil {
		return nil, err
	}
	b, err := json.Marshal(cf)
	if err != nil {
		return nil, err
	}
	// Create fences two concurrent inits: one config wins.
	if err := store.Create(ctx, keyConfig, bytes.NewReader(b)); err != nil {
		if errors.Is(err, blob.ErrExist) {
			return nil, ErrExists
		}
		return nil, fmt.Errorf("repository: init: write config: %w", err)
	}
	r.chunkers.New = r.newChunkState
	return r, nil
}

func newRepository(store pipeline.BlobStore, mk masterKey, now func() time.Time) (*Repository, error) {
	s, err := newSealer(mk.Encrypt)
	if err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return nil, err
	}
	var kdf Options
	kdf.defaults()
	r := &Repository{store: store, seal: s, macK: mk.MAC, mk: mk, kdf: kdf, enc: enc, dec: dec, now: now, index: map[ID]location{}, packs: map[ID]int64{}, unflushed: map[ID]bool{}}
	r.w = r.newWriter(true)
	return r, nil
}

// Open opens the repository in store with passphrase. A wrong passphrase,
// a missing config or an unknown version fails here, before anything is
// written.
func Open(ctx context.Context, store pipeline.BlobStore, passphrase string) (*Repository, error) {
	return OpenWith(ctx, store, Credentials{Passphrase: sensitive.String(passphrase)})
}

// OpenOrInit opens the repository in store with c, or creates one there
// (with o) when the store holds none; created says which. A repository
// another process created meanwhile is opened.
func OpenOrInit(ctx context.Context, store pipeline.BlobStore, c Credentials, o Options) (r *Repository, created bool, err error) {
	r, err = OpenWith(ctx, store, c)
	if !errors.Is(err, ErrNotRepository) {
		return r, false, err
	}
	r, err = InitWith(ctx, store, c, o)
	if errors.Is(err, ErrExists) {
		r, err = OpenWith(ctx, store, c)
		return r, false, err
	}
	return r, err == nil, err
}

// OpenWith opens the repository in store: the key wrapper tries the
// wrapped key files, the passphrase the passphrase key files; either
// opening is enough. Wrong credentials (ErrWrongPassphrase, ErrWrongKey),
// a missing config or an unknown version fail here, before anything is
// written.
func OpenWith(ctx context.Context, store pipeline.BlobStore, c Credentials) (*Repository, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	var cf configFile
	if err := getJSON(ctx, store, keyConfig, &cf); err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			return nil, ErrNotRepository
		}
		return nil, err
	}
	if cf.Version != FormatVersion {
		return nil, fmt.Errorf("%w: config says %d, this edgevault reads %d", ErrVersion, cf.Version, FormatVersion)
	}
	mk, err := unlock(ctx, store, cf.ID, c)
	if err != nil {
		return nil, err
	}
	r, err := newRepository(store, mk, time.Now)
	if err != nil {
		return nil, err
	}
	plain, err := r.seal.open(nil, cf.Data, aadConfig)
	if err != nil {
		return nil, fmt.Errorf("%w: config does not open with the repository key", ErrCorrupt)
	}
	if err := json.Unmarshal(plain, &r.cfg); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	if r.cfg.MinChunk == 0 || r.cfg.MaxChunk < r.cfg.MinChunk || r.cfg.PackSize <= 0 {
		return nil, fmt.Errorf("%w: config: bad chunker or pack parameters", ErrCorrupt)
	}
	r.id = cf.ID
	r.chunkers.New = r.newChunkState
	if err := r.loadIndex(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

var errStop = errors.New("stop")

// ID is the repository's random id.
func (r *Repository) ID() ID { return r.id }

// Stats reports what this Repository value wrote so far.
func (r *Repository) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// putJSON writes v as JSON under prefix + SHA-256 of the bytes.
func putJSON(ctx context.Context, store pipeline.BlobStore, prefix string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	key := prefix + hashID(b).String()
	if err := store.Put(ctx, key, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("repository: write %s: %w", key, err)
	}
	return nil
}

func getJSON(ctx context.Context, store pipeline.BlobStore, key string, v any) error {
	b, err := getAll(ctx, store, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
	}
	return nil
}

func getAll(ctx context.Context, store pipeline.BlobStore, key string) ([]byte, error) {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("repository: read %s: %w", key, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, maxMetaBytes+1))
	if err != nil {
		return nil, fmt.Errorf("repository: read %s: %w", key, err)
	}
	if len(b) > maxMetaBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, key, maxMetaBytes)
	}
	return b, nil
}
