package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/restore"
)

// snapshotSource is a snapshot read as the v1.1 archive `backup export`
// writes, exported while the restore reads it: nothing is materialised on
// disk. There is no manifest: every chunk is authenticated and hashed as
// it is read, and a restore validates the whole archive before writing.
type snapshotSource struct {
	repo   *repository.Repository
	snap   *repository.Snapshot
	name   string
	format archive.Format
}

func newSnapshotSource(r *repository.Repository, info repository.SnapshotInfo) snapshotSource {
	s := snapshotSource{repo: r, snap: info.Snapshot, name: "snapshot-" + shortSnap(info.ID) + ".json", format: archive.JSON}
	if info.Storage.Objects > 0 {
		s.name, s.format = "snapshot-"+shortSnap(info.ID)+".tar.gz", archive.TarGz
	}
	return s
}

func (s snapshotSource) Name() string { return s.name }

func (s snapshotSource) Open(ctx context.Context) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(s.repo.ExportStored(ctx, s.snap, pw, s.format)) }()
	return pr, nil
}

func (s snapshotSource) Manifest(context.Context) (*archive.Manifest, error) { return nil, nil }

// restoreRepo opens the repository a restore reads from (--from-snapshot)
// or takes its undo snapshot into; nil when neither applies.
func (a *app) restoreRepo(ctx context.Context, o restoreOpts) (*openedRepo, error) {
	if o.repo.where(a) == "" {
		if o.fromSnapshot != "" {
			return nil, failure("invalid_arguments", errors.New("--from-snapshot needs a repository: pass --repo or set "+envRepository))
		}
		return nil, nil
	}
	if o.fromSnapshot == "" && (o.noUndo || o.dryRun) {
		return nil, nil
	}
	repo, _, err := a.openRepo(ctx, &o.repo, o.aws, false)
	return repo, err
}

// snapshotToRestore resolves --from-snapshot.
func (a *app) snapshotToRestore(ctx context.Context, repo *openedRepo, ref string) (restore.Source, string, error) {
	info, err := repo.FindSnapshot(ctx, ref)
	if err != nil {
		return nil, "", repoFailure(repo.location, err)
	}
	return newSnapshotSource(repo.Repository, info), fmt.Sprintf("snapshot %s in %s", info.ID, repo.location), nil
}

// undoSnapshot backs the target up into the repository before the first
// write of a restore, so that the restore can itself be undone.
func (a *app) undoSnapshot(ctx context.Context, repo *openedRepo, d *deployment, o restoreOpts) (*snapshotResult, error) {
	if repo == nil || o.noUndo {
		return nil, nil
	}
	a.say("Taking the undo snapshot of %s (skip with --no-undo-snapshot)\n", d.client.BaseURL())
	res, err := a.takeSnapshot(ctx, repo, d, createOpts{concurrency: max(o.concurrency.DOs, 1), includeStorage: !o.skipStorage})
	if err != nil {
		ce := failure("backup_restore_failed", fmt.Errorf("the undo snapshot failed: %w", err))
		ce.hint = "nothing was written to the target; fix the cause, or pass --no-undo-snapshot to restore without a way back"
		return nil, ce
	}
	a.say("  undo: snapshot %s (restore it with --from-snapshot %s)\n", res.ID, shortSnap(res.ID))
	return res, nil
}

// earlyUndo is an undo snapshot taken while the restore is planned.
type earlyUndo struct {
	stop context.CancelFunc
	done chan struct{}
	res  *snapshotResult
	err  error
}

// startUndo starts the undo snapshot alongside planning when the restore
// will run without asking (--yes); nil otherwise, and then the snapshot is
// taken after the confirmation, as before.
func (a *app) startUndo(ctx context.Context, repo *openedRepo, d *deployment, o restoreOpts) *earlyUndo {
	if repo == nil || o.noUndo || o.dryRun || !o.yes {
		return nil
	}
	uctx, stop := context.WithCancel(ctx)
	u := &earlyUndo{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		u.res, u.err = a.undoSnapshot(uctx, repo, d, o)
	}()
	return u
}

// wait returns the undo snapshot once taken.
func (u *earlyUndo) wait() (*snapshotResult, error) {
	<-u.done
	return u.res, u.err
}

// cancel abandons the undo snapshot (planning failed or it was a dry run)
// and waits for it to stop; a snapshot already saved stays in the
// repository.
func (u *earlyUndo) cancel() {
	if u == nil {
		return
	}
	u.stop()
	<-u.done
}

// withUndo names the undo snapshot in a failed restore's error.
func withUndo(err error, undo *snapshotResult) error {
	if undo == nil {
		return err
	}
	var ce *cmdError
	if !errors.As(err, &ce) {
		ce = failure("backup_restore_failed", err)
	}
	ce.hint = fmt.Sprintf("the target's state before this restore is snapshot %s: restore it with --from-snapshot %s", undo.ID, shortSnap(undo.ID))
	if ce.extra == nil {
		ce.extra = map[string]any{}
	}
	ce.extra["undoSnapshot"] = undo.ID.String()
	return ce
}

// unchangedUnits lists (restore.UnitKey) the units of the snapshot being
// restored whose content equals the undo snapshot's, taken of the target
// just before: the same chunks (a dump's own timestamp is the unit's Tail,
// not a chunk), and how many of them are DOs. Restoring them would write
// what is there already, so it is not sent (--full-restore sends it).
func unchangedUnits(from, undo *repository.Snapshot) (keys []string, dos int) {
	restorable := func(s archive.Section) bool {
		switch s {
		case archive.SectionControlD1, archive.SectionAuthD1, archive.SectionDatabase, archive.SectionDataNamespace:
			return true
		}
		return false
	}
	target := make(map[string]repository.ChunkList)
	for _, u := range undo.Units {
		if restorable(u.Section) {
			target[restore.UnitKey(u.Section, u.Name)] = u.Chunks
		}
	}
	for _, u := range from.Units {
		key := restore.UnitKey(u.Section, u.Name)
		if t, ok := target[key]; ok && restorable(u.Section) && len(u.Chunks) > 0 && slices.Equal(u.Chunks, t) {
			keys = append(keys, key)
			if u.Section == archive.SectionDatabase {
				dos++
			}
		}
	}
	return keys, dos
}

// skipUnchanged records, for a restore from a snapshot with an undo
// snapshot just taken, the units the target already holds as the
// snapshot has them.
func (a *app) skipUnchanged(ctx context.Context, e *embedded, job *events.Job, src restore.Source, undo *snapshotResult, o restoreOpts) (unchangedReport, error) {
	ss, ok := src.(snapshotSource)
	if !ok || undo == nil || o.fullRestore {
		return unchangedReport{}, nil
	}
	keys, dos := unchangedUnits(ss.snap, undo.Snap)
	if err := restore.WriteUnchanged(ctx, e.jobs, job.ID, keys); err != nil {
		return unchangedReport{}, failure("backup_restore_failed", fmt.Errorf("recording the unchanged units: %w", err))
	}
	rep := unchangedReport{DOs: dos}
	for _, k := range keys {
		if !strings.HasPrefix(k, string(archive.SectionDatabase)+":") {
			rep.Other = append(rep.Other, k)
		}
	}
	if len(keys) > 0 {
		a.say("  %d DOs and %d other units already hold what the snapshot has (same content as in the undo snapshot): not restored again (--full-restore restores them)\n", dos, len(rep.Other))
	}
	return rep, nil
}

// unchangedReport is what skipUnchanged left out.
type unchangedReport struct {
	DOs   int
	Other []string // control.d1, auth.d1 (then also the users resync), dataNamespaces:NS
}
