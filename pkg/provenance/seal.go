package provenance

import (
	"context"
	"fmt"
	"strings"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Sealer links a new manifest to the newest earlier manifest of the same
// source in a store and signs it. It is the backup assembler's last step
// before the manifest is written (backup.Assembler.Sealer).
type Sealer struct {
	Store pipeline.BlobStore
	// Archives is the key prefix of the archives ("" or ending in '/').
	Archives string
	// Signer may be nil: the manifest is then chained, not signed.
	Signer Signer
}

// Seal implements backup.ManifestSealer. An earlier manifest that cannot
// be read fails the seal: linking past it would hide it from the chain.
func (s *Sealer) Seal(ctx context.Context, m *archive.Manifest) error {
	prev, err := s.previous(ctx, *m)
	if err != nil {
		return err
	}
	m.Previous = ""
	if prev != nil {
		m.Previous = Digest(*prev)
	}
	m.Signature = nil
	if s.Signer == nil {
		return nil
	}
	return Sign(ctx, m, s.Signer)
}

// previous finds the newest manifest of m's source created before m (by
// creation time, then archive name), other than m's own.
func (s *Sealer) previous(ctx context.Context, m archive.Manifest) (*archive.Manifest, error) {
	var best *archive.Manifest
	own := archive.ManifestName(m.Archive)
	err := s.Store.List(ctx, s.Archives+"edgebase-backup-", func(info blob.Info) error {
		name := strings.TrimPrefix(info.Key, s.Archives)
		if strings.Contains(name, "/") || !strings.HasSuffix(name, ".manifest.json") || name == own {
			return nil
		}
		if !archive.IsArchiveName(strings.TrimSuffix(name, ".manifest.json")) {
			return nil
		}
		rc, err := s.Store.Get(ctx, info.Key)
		if err != nil {
			return err
		}
		c, err := archive.DecodeManifest(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("provenance: chaining to %s: %w", info.Key, err)
		}
		if ChainKey(c) != ChainKey(m) || !before(c, m) {
			return nil
		}
		if best == nil || before(*best, c) {
			best = &c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("provenance: finding the previous manifest of %s: %w", m.Archive, err)
	}
	return best, nil
}

func before(a, b archive.Manifest) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.Archive < b.Archive
}
