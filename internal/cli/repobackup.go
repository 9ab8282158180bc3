package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/secrets/devvars"
)

// snapshotResult is a snapshot written by a backup.
type snapshotResult struct {
	ID       repository.ID
	Snap     *repository.Snapshot
	Parent   repository.ID
	Storage  storageCounts
	Stats    repository.Stats
	Warnings []string
}

// takeSnapshot backs d up into repo with the pipeline in repository mode,
// as the serverless functions do: the engine plans the job (the storage
// listing walked beside the newest snapshot of the same source, whose
// unchanged objects are not read again), each task stores its unit or its
// storage range through a repository writer of its own, and the finish
// step writes the index, the storage table and then the snapshot. An
// interrupted backup leaves no snapshot (only packs a prune removes).
// Staging lives in a scratch directory.
func (a *app) takeSnapshot(ctx context.Context, repo *openedRepo, d *deployment, o createOpts) (*snapshotResult, error) {
	parent, _, err := repo.Latest(ctx, d.client.BaseURL())
	if err != nil {
		return nil, repoFailure(repo.location, err)
	}
	tmp, err := os.MkdirTemp("", "edgevault-snapshot-")
	if err != nil {
		return nil, failure("backup_create_failed", err)
	}
	defer os.RemoveAll(tmp)
	deps := edgevault.Deps{Client: d.client, Enum: d.enum, Now: time.Now, R2: d.r2,
		Backup: edgevault.BackupOptions{Concurrency: o.concurrency, ComposeAbove: -1, Version: Version,
			Repo: func(context.Context) (*repository.Repository, error) { return repo.Repository, nil }}}
	if o.includeSecrets {
		deps.Secrets = devvars.New(a.env.WorkDir)
	}
	e, err := a.embed(tmp, embedOptions{concurrency: o.concurrency, scratch: true, deps: deps})
	if err != nil {
		return nil, failure("backup_create_failed", err)
	}
	defer e.Close()
	o.resume = false
	job, err := a.startBackup(ctx, e, d, o, tmp)
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
	id, err := repository.ParseID(final.Snapshot)
	if err != nil {
		return nil, failure("backup_create_failed", fmt.Errorf("the backup named no snapshot: %w", err))
	}
	snap, err := repo.LoadSnapshot(ctx, id)
	if err != nil {
		return nil, repoFailure(repo.location, err)
	}
	res := &snapshotResult{ID: id, Snap: snap, Parent: parent.ID, Warnings: final.Warnings, Stats: repo.Stats()}
	if sum := final.Summary; sum != nil && o.includeStorage {
		// A storage range counts its objects, the reused ones as skipped,
		// and the bytes it read.
		var unitBytes int64
		for _, u := range snap.Units {
			unitBytes += u.Size
		}
		res.Storage.Reused, res.Storage.Fetched = sum.Skipped, sum.Objects-sum.Skipped
		res.Storage.FetchedBytes = sum.Bytes - unitBytes
	}
	return res, nil
}

// storageCounts say how a snapshot's storage table was taken.
type storageCounts struct {
	// Reused objects took the parent's chunks without a request;
	// Fetched ones were read from the deployment, FetchedBytes in all.
	Reused, Fetched, FetchedBytes int64
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
