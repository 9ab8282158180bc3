package serverless

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"time"

	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/repository"
)

// Metric names of the maintain function.
const (
	SnapshotsKept      = "SnapshotsKept"
	SnapshotsForgotten = "SnapshotsForgotten"
	PacksMarked        = "PacksMarked"
	PacksDeleted       = "PacksDeleted"
	PrunedBytes        = "PrunedBytes"
	// LockedFiles are snapshots and pack, index or marks files the store
	// refused to delete (blob.ErrLocked); the next run tries again.
	LockedFiles = "LockedFiles"
	// SnapshotsExported counts the weekly exports that wrote an archive
	// (0 when the newest snapshot was exported already).
	SnapshotsExported = "SnapshotsExported"
)

// ErrNoSnapshot: the repository holds no snapshot to export.
var ErrNoSnapshot = errors.New("serverless: the repository holds no snapshot to export")

// maxExportNameShift bounds how many later seconds an export tries when
// another backup's archive holds the name of its snapshot's start second
// (as the assembler does when reserving a name).
const maxExportNameShift = 60

// Maintain is the maintain function of repository mode. Its daily rule
// applies the retention policy (repository.Forget) and prunes
// (repository.Prune, two-phase with Config.PruneGrace); its weekly rule
// (lambdaenv.ExportInput) exports the newest snapshot as a v1.1 .tar.gz
// (a .json when it holds no storage object bytes, as the assembler and
// `backup export` decide) under ArchivePrefix, with the sha256 manifest (chained, and signed with
// a signer) the assembler writes beside an archive, so drcopy, the drill
// and `list` take it like any archive. The repository is opened on every
// invocation: other functions add snapshots between runs.
type Maintain struct {
	*base
	repo   pipeline.BlobStore
	creds  repository.Credentials
	signer provenance.Signer
}

// MaintainInput is the maintain function's event: the daily rule's is
// empty, the weekly export's lambdaenv.ExportInput.
type MaintainInput struct {
	Export bool `json:"export"`
}

// MaintainResult is what an invocation did.
type MaintainResult struct {
	// Forget and prune (daily).
	Kept      int   `json:"kept"`
	Forgotten int   `json:"forgotten"`
	Marked    int   `json:"marked"`
	Deleted   int   `json:"deleted"`
	Freed     int64 `json:"freed"`
	// Locked lists what the store refused to delete.
	Locked []string `json:"locked,omitempty"`
	// Export (weekly): the snapshot, its archive and manifest, and whether
	// this run wrote them (false: exported before).
	Snapshot string `json:"snapshot,omitempty"`
	Archive  string `json:"archive,omitempty"`
	Manifest string `json:"manifest,omitempty"`
	Written  bool   `json:"written,omitempty"`
	Size     int64  `json:"size,omitempty"`
}

// NewMaintain builds the maintain function from the backup bucket, the
// repository's store (the bucket under RepositoryPrefix) with the KMS key
// wrapper that opens it, and, optionally, the signer of manifests.
func NewMaintain(cfg Config, rt Runtime, d Deps) (*Maintain, error) {
	if d.Repository == nil || d.RepositoryKey == nil {
		return nil, fmt.Errorf("%w for maintain: no repository store or key", ErrConfig)
	}
	b, err := newBase(cfg, rt, d)
	if err != nil {
		return nil, err
	}
	return &Maintain{base: b, repo: d.Repository, creds: repository.Credentials{Wrapper: d.RepositoryKey}, signer: d.Signer}, nil
}

// Handle runs the daily forget+prune or, with Export, the weekly export.
// A repository that cannot be opened, a failed step or (export) an empty
// repository is an error: Lambda retries the event, then the invoke
// dead-letter queue and the function's error alarm tell the operators.
func (h *Maintain) Handle(ctx context.Context, in MaintainInput) (MaintainResult, error) {
	log, reqID := h.invocation(ctx)
	soft, cancel := softDeadline(ctx, h.cfg.DeadlineMargin)
	defer cancel()
	start := h.now()
	r, err := repository.OpenWith(soft, h.repo, h.creds)
	if err != nil {
		err = fmt.Errorf("serverless: maintain: opening the repository under %s: %w", h.cfg.RepositoryPrefix, err)
		log.Error("could not open the repository", "err", err)
		return MaintainResult{}, err
	}
	props := map[string]any{"requestId": reqID}
	if in.Export {
		res, err := h.export(soft, log, r)
		if err != nil {
			log.Error("export failed", "snapshot", res.Snapshot, "err", err)
			return res, err
		}
		props["snapshot"], props["archive"] = res.Snapshot, res.Archive
		n := int64(0)
		ms := []metrics.Metric{metrics.Since(metrics.Duration, start, h.now())}
		if res.Written {
			n = 1
			ms = append(ms, metrics.BytesOf(metrics.ArchiveBytes, res.Size))
		}
		h.emit(metrics.Doc{Metrics: append(ms, metrics.CountOf(SnapshotsExported, n)), Properties: props})
		return res, nil
	}
	res, err := h.retain(soft, log, r)
	if err != nil {
		log.Error("forget and prune failed", "err", err)
		return res, err
	}
	if len(res.Locked) > 0 {
		props["locked"] = res.Locked
	}
	h.emit(metrics.Doc{Metrics: []metrics.Metric{
		metrics.Since(metrics.Duration, start, h.now()),
		metrics.CountOf(SnapshotsKept, int64(res.Kept)), metrics.CountOf(SnapshotsForgotten, int64(res.Forgotten)),
		metrics.CountOf(PacksMarked, int64(res.Marked)), metrics.CountOf(PacksDeleted, int64(res.Deleted)),
		metrics.BytesOf(PrunedBytes, res.Freed), metrics.CountOf(LockedFiles, int64(len(res.Locked))),
	}, Properties: props})
	return res, nil
}

// retain forgets what the policy does not keep, then prunes.
func (h *Maintain) retain(ctx context.Context, log *slog.Logger, r *repository.Repository) (MaintainResult, error) {
	var res MaintainResult
	decisions, err := r.Forget(ctx, h.cfg.Retention, false)
	for _, d := range decisions {
		switch {
		case d.Locked:
			res.Kept++
			res.Locked = append(res.Locked, "snapshots/"+d.Snapshot.ID.String())
		case d.Keep:
			res.Kept++
		default:
			res.Forgotten++
		}
	}
	if err != nil {
		return res, fmt.Errorf("serverless: maintain: forget: %w", err)
	}
	log.Info("forget done", "policy", h.cfg.Retention.String(), "kept", res.Kept, "forgotten", res.Forgotten, "locked", len(res.Locked))
	rep, err := r.Prune(ctx, repository.PruneOptions{Grace: h.cfg.PruneGrace, Now: h.now})
	res.Marked, res.Deleted, res.Freed = rep.Marked, len(rep.Deleted), rep.Freed
	res.Locked = append(res.Locked, rep.Locked...)
	if err != nil {
		return res, fmt.Errorf("serverless: maintain: prune: %w", err)
	}
	log.Info("prune done", "grace", h.cfg.PruneGrace.String(), "marked", rep.Marked, "waiting", rep.Waiting,
		"rescued", rep.Rescued, "deleted", len(rep.Deleted), "freed", rep.Freed, "locked", rep.Locked)
	return res, nil
}

// export writes the newest snapshot as an archive and its manifest under
// ArchivePrefix, named after the backup's start second like the
// assembler's archives. A snapshot exported before (its manifest names
// the same backup timestamp and source) is not written again.
func (h *Maintain) export(ctx context.Context, log *slog.Logger, r *repository.Repository) (MaintainResult, error) {
	var res MaintainResult
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return res, fmt.Errorf("serverless: maintain: %w", err)
	}
	if len(snaps) == 0 {
		return res, ErrNoSnapshot
	}
	s := snaps[len(snaps)-1]
	res.Snapshot = s.ID.String()
	started, err := time.Parse(time.RFC3339Nano, s.Header.Timestamp)
	if err != nil {
		started = s.Time
	}
	format, err := r.ExportFormat(ctx, s.Snapshot)
	if err != nil {
		return res, fmt.Errorf("serverless: maintain: snapshot %s: %w", s.ID, err)
	}
	tarball := format == archive.TarGz
	for shift := range maxExportNameShift {
		name := archive.FileName(started.Add(time.Duration(shift)*time.Second), tarball)
		key := h.cfg.ArchivePrefix + name
		res.Archive, res.Manifest = key, archive.ManifestName(key)
		done, taken, err := h.exported(ctx, key, s)
		if err != nil {
			return res, err
		}
		if done {
			log.Info("snapshot exported before; nothing written", "snapshot", res.Snapshot, "archive", key)
			return res, nil
		}
		if taken {
			continue
		}
		sum, err := h.writeArchive(ctx, r, s, key, format)
		if errors.Is(err, blob.ErrExist) {
			// Another run wrote it since the check: look at it again.
			if done, _, err := h.exported(ctx, key, s); err == nil && done {
				return res, nil
			}
			continue
		}
		if err != nil {
			return res, err
		}
		if err := h.writeManifest(ctx, s, started, sum); err != nil {
			return res, err
		}
		res.Written, res.Size = true, sum.Bytes
		log.Info("snapshot exported", "snapshot", res.Snapshot, "archive", key, "bytes", sum.Bytes, "sha256", sum.SHA256)
		return res, nil
	}
	return res, fmt.Errorf("serverless: maintain: every archive name from %s on for %d seconds is taken by other backups",
		archive.FileName(started, tarball), maxExportNameShift)
}

// exported looks at what key holds: done when it is this snapshot's
// archive with its manifest (an export that stopped after the archive is
// completed here by writing the manifest), taken when it is another
// backup's.
func (h *Maintain) exported(ctx context.Context, key string, s repository.SnapshotInfo) (done, taken bool, err error) {
	man, err := backup.ReadManifest(ctx, h.store, key)
	if err == nil {
		same := man.BackupTimestamp == s.Header.Timestamp && man.SourceURL == s.SourceURL
		return same, !same, nil
	}
	if !errors.Is(err, blob.ErrNotExist) {
		return false, false, fmt.Errorf("serverless: maintain: the manifest of %s: %w", key, err)
	}
	if _, err := h.store.Stat(ctx, key); errors.Is(err, blob.ErrNotExist) {
		return false, false, nil
	} else if err != nil {
		return false, false, fmt.Errorf("serverless: maintain: %s: %w", key, err)
	}
	// An archive without a manifest: ours when it is this snapshot's
	// backup (an export stopped before its manifest), else another's.
	rc, err := h.store.Get(ctx, key)
	if err != nil {
		return false, false, fmt.Errorf("serverless: maintain: %s: %w", key, err)
	}
	defer rc.Close()
	sum, verr := archive.VerifyStream(ctx, key, rc, nil)
	if verr != nil || sum.Timestamp != s.Header.Timestamp || sum.Source != s.Header.Source {
		return false, true, nil
	}
	started, err := time.Parse(time.RFC3339Nano, s.Header.Timestamp)
	if err != nil {
		started = s.Time
	}
	if err := h.writeManifest(ctx, s, started, sum); err != nil {
		return false, false, err
	}
	return true, false, nil
}

// writeArchive streams the export of s to key, creating it (never
// replacing anything) only once the whole stream has passed
// archive.VerifyStream, which also hashes it: an export that fails or does
// not validate leaves nothing under key. Memory stays a few buffers: the
// export, the upload and the check run as one pipeline.
func (h *Maintain) writeArchive(ctx context.Context, r *repository.Repository, s repository.SnapshotInfo, key string, format archive.Format) (archive.Summary, error) {
	upR, upW := io.Pipe()
	chkR, chkW := io.Pipe()
	type checked struct {
		sum archive.Summary
		err error
	}
	check := make(chan checked, 1)
	go func() {
		sum, err := archive.VerifyStream(ctx, key, chkR, nil)
		// Unblocks the export if the check stopped early.
		chkR.CloseWithError(errors.Join(err, errCheckDone))
		check <- checked{sum, err}
	}()
	produced := make(chan checked, 1)
	go func() {
		err := r.Export(ctx, s.Snapshot, io.MultiWriter(upW, chkW), format)
		chkW.CloseWithError(err)
		c := <-check
		if err == nil && c.err != nil {
			err = fmt.Errorf("serverless: maintain: the export of snapshot %s does not validate: %w", s.ID, c.err)
		}
		// Only a stream that validated reaches EOF: the store then makes
		// the archive visible.
		upW.CloseWithError(err)
		produced <- checked{c.sum, err}
	}()
	perr := h.store.Create(ctx, key, upR)
	upR.CloseWithError(errors.Join(perr, errUploadDone)) // stops the export if the store gave up
	c := <-produced
	if perr != nil {
		return c.sum, fmt.Errorf("serverless: maintain: writing %s: %w", key, perr)
	}
	return c.sum, c.err
}

var (
	errCheckDone  = errors.New("the archive check ended")
	errUploadDone = errors.New("the upload ended")
)

// writeManifest writes the manifest of the exported archive, chained and
// signed as the assembler's are.
func (h *Maintain) writeManifest(ctx context.Context, s repository.SnapshotInfo, started time.Time, sum archive.Summary) error {
	m := archive.NewManifest(sum, started, "")
	m.Archive, m.SourceURL, m.Server = path.Base(sum.File), s.SourceURL, s.Server
	if err := (&provenance.Sealer{Store: h.store, Archives: h.cfg.ArchivePrefix, Signer: h.signer}).Seal(ctx, &m); err != nil {
		return fmt.Errorf("serverless: maintain: sealing the manifest of %s: %w", sum.File, err)
	}
	var buf bytes.Buffer
	if err := archive.EncodeManifest(&buf, m); err != nil {
		return err
	}
	if err := h.store.Put(ctx, archive.ManifestName(sum.File), &buf); err != nil {
		return fmt.Errorf("serverless: maintain: writing the manifest of %s: %w", sum.File, err)
	}
	return nil
}
