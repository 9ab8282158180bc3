package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/restore"
	"golang.org/x/sync/errgroup"
)

// verifyS3 verifies an archive in S3 in one streaming pass: no local copy,
// memory bounded by the reader's buffers.
func (a *app) verifyS3(ctx context.Context, f awsFlags, raw string) (archive.Summary, *archive.Manifest, error) {
	empty := archive.Summary{File: raw, Format: archive.DetectFormat(raw), Sections: []string{}, Dumps: []archive.DumpSummary{}, Warnings: []string{}}
	st, key, err := a.s3Object(ctx, f, raw)
	if err != nil {
		return empty, nil, err
	}
	man, err := (restore.BlobSource{Store: st, Key: key}).Manifest(ctx)
	if err != nil {
		return empty, nil, fmt.Errorf("reading the manifest of %s: %w", raw, err)
	}
	rc, err := st.Get(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return empty, nil, fmt.Errorf("%s: no such archive", raw)
	}
	if err != nil {
		return empty, nil, err
	}
	defer rc.Close()
	s, err := archive.VerifyStream(ctx, raw, rc, man)
	return s, man, err
}

// listS3 lists the archives directly under an s3:// prefix (with their
// manifests) and the unfinished jobs staged there.
func (a *app) listS3(ctx context.Context, f awsFlags, raw string) ([]listedArchive, []*events.Job, error) {
	p, err := parseS3(raw)
	if err != nil {
		return nil, nil, err
	}
	st, err := a.s3Store(ctx, f, p)
	if err != nil {
		return nil, nil, err
	}
	var list []listedArchive
	manifests := map[string]bool{}
	err = st.List(ctx, "edgebase-backup-", func(info blob.Info) error {
		switch {
		case strings.Contains(info.Key, "/"):
		case strings.HasSuffix(info.Key, ".manifest.json"):
			manifests[strings.TrimSuffix(info.Key, ".manifest.json")] = true
		case archive.IsArchiveName(info.Key):
			list = append(list, listedArchive{File: p.Join(info.Key), Bytes: info.Size})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for i := range list {
		key := list[i].File[strings.LastIndex(list[i].File, "/")+1:]
		if !manifests[key] {
			continue
		}
		m, err := (restore.BlobSource{Store: st, Key: key}).Manifest(ctx)
		if err == nil && m != nil {
			list[i].Manifest, list[i].SHA256 = true, m.SHA256
			list[i].Modified = m.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].File > list[j].File })
	var unfinished []*events.Job
	e, err := a.embedStore(st, func() error { return nil }, embedOptions{concurrency: 1})
	if err != nil {
		return nil, nil, err
	}
	defer e.Close()
	err = e.jobs.ListJobs(ctx, func(j *events.Job) error {
		if j.State != events.StateDone {
			unfinished = append(unfinished, j)
		}
		return nil
	})
	if err != nil && !errors.Is(err, blob.ErrNotExist) {
		return nil, nil, err
	}
	return list, unfinished, nil
}

// s3Source is an archive in S3 for a restore, read as a stream; a missing
// object is refused before anything reads the target.
func (a *app) s3Source(ctx context.Context, f awsFlags, raw string) (restore.Source, error) {
	st, key, err := a.s3Object(ctx, f, raw)
	if err != nil {
		return nil, failure("invalid_arguments", err)
	}
	if _, err := st.Stat(ctx, key); err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			return nil, &cmdError{code: "backup_file_not_found", msg: "Backup file not found: " + raw, exit: ExitError}
		}
		return nil, failure("backup_restore_failed", err)
	}
	return restore.BlobSource{Store: st, Key: key}, nil
}

// parsePercent reads "N%" or "N" with 0 < N <= 100.
func parsePercent(v string) (float64, error) {
	n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
	if err != nil || n <= 0 || n > 100 {
		return 0, failure("invalid_arguments", fmt.Errorf("--read-data-subset %q: want a percentage in (0, 100], like 10%%", v))
	}
	return n, nil
}

// verifyS3Subset checks an S3 archive against its manifest without
// reading all of it: the size, then pct% of the manifest's parts (at
// least one, chosen at random) read by range and hashed. Without parts
// (a .json archive) the whole archive is the one part.
func (a *app) verifyS3Subset(ctx context.Context, f awsFlags, raw string, pct float64) (archive.Summary, *archive.Manifest, error) {
	sum := archive.Summary{File: raw, Format: archive.DetectFormat(raw), Sections: []string{}, Dumps: []archive.DumpSummary{}, Warnings: []string{}}
	st, key, err := a.s3Object(ctx, f, raw)
	if err != nil {
		return sum, nil, err
	}
	man, err := (restore.BlobSource{Store: st, Key: key}).Manifest(ctx)
	if err != nil {
		return sum, nil, fmt.Errorf("reading the manifest of %s: %w", raw, err)
	}
	if man == nil {
		return sum, nil, fmt.Errorf("%s has no manifest: --read-data-subset checks parts against it", raw)
	}
	info, err := st.Stat(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return sum, man, fmt.Errorf("%s: no such archive", raw)
	}
	if err != nil {
		return sum, man, err
	}
	sum.Bytes = info.Size
	if info.Size != man.Size {
		return sum, man, fmt.Errorf("%s has %d bytes, its manifest says %d", raw, info.Size, man.Size)
	}
	parts := man.Parts
	if len(parts) == 0 {
		parts = []archive.ManifestPart{{Offset: 0, Size: man.Size, SHA256: man.SHA256}}
	}
	n := max(1, int(math.Ceil(float64(len(parts))*pct/100)))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, i := range rand.Perm(len(parts))[:n] {
		p := parts[i]
		g.Go(func() error {
			rc, err := st.GetRange(gctx, key, p.Offset, p.Size)
			if err != nil {
				return err
			}
			defer rc.Close()
			h := sha256.New()
			if _, err := io.Copy(h, rc); err != nil {
				return err
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
				return fmt.Errorf("%s: part %d (bytes %d-%d) has sha256 %s, the manifest says %s", raw, i, p.Offset, p.Offset+p.Size-1, got, p.SHA256)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return sum, man, err
	}
	sum.Manifest = "ok"
	sum.Warnings = append(sum.Warnings, fmt.Sprintf("only %d of %d manifest parts were read back (--read-data-subset %g%%); the archive's content was not parsed", n, len(parts), pct))
	return sum, man, nil
}
