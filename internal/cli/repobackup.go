package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/secrets/devvars"
	"github.com/edgevault/edgevault/pkg/snapshot"
)

// snapshotResult is a snapshot written by a backup.
type snapshotResult struct {
	ID       repository.ID
	Snap     *repository.Snapshot
	Parent   repository.ID
	Storage  snapshot.StorageResult
	Stats    repository.Stats
	Warnings []string
}

// takeSnapshot backs d up into repo: the engine writes the database units
// as a storage-less v1.1 document in a scratch directory (the same
// planning, parallelism, retries and validation as any backup), the
// document is cut into the repository's chunks, and the storage table is
// built incrementally from the newest snapshot of the same source. The
// snapshot is written last, so an interrupted backup leaves no snapshot
// (only chunks a later backup reuses or a prune removes).
func (a *app) takeSnapshot(ctx context.Context, repo *openedRepo, d *deployment, o createOpts) (*snapshotResult, error) {
	parentID, parent, err := latestOf(ctx, repo.Repository, d.client.BaseURL())
	if err != nil {
		return nil, repoFailure(repo.location, err)
	}
	tmp, err := os.MkdirTemp("", "edgevault-snapshot-")
	if err != nil {
		return nil, failure("backup_create_failed", err)
	}
	defer os.RemoveAll(tmp)
	deps := edgevault.Deps{Client: d.client, Enum: d.enum, Now: time.Now, R2: d.r2,
		Backup: edgevault.BackupOptions{Concurrency: o.concurrency, ComposeAbove: -1}}
	if o.includeSecrets {
		deps.Secrets = devvars.New(a.env.WorkDir)
	}
	e, err := a.embed(tmp, embedOptions{concurrency: o.concurrency, scratch: true, deps: deps})
	if err != nil {
		return nil, failure("backup_create_failed", err)
	}
	defer e.Close()
	units := o
	units.includeStorage, units.resume = false, false
	job, err := a.startBackup(ctx, e, d, units, tmp)
	if err != nil {
		return nil, err
	}
	final, err := a.run(ctx, e, job, "backup")
	if err != nil {
		ce := failure("backup_create_failed", fmt.Errorf("%w; no snapshot was written", err))
		if final != nil && len(final.Errors) > 0 {
			ce.extra = map[string]any{"failed": final.Errors}
		}
		return nil, explain(ce, err)
	}
	res := &snapshotResult{Parent: parentID, Warnings: final.Warnings}
	man, err := backup.ReadManifest(ctx, e.store, final.Archive)
	if err != nil {
		return nil, failure("backup_create_failed", err)
	}
	f, err := os.Open(filepath.Join(tmp, filepath.FromSlash(final.Archive)))
	if err != nil {
		return nil, failure("backup_create_failed", err)
	}
	snap, err := repo.ImportUnits(ctx, f, repository.Snapshot{SourceURL: d.client.BaseURL(), EdgevaultVersion: Version, Server: man.Server})
	_ = f.Close()
	if err != nil {
		return nil, repoFailure(repo.location, err)
	}
	if o.includeStorage {
		debug.FreeOSMemory() // the engine's buffers are garbage now
		if err := a.takeStorage(ctx, repo, d, o, parent, snap, res); err != nil {
			return nil, err
		}
		snap.Parent = parentID
	}
	if res.ID, err = repo.SaveSnapshot(ctx, snap); err != nil {
		return nil, repoFailure(repo.location, err)
	}
	res.Snap, res.Stats = snap, repo.Stats()
	return res, nil
}

// takeStorage adds the storage table to snap.
func (a *app) takeStorage(ctx context.Context, repo *openedRepo, d *deployment, o createOpts, parent, snap *repository.Snapshot, res *snapshotResult) error {
	var src snapshot.Storage = snapshot.AdminStorage{Client: d.client}
	if d.r2 != nil {
		src = snapshot.DirectStorage{DirectStorage: d.r2}
	}
	a.say("Storage: listing, reusing unchanged objects of the previous snapshot\n")
	sr, err := snapshot.TakeStorage(ctx, repo.Repository, parent, src, o.concurrency)
	if err != nil {
		return explain(failure("backup_create_failed", fmt.Errorf("storage: %w; no snapshot was written", err)), err)
	}
	snap.Storage, res.Storage = sr.Table, sr
	if snap.Server == nil {
		snap.Server = &archive.ServerObservations{}
	}
	snap.Server.ContentTypesMasked += sr.Masked
	snap.Server.InternalKeysSkipped += sr.Internal
	if sr.Masked > 0 {
		res.Warnings = append(res.Warnings, backup.MaskedWarning(sr.Masked))
	}
	for _, k := range sr.Missing {
		res.Warnings = append(res.Warnings, fmt.Sprintf("object %q was deleted after the listing; not in the snapshot", k))
	}
	return nil
}

// latestOf is the newest snapshot of source, or none.
func latestOf(ctx context.Context, r *repository.Repository, source string) (repository.ID, *repository.Snapshot, error) {
	all, err := r.ListSnapshots(ctx)
	if err != nil {
		return repository.ID{}, nil, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].SourceURL == source {
			return all[i].ID, all[i].Snapshot, nil
		}
	}
	return repository.ID{}, nil, nil
}

// runCreateSnapshot is `backup create --repo`.
func (a *app) runCreateSnapshot(ctx context.Context, d *deployment, o createOpts, start time.Time) error {
	if o.resume {
		return failure("invalid_arguments", errors.New("--resume does not apply to a repository backup: run it again, unchanged data is not stored twice"))
	}
	repo, created, err := a.openRepo(ctx, &o.repo, o.aws, true)
	if err != nil {
		return err
	}
	defer repo.close()
	if created {
		a.say("Created repository %s (encrypted; keep its passphrase safe)\n", repo.location)
	}
	res, err := a.takeSnapshot(ctx, repo, d, o)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		a.warn("%s", w)
	}
	return a.reportSnapshot(repo, res, time.Since(start))
}

func (a *app) reportSnapshot(repo *openedRepo, res *snapshotResult, took time.Duration) error {
	var dbBytes int64
	for _, u := range res.Snap.Units {
		dbBytes += u.Size
	}
	st := res.Storage
	if a.jsonOut {
		doc := map[string]any{"status": "success", "repository": repo.location, "snapshot": res.ID.String(),
			"units": len(res.Snap.Units), "unitBytes": dbBytes, "objects": res.Snap.Storage.Objects, "objectBytes": res.Snap.Storage.Bytes,
			"reused": st.Reused, "fetched": st.Fetched, "fetchedBytes": st.FetchedBytes,
			"added": res.Stats.Written, "newChunks": res.Stats.ChunksNew, "seconds": took.Seconds(), "warnings": nonNil(res.Warnings)}
		if !res.Parent.IsZero() {
			doc["parent"] = res.Parent.String()
		}
		a.printJSON(doc)
		return nil
	}
	a.say("Snapshot %s saved in %s\n", shortSnap(res.ID), repo.location)
	a.say("  %d units (%s), %d objects (%s): %d reused, %d fetched (%s) in %s\n", len(res.Snap.Units), archive.HumanBytes(dbBytes),
		res.Snap.Storage.Objects, archive.HumanBytes(res.Snap.Storage.Bytes), st.Reused, st.Fetched, archive.HumanBytes(st.FetchedBytes), fmtDuration(took))
	a.say("  added to the repository: %s (%d new chunks)\n", archive.HumanBytes(res.Stats.Written), res.Stats.ChunksNew)
	return nil
}
