package restore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// FileSource is an archive on the local disk.
type FileSource string

// Name implements Source.
func (f FileSource) Name() string { return filepath.Base(string(f)) }

// Open implements Source.
func (f FileSource) Open(context.Context) (io.ReadCloser, error) { return os.Open(string(f)) }

// Manifest implements Source.
func (f FileSource) Manifest(context.Context) (*archive.Manifest, error) {
	m, err := archive.ReadManifestFile(archive.ManifestName(string(f)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// BlobSource is an archive in a BlobStore (the backup bucket).
type BlobSource struct {
	Store pipeline.BlobStore
	Key   string
}

// Name implements Source.
func (b BlobSource) Name() string { return b.Key }

// Open implements Source.
func (b BlobSource) Open(ctx context.Context) (io.ReadCloser, error) { return b.Store.Get(ctx, b.Key) }

// Manifest implements Source.
func (b BlobSource) Manifest(ctx context.Context) (*archive.Manifest, error) {
	rc, err := b.Store.Get(ctx, archive.ManifestName(b.Key))
	if errors.Is(err, blob.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	m, err := archive.DecodeManifest(rc)
	if err != nil {
		return nil, err
	}
	return &m, nil
}
