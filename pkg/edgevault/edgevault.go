package edgevault

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/restore"
	"github.com/edgevault/edgevault/pkg/secrets"
)

// Deps is what an engine is built from. The CLI fills it with a local
// directory and an in-process queue, each Lambda function with S3, SQS and
// Secrets Manager; a function that never talks to EdgeBase (the
// assembler) leaves Client nil.
type Deps struct {
	Store pipeline.BlobStore
	// Staging and Archives are key prefixes of Store ("" or ending in '/').
	Staging, Archives string
	// Tasks carries task messages; Control check messages (nil when the
	// caller drives checks itself, as the embedded runner does).
	Tasks, Control pipeline.Queue
	Client         *edgebase.Client
	Enum           *discovery.Enumerator
	// Secrets is where --include-secrets reads and a restore writes
	// EdgeBase secrets (nil: none are available).
	Secrets secrets.Store
	// R2, when set, moves storage through R2 direct (pkg/r2) instead of
	// the admin API: backups list and read, restores write and wipe.
	R2 StorageDirect
	// OpenArchive resolves the archive a restore job names.
	OpenArchive func(ctx context.Context, name string) (restore.Source, error)
	// Source overrides the archive "source" derived from the URL.
	Source  string
	Now     func() time.Time
	Log     *slog.Logger
	Engine  pipeline.Options
	Backup  BackupOptions
	Restore RestoreOptions
	// NewID makes the id of a job started without one.
	NewID func(kind events.JobKind, now time.Time) string
}

// StorageDirect is what both job kinds need of R2 direct (*r2.Store).
type StorageDirect interface {
	backup.DirectStorage
	restore.DirectStorage
}

// BackupOptions tune backup jobs.
type BackupOptions struct {
	// Concurrency bounds object downloads inside one storage range.
	Concurrency int
	// RangeKeys and RangeBytes close a storage page range.
	RangeKeys  int
	RangeBytes int64
	// Spool is shared by every storage task of the process (nil: a
	// default spool in the system temp directory).
	Spool *backup.Spool
	// ComposeAbove joins storage members server-side above this size
	// (negative: never).
	ComposeAbove int64
	// Sealer, when set, chains and signs each manifest before it is
	// written (provenance.Sealer).
	Sealer backup.ManifestSealer
	// Repo, when set, makes backups repository backups: each ends in a
	// snapshot of this repository instead of an archive (Version is the
	// edgevault version snapshots record).
	Repo    backup.RepositoryOpener
	Version string
}

// RestoreOptions tune restore jobs.
type RestoreOptions struct {
	Concurrency restore.Concurrency
	ChunkBytes  int64
	DORetry     edgebase.RetryPolicy
	RangeKeys   int
}

// New builds the engine with both job kinds registered: the one
// composition root of the CLI and every Lambda function.
func New(d Deps) (*pipeline.Engine, error) {
	if d.Store == nil || d.Tasks == nil {
		return nil, errors.New("edgevault: a store and a task queue are required")
	}
	jobs, err := pipeline.NewJobs(d.Store, d.Staging, d.Archives, d.Now)
	if err != nil {
		return nil, err
	}
	bt := &backup.Tasks{Jobs: jobs, Client: d.Client, Secrets: d.Secrets, Concurrency: d.Backup.Concurrency, Spool: d.Backup.Spool, Repo: d.Backup.Repo}
	rt := &restore.Tasks{Jobs: jobs, Client: d.Client, Secrets: d.Secrets, Concurrency: d.Restore.Concurrency,
		ChunkBytes: d.Restore.ChunkBytes, DORetry: d.Restore.DORetry}
	planner := &backup.Planner{Jobs: jobs, Client: d.Client, Enum: d.Enum,
		RangeKeys: d.Backup.RangeKeys, RangeBytes: d.Backup.RangeBytes, Repo: d.Backup.Repo, Log: d.Log}
	if d.R2 != nil {
		bt.Direct, rt.Direct, planner.Direct = d.R2, d.R2, d.R2
	}
	target := ""
	if d.Client != nil {
		target = d.Client.BaseURL()
	}
	source := d.Source
	if source == "" {
		source = backup.SourceFor(target, d.Enum != nil && d.Enum.Edge != nil)
	}
	return pipeline.New(pipeline.Config{
		Jobs: jobs, Tasks: d.Tasks, Control: d.Control, Options: d.Engine,
		Target: target, Source: source, NewID: d.NewID, Log: d.Log,
		Domains: map[events.JobKind]pipeline.Domain{
			events.KindBackup: {
				Planner:  planner,
				Handlers: bt.Handlers(),
				Finisher: &backup.Assembler{Jobs: jobs, ComposeAbove: d.Backup.ComposeAbove, Log: d.Log, Sealer: d.Backup.Sealer,
					Repo: d.Backup.Repo, Version: d.Backup.Version},
			},
			events.KindRestore: {
				Planner: &restore.Planner{Jobs: jobs, Client: d.Client, Enum: d.Enum, Open: d.OpenArchive,
					RangeKeys: d.Restore.RangeKeys, DirectWipe: d.R2 != nil, Log: d.Log},
				Handlers: rt.Handlers(),
			},
		},
	})
}
