package serverless

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/repository"
)

// RepositoryIndexMaxAge is how long a function that keeps the repository
// open between invocations uses its loaded index before reading it again.
// A prune deletes a pack only a grace period after marking it, so a
// writer must never reuse a chunk from an index older than that: the
// grace period has to exceed the longest backup plus this age.
const RepositoryIndexMaxAge = 10 * time.Minute

// repoOpener opens the repository of repository mode once per cold start
// and keeps it: the scheduler creates it on first use; every function
// reads the index again once it is older than RepositoryIndexMaxAge (the
// planner and the assembler also reload it for each job).
type repoOpener struct {
	store  pipeline.BlobStore
	creds  repository.Credentials
	create bool
	now    func() time.Time

	mu     sync.Mutex
	repo   *repository.Repository
	loaded time.Time
}

// newRepoOpener is the opener of the functions that run backups in
// repository mode, nil outside it.
func newRepoOpener(cfg Config, d Deps, now func() time.Time) (*repoOpener, error) {
	if cfg.RepositoryPrefix == "" || d.Tasks == nil {
		return nil, nil
	}
	if d.Repository == nil || d.RepositoryKey == nil {
		return nil, fmt.Errorf("%w: repository mode (%s=%s) needs the repository's store and key", ErrConfig, lambdaenv.RepositoryPrefix, cfg.RepositoryPrefix)
	}
	return &repoOpener{store: d.Repository, creds: repository.Credentials{Wrapper: d.RepositoryKey},
		create: cfg.Function == lambdaenv.Scheduler, now: now}, nil
}

// open returns the open repository.
func (o *repoOpener) open(ctx context.Context) (*repository.Repository, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.repo != nil {
		if o.now().Sub(o.loaded) > RepositoryIndexMaxAge {
			if err := o.repo.Reload(ctx); err != nil {
				return nil, fmt.Errorf("serverless: reading the repository index: %w", err)
			}
			o.loaded = o.now()
		}
		return o.repo, nil
	}
	var r *repository.Repository
	var err error
	if o.create { // a concurrent first backup may create it too
		r, _, err = repository.OpenOrInit(ctx, o.store, o.creds, repository.Options{})
	} else {
		r, err = repository.OpenWith(ctx, o.store, o.creds)
	}
	if err != nil {
		if errors.Is(err, repository.ErrWrongKey) || errors.Is(err, repository.ErrNotRepository) || errors.Is(err, repository.ErrVersion) {
			err = pipeline.Permanent(err)
		}
		return nil, fmt.Errorf("serverless: opening the repository: %w", err)
	}
	o.repo, o.loaded = r, o.now()
	return r, nil
}

// backupRepo is the backup's repository opener, nil outside repository
// mode.
func (o *repoOpener) backupRepo() backup.RepositoryOpener {
	if o == nil {
		return nil
	}
	return o.open
}

// buildVersion is the edgevault version snapshots record.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}
