package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ManifestVersion is the version of the manifest format written here.
const ManifestVersion = 1

// Manifest is written beside an archive (ManifestName) when it is complete:
// what the archive is, its size and SHA-256, and what it holds. Verify checks
// an archive against it; copies (DR, downloads) can be checked without
// opening the archive.
type Manifest struct {
	Version int    `json:"version"`
	Archive string `json:"archive"` // file name, without directories
	Format  Format `json:"format"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256,omitempty"` // hex SHA-256 of the whole archive
	// Parts, when present, are consecutive byte ranges covering the whole
	// archive with a SHA-256 each: the gzip members of a .tar.gz that was
	// joined server-side, where no single process saw every byte.
	Parts           []ManifestPart `json:"parts,omitempty"`
	CreatedAt       time.Time      `json:"createdAt"`
	Job             string         `json:"job,omitempty"`
	BackupTimestamp string         `json:"backupTimestamp,omitempty"` // the archive's top-level timestamp
	Source          string         `json:"source,omitempty"`
	// SourceURL is the base URL of the deployment backed up: what a
	// restore drill must never write to, and what chains manifests.
	SourceURL      string     `json:"sourceURL,omitempty"`
	DOs            int        `json:"dos"`
	AuthShards     int        `json:"authShards"`
	DataNamespaces int        `json:"dataNamespaces"`
	Tables         int64      `json:"tables"`
	Rows           int64      `json:"rows"`
	RowsBy         *RowCounts `json:"rowsBy,omitempty"` // absent in manifests written before it existed
	Users          int64      `json:"users"`
	Objects        int64      `json:"objects"`
	StorageBytes   int64      `json:"storageBytes"`
	Secrets        bool       `json:"secrets"`
	// Server records what the backup observed about the server where a
	// newer EdgeBase (0.4+) shows less than 0.2.8 did. Absent in manifests
	// written before it existed, or by writers that did not look.
	Server *ServerObservations `json:"server,omitempty"`
	// Previous is the hex SHA-256 of the previous manifest of the same
	// source (pkg/provenance.Digest), linking a source's manifests into a
	// hash chain; empty for the first one, or when nothing chained it.
	Previous string `json:"previous,omitempty"`
	// Signature, when present, signs every other field (pkg/provenance).
	Signature *ManifestSignature `json:"signature,omitempty"`
}

// ManifestSignature is a signature over a manifest's signing bytes.
type ManifestSignature struct {
	// Algorithm is "ed25519" or "ecdsa-p256-sha256".
	Algorithm string `json:"algorithm"`
	// KeyID names the public key: the hex SHA-256 of its PKIX encoding.
	KeyID string `json:"keyId"`
	// Value is the standard base64 signature.
	Value string `json:"value"`
}

// ServerObservations are facts about the server seen while backing up,
// none of which the v1.1 archive can hold. Counts are written even when
// zero: "looked and found none" differs from an absent Server.
type ServerObservations struct {
	// ContentTypesMasked counts storage objects the server served as an
	// octet-stream attachment, so their real type was unknown and the
	// archive records a fallback.
	ContentTypesMasked int64 `json:"contentTypesMasked"`
	// ConfigRedacted reports a config snapshot with redacted values: the
	// archived config describes the deployment, it cannot recreate it.
	ConfigRedacted bool `json:"configRedacted"`
	// InternalKeysSkipped counts server-internal storage keys (e.g.
	// upload-grant markers) left out of the archive.
	InternalKeysSkipped int64 `json:"internalKeysSkipped"`
}

// Observe returns m.Server, creating it on first use, so a writer can
// record observations as it makes them.
func (m *Manifest) Observe() *ServerObservations {
	if m.Server == nil {
		m.Server = &ServerObservations{}
	}
	return m.Server
}

// ManifestPart is one byte range of an archive and its SHA-256.
type ManifestPart struct {
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// NewManifest builds the manifest of a verified archive from its Summary.
func NewManifest(s Summary, createdAt time.Time, job string) Manifest {
	rowsBy := s.RowsBy
	return Manifest{
		Version:         ManifestVersion,
		Archive:         filepath.Base(s.File),
		Format:          s.Format,
		Size:            s.Bytes,
		SHA256:          s.SHA256,
		CreatedAt:       createdAt.UTC(),
		Job:             job,
		BackupTimestamp: s.Timestamp,
		Source:          s.Source,
		DOs:             s.DOs,
		AuthShards:      s.AuthShards,
		DataNamespaces:  s.DataNamespaces,
		Tables:          s.Tables,
		Rows:            s.Rows,
		RowsBy:          &rowsBy,
		Users:           s.Users,
		Objects:         s.Objects,
		StorageBytes:    s.StorageBytes,
		Secrets:         s.Secrets > 0,
	}
}

// Count adds a value written to the archive to the manifest's figures,
// counting the way Summary does, so a manifest built while writing agrees
// with what Verify reads back.
func (m *Manifest) Count(vs ValueStats) {
	switch vs.Section {
	case SectionDatabase:
		m.DOs++
	case SectionAuthShard:
		m.AuthShards++
	case SectionDataNamespace:
		m.DataNamespaces++
	case SectionSecrets:
		m.Secrets = m.Secrets || vs.Keys > 0
		return
	case SectionConfig:
		return
	}
	m.Tables += int64(len(vs.Tables))
	m.Rows += vs.Rows
	if m.RowsBy == nil {
		m.RowsBy = &RowCounts{}
	}
	m.RowsBy.Add(vs.Section, vs.Rows)
	if vs.Section == SectionAuthD1 {
		for _, t := range vs.Tables {
			if t.Name == "_users" {
				m.Users += t.Rows
			}
		}
	}
}

// CountObject adds a storage object to the manifest's figures.
func (m *Manifest) CountObject(o Object) {
	m.Objects++
	m.StorageBytes += o.Size
}

// EncodeManifest writes m as indented JSON.
func EncodeManifest(w io.Writer, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("archive: encode manifest: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("archive: write manifest: %w", err)
	}
	return nil
}

// DecodeManifest reads a manifest and checks that it is complete.
func DecodeManifest(r io.Reader) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	switch {
	case m.Version != ManifestVersion:
		return m, fmt.Errorf("%w: manifest version %d, want %d", ErrBadManifest, m.Version, ManifestVersion)
	case m.Archive == "" || filepath.Base(m.Archive) != m.Archive:
		return m, fmt.Errorf("%w: manifest archive name %q is not a file name", ErrBadManifest, m.Archive)
	case m.Size < 0:
		return m, fmt.Errorf("%w: manifest has an invalid size", ErrBadManifest)
	case m.SHA256 == "" && len(m.Parts) == 0:
		return m, fmt.Errorf("%w: manifest has neither a sha256 nor parts", ErrBadManifest)
	case m.SHA256 != "" && !isSHA256Hex(m.SHA256):
		return m, fmt.Errorf("%w: manifest has an invalid sha256", ErrBadManifest)
	case m.Previous != "" && !isSHA256Hex(m.Previous):
		return m, fmt.Errorf("%w: manifest has an invalid previous link", ErrBadManifest)
	case m.Signature != nil && (m.Signature.Algorithm == "" || m.Signature.Value == ""):
		return m, fmt.Errorf("%w: manifest has an incomplete signature", ErrBadManifest)
	case m.Server != nil && (m.Server.ContentTypesMasked < 0 || m.Server.InternalKeysSkipped < 0):
		return m, fmt.Errorf("%w: manifest has negative server counts", ErrBadManifest)
	}
	var off int64
	for i, p := range m.Parts {
		if p.Offset != off || p.Size < 0 || !isSHA256Hex(p.SHA256) {
			return m, fmt.Errorf("%w: manifest part %d is not a valid continuation at offset %d", ErrBadManifest, i, off)
		}
		off += p.Size
	}
	if len(m.Parts) > 0 && off != m.Size {
		return m, fmt.Errorf("%w: manifest parts cover %d bytes, the archive has %d", ErrBadManifest, off, m.Size)
	}
	return m, nil
}

// WriteManifestFile writes m to path atomically (temporary file, then
// rename), with mode 0600.
func WriteManifestFile(path string, m Manifest) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".manifest-*.tmp")
	if err != nil {
		return fmt.Errorf("archive: write manifest %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = EncodeManifest(tmp, m)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("archive: write manifest %s: %w", path, err)
	}
	return nil
}

// ReadManifestFile reads the manifest at path; a missing file gives an error
// wrapping fs.ErrNotExist.
func ReadManifestFile(path string) (Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: read manifest: %w", err)
	}
	defer f.Close()
	m, err := DecodeManifest(f)
	if err != nil {
		return m, fmt.Errorf("%w (%s)", err, path)
	}
	return m, nil
}

// Check compares an archive's size and SHA-256 with the manifest (when
// the manifest has a whole-file SHA-256; see CheckReader for parts).
func (m Manifest) Check(size int64, sha string) error {
	if m.Size != size || (m.SHA256 != "" && m.SHA256 != sha) {
		return fmt.Errorf("%w: %s has %d bytes with sha256 %s, the manifest says %d bytes with sha256 %s",
			ErrManifestMismatch, m.Archive, size, sha, m.Size, m.SHA256)
	}
	return nil
}

// CheckReader reads a whole archive and checks it against the manifest:
// size, the whole-file SHA-256 when present, and every part's SHA-256.
func (m Manifest) CheckReader(r io.Reader) error {
	whole := sha256.New()
	var n int64
	buf := make([]byte, 256<<10)
	for i, p := range append(m.Parts, ManifestPart{Offset: m.Size, Size: -1}) {
		h := sha256.New()
		want := p.Size
		if want < 0 {
			// After the last part (or with no parts): the rest of the file.
			c, err := io.CopyBuffer(io.MultiWriter(whole, h), r, buf)
			n += c
			if err != nil {
				return fmt.Errorf("archive: reading %s: %w", m.Archive, err)
			}
			break
		}
		c, err := io.CopyBuffer(io.MultiWriter(whole, h), io.LimitReader(r, want), buf)
		n += c
		if err != nil {
			return fmt.Errorf("archive: reading %s: %w", m.Archive, err)
		}
		if c != want {
			return fmt.Errorf("%w: %s ends at %d bytes, inside part %d", ErrManifestMismatch, m.Archive, n, i)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
			return fmt.Errorf("%w: part %d of %s (bytes %d-%d) has sha256 %s, the manifest says %s",
				ErrManifestMismatch, i, m.Archive, p.Offset, p.Offset+p.Size, got, p.SHA256)
		}
	}
	return m.Check(n, hex.EncodeToString(whole.Sum(nil)))
}

// HashFile returns the size and hex SHA-256 of a file.
func HashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", fmt.Errorf("archive: hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("archive: hash %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// CheckManifestFile verifies the archive at path against the manifest
// beside it by size and SHA-256 only, without reading the content. It
// returns an error wrapping fs.ErrNotExist when there is no manifest.
func CheckManifestFile(path string) (Manifest, error) {
	m, err := ReadManifestFile(ManifestName(path))
	if err != nil {
		return m, err
	}
	if m.Archive != filepath.Base(path) {
		return m, fmt.Errorf("%w: it describes %s, not %s", ErrManifestMismatch, m.Archive, filepath.Base(path))
	}
	f, err := os.Open(path)
	if err != nil {
		return m, fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	return m, m.CheckReader(f)
}
