package edgebasetest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// r2Store is the STORAGE bucket: metadata in a SQLite table shaped like
// Miniflare's _mf_objects, bytes in blob files. Objects seeded by size are
// not written at all: their blob id names a deterministic generator.
type r2Store struct {
	db      *sql.DB
	blobDir string
	mu      sync.Mutex // serializes writers (R2 puts are atomic per key)
	seq     atomic.Uint64
}

// r2Object is one stored object.
type r2Object struct {
	Key         string
	Size        int64
	ETag        string
	ContentType string // "" when the object has no httpMetadata.contentType
	Uploaded    time.Time
	BlobID      string
	Custom      object
}

var r2IDs = newDOIDFactory("miniflare", "R2BucketObject")

func newR2Store(stateDir, worker string) (*r2Store, error) {
	bucket := worker + "-storage"
	db, err := openSQLite(filepath.Join(stateDir, "v3", "r2", "miniflare-R2BucketObject", r2IDs.fromName(bucket)+".sqlite"), "WAL")
	if err != nil {
		return nil, err
	}
	_, err = db.Exec(`CREATE TABLE IF NOT EXISTS _mf_objects (
    key TEXT PRIMARY KEY,
    blob_id TEXT,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,
    checksums TEXT NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL
)`)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("edgebasetest: r2 schema: %w", err)
	}
	s := &r2Store{db: db, blobDir: filepath.Join(stateDir, "v3", "r2", bucket, "blobs")}
	if err := os.MkdirAll(s.blobDir, 0o755); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("edgebasetest: r2 blobs: %w", err)
	}
	return s, nil
}

func (s *r2Store) close() error { return s.db.Close() }

const genPrefix = "gen:"

// genBlobID names generated content: AES-128-CTR keystream whose key and IV
// are SHA-256(seed) (the algorithm of the peer's seed-bench.sh).
func genBlobID(seed string, size int64) string {
	return genPrefix + base64.RawURLEncoding.EncodeToString([]byte(seed)) + ":" + strconv.FormatInt(size, 10)
}

type keystream struct {
	s      cipher.Stream
	remain int64
}

func newKeystream(seed string, size int64) *keystream {
	k := sha256.Sum256([]byte(seed))
	block, _ := aes.NewCipher(k[:16]) // 16-byte key: cannot fail
	return &keystream{s: cipher.NewCTR(block, k[16:32]), remain: size}
}

func (k *keystream) Read(p []byte) (int, error) {
	if k.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > k.remain {
		p = p[:k.remain]
	}
	clear(p)
	k.s.XORKeyStream(p, p)
	k.remain -= int64(len(p))
	return len(p), nil
}

// GeneratedContent returns the bytes an object seeded with (seed, size)
// holds, as a stream.
func GeneratedContent(seed string, size int64) io.Reader { return newKeystream(seed, size) }

func (s *r2Store) open(o *r2Object) (io.ReadCloser, error) {
	if strings.HasPrefix(o.BlobID, genPrefix) {
		rest := strings.TrimPrefix(o.BlobID, genPrefix)
		enc, sz, _ := strings.Cut(rest, ":")
		seed, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("edgebasetest: r2 blob id %q: %w", o.BlobID, err)
		}
		size, _ := strconv.ParseInt(sz, 10, 64)
		return io.NopCloser(newKeystream(string(seed), size)), nil
	}
	f, err := os.Open(filepath.Join(s.blobDir, o.BlobID))
	if err != nil {
		return nil, fmt.Errorf("edgebasetest: r2 open %s: %w", o.Key, err)
	}
	return f, nil
}

// objectResponse streams o's bytes with its content type (R2's default
// when none was stored); callers add the headers of their endpoint.
// Profile05 serves only passive types as such and every other type as an
// octet-stream attachment (Appendix B.2), on the admin and the public
// route alike.
func (e *Emulator) objectResponse(o *r2Object) *response {
	rc, err := e.r2.open(o)
	if err != nil {
		return unexpected()
	}
	h := http.Header{}
	if e.newer() {
		serveType(h, o.Key, o.ContentType)
		return &response{status: 200, header: h, stream: rc, length: o.Size}
	}
	ct := o.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	return &response{status: 200, header: h, stream: rc, length: o.Size}
}

// storedType is the content type a put stores: verbatim (default
// application/octet-stream) on 0.2.8, normalised on 0.4+.
func (e *Emulator) storedType(header string) string {
	if e.newer() {
		return normalizeContentType(header)
	}
	if header == "" {
		return "application/octet-stream"
	}
	return header
}

func httpMetadata(ct string) string {
	if ct == "" {
		return "{}"
	}
	return string(marshalJS(object{{"contentType", ct}}))
}

// put stores r under key; contentType "" stores no httpMetadata.
func (s *r2Store) put(ctx context.Context, key, contentType string, r io.Reader, now time.Time) (*r2Object, error) {
	id := fmt.Sprintf("%016x%016x", now.UnixNano(), s.seq.Add(1))
	path := filepath.Join(s.blobDir, id)
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("edgebasetest: r2 put %s: %w", key, err)
	}
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("edgebasetest: r2 put %s: %w", key, err)
	}
	o := &r2Object{Key: key, Size: n, ETag: hex.EncodeToString(h.Sum(nil)), ContentType: contentType, Uploaded: now, BlobID: id}
	if err := s.insert(ctx, o); err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return o, nil
}

// putGenerated stores an object whose bytes come from a generator.
func (s *r2Store) putGenerated(ctx context.Context, key, contentType, seed string, size int64, now time.Time) (*r2Object, error) {
	h := md5.New()
	if _, err := io.Copy(h, newKeystream(seed, size)); err != nil {
		return nil, err
	}
	o := &r2Object{Key: key, Size: size, ETag: hex.EncodeToString(h.Sum(nil)), ContentType: contentType, Uploaded: now, BlobID: genBlobID(seed, size)}
	return o, s.insert(ctx, o)
}

func (s *r2Store) insert(ctx context.Context, o *r2Object) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, _ := s.head(ctx, o.Key)
	custom := "{}"
	if o.Custom != nil {
		custom = string(marshalJS(o.Custom))
	}
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO _mf_objects (key, blob_id, version, size, etag, uploaded, checksums, http_metadata, custom_metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		o.Key, o.BlobID, fmt.Sprintf("%032x", s.seq.Add(1)), o.Size, o.ETag, o.Uploaded.UnixMilli(),
		`{"md5":"`+o.ETag+`"}`, httpMetadata(o.ContentType), custom)
	if err != nil {
		return fmt.Errorf("edgebasetest: r2 put %s: %w", o.Key, err)
	}
	if old != nil && old.BlobID != o.BlobID {
		s.removeBlob(old.BlobID)
	}
	return nil
}

func (s *r2Store) removeBlob(id string) {
	if id == "" || strings.HasPrefix(id, genPrefix) {
		return
	}
	_ = os.Remove(filepath.Join(s.blobDir, id))
}

var errNoObject = errors.New("edgebasetest: no such object")

func scanObject(sc interface{ Scan(...any) error }) (*r2Object, error) {
	var o r2Object
	var uploaded int64
	var hm, cm string
	var blob sql.NullString
	if err := sc.Scan(&o.Key, &blob, &o.Size, &o.ETag, &uploaded, &hm, &cm); err != nil {
		return nil, err
	}
	o.BlobID = blob.String
	o.Uploaded = time.UnixMilli(uploaded).UTC()
	var meta struct {
		ContentType string `json:"contentType"`
	}
	_ = json.Unmarshal([]byte(hm), &meta)
	o.ContentType = meta.ContentType
	if v, err := parseJS([]byte(cm)); err == nil {
		o.Custom, _ = v.(object)
	}
	return &o, nil
}

const objectCols = "key, blob_id, size, etag, uploaded, http_metadata, custom_metadata"

func (s *r2Store) head(ctx context.Context, key string) (*r2Object, error) {
	o, err := scanObject(s.db.QueryRowContext(ctx, "SELECT "+objectCols+" FROM _mf_objects WHERE key = ?", key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoObject
	}
	return o, err
}

// list returns up to limit objects with the prefix and keys after
// startAfter, in byte order, and whether more follow.
func (s *r2Store) list(ctx context.Context, prefix, startAfter string, limit int) ([]*r2Object, bool, error) {
	q := "SELECT " + objectCols + " FROM _mf_objects WHERE key > ?"
	args := []any{startAfter}
	if prefix != "" {
		q += " AND substr(key, 1, ?) = ?"
		args = append(args, len([]byte(prefix)), prefix)
	}
	q += " ORDER BY key LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []*r2Object
	for rows.Next() {
		o, err := scanObject(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// r2Cursor is Miniflare's list cursor: the base64 of the last key.
func r2Cursor(key string) string { return base64.StdEncoding.EncodeToString([]byte(key)) }

func r2CursorKey(c string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(c)
	return string(b), err
}

func (s *r2Store) delete(ctx context.Context, keys []string) error {
	for _, k := range keys {
		o, err := s.head(ctx, k)
		if errors.Is(err, errNoObject) {
			continue
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		_, err = s.db.ExecContext(ctx, "DELETE FROM _mf_objects WHERE key = ?", k)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		s.removeBlob(o.BlobID)
	}
	return nil
}

// readAll is for small objects in tests and fingerprints.
func (s *r2Store) readAll(o *r2Object) ([]byte, error) {
	rc, err := s.open(o)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, rc)
	return buf.Bytes(), err
}
