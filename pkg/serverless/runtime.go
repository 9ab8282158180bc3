package serverless

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/notify"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/restore"
	"github.com/edgevault/edgevault/pkg/secrets"
)

// Runtime is what a handler takes from its process: the clock and where
// logs and metrics go. Tests pass their own clock and writers.
type Runtime struct {
	Now     func() time.Time
	Logs    io.Writer // JSON log lines
	Metrics io.Writer // EMF lines
}

// LambdaRuntime writes logs and metrics to stdout, where Lambda collects
// both; one lock keeps their lines whole when goroutines write at once.
func LambdaRuntime() Runtime {
	w := &lockedWriter{w: os.Stdout}
	return Runtime{Now: time.Now, Logs: w, Metrics: w}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Deps are the ports and clients the handlers run on. Main builds them
// from AWS (S3, SQS, Secrets Manager, Lambda) for each function; tests
// build them from a directory store, in-memory queues and the emulators,
// so every handler's partial-batch, deadline and retry logic runs in
// `go test` too. A function gets only what it uses.
type Deps struct {
	Store pipeline.BlobStore
	// Tasks and Control are the task and check queues.
	Tasks, Control pipeline.Queue
	EdgeBase       *edgebase.Client
	Enum           *discovery.Enumerator
	// R2 is R2 direct for storage (scheduler, worker); nil: the admin API.
	R2 edgevault.StorageDirect
	// Secrets is the store of the deployment's EdgeBase secrets (worker).
	Secrets secrets.Store
	// Invoker hands start requests to the scheduler (api).
	Invoker Invoker
	// DR is the disaster-recovery bucket (drcopy).
	DR pipeline.BlobStore
	// Notify is the webhook told when a job ends (scheduler, assembler);
	// nil for none.
	Notify *notify.Webhook
	// Scratch is the drill's scratch deployment and ScratchEnum how its
	// DOs are listed (nil: from its config, without dynamic instances).
	Scratch     *edgebase.Client
	ScratchEnum *discovery.Enumerator
	// Signer signs manifests (assembler) and drill reports (drill); nil
	// leaves them unsigned.
	Signer provenance.Signer
	// Repository is the repository's store (the backup bucket under
	// RepositoryPrefix) and RepositoryKey the KMS key wrapper that opens
	// it (maintain; scheduler, worker and assembler back up into it);
	// nil outside repository mode.
	Repository    pipeline.BlobStore
	RepositoryKey repository.KeyWrapper
}

// base is what every function builds once per cold start.
type base struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Emitter
	now     func() time.Time
	store   pipeline.BlobStore
	jobs    *pipeline.Jobs
	// engine is nil in functions that run no jobs (api, drcopy).
	engine *pipeline.Engine
	// notifier is nil without a webhook.
	notifier *notify.Notifier
}

func newBase(cfg Config, rt Runtime, d Deps) (*base, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, errors.New("serverless: no blob store")
	}
	if rt.Now == nil {
		rt.Now = time.Now
	}
	if rt.Logs == nil {
		rt.Logs = io.Discard
	}
	if rt.Metrics == nil {
		rt.Metrics = io.Discard
	}
	log := slog.New(slog.NewJSONHandler(rt.Logs, &slog.HandlerOptions{Level: cfg.LogLevel})).With("function", cfg.Function)
	b := &base{cfg: cfg, log: log, now: rt.Now, store: d.Store, metrics: metrics.New(rt.Metrics, cfg.MetricsNamespace, rt.Now)}
	var err error
	if b.jobs, err = pipeline.NewJobs(d.Store, cfg.StagingPrefix, cfg.ArchivePrefix, rt.Now); err != nil {
		return nil, err
	}
	if d.Notify != nil {
		b.notifier = &notify.Notifier{Store: d.Store, Prefix: cfg.StagingPrefix, Hook: d.Notify, Now: rt.Now}
	}
	if d.Tasks == nil {
		return b, nil
	}
	repo, err := newRepoOpener(cfg, d, rt.Now)
	if err != nil {
		return nil, err
	}
	b.engine, err = edgevault.New(edgevault.Deps{
		Store: d.Store, Staging: cfg.StagingPrefix, Archives: cfg.ArchivePrefix, Tasks: d.Tasks, Control: d.Control,
		Client: d.EdgeBase, Enum: d.Enum, R2: d.R2, Secrets: d.Secrets, OpenArchive: b.openArchive, Now: rt.Now, Log: log,
		Engine: cfg.engineOptions(),
		Backup: edgevault.BackupOptions{Concurrency: cfg.Concurrency, ComposeAbove: cfg.ComposeAbove,
			Spool: backup.NewSpool(cfg.SpoolDir, cfg.SpoolBytes, 0), Sealer: sealer(cfg, d),
			Repo: repo.backupRepo(), Version: buildVersion()},
		Restore: edgevault.RestoreOptions{Concurrency: restore.Concurrency{DOs: cfg.Concurrency, Namespaces: cfg.Concurrency, Objects: cfg.Concurrency}},
		NewID:   pipeline.NewJobID,
	})
	return b, err
}

// sealer chains and signs the manifests the assembler writes, when the
// function has a signing key; without one they are written as before.
func sealer(cfg Config, d Deps) backup.ManifestSealer {
	if d.Signer == nil {
		return nil
	}
	return &provenance.Sealer{Store: d.Store, Archives: cfg.ArchivePrefix, Signer: d.Signer}
}

// engineOptions are the engine settings of the serverless runtime.
func (c Config) engineOptions() pipeline.Options {
	o := pipeline.Options{
		MaxAttempts: c.MaxAttempts, RecheckDelay: c.RecheckDelay, JobTimeout: c.JobTimeout,
		Backoff: pipeline.Backoff{Base: c.RetryDelay, Limit: MaxRetryDelay},
		// A sender or assembler is presumed dead once a function could
		// no longer be running it.
		DispatchLease: 15*time.Minute + c.DeadlineMargin,
		FinishLease:   5 * time.Minute,
		LeaseTimeout:  c.Leases.Task, PlanLease: c.Leases.Plan, StallAfter: c.Leases.StallAfter,
	}
	if c.Leases.Dispatch > 0 {
		o.DispatchLease = c.Leases.Dispatch
	}
	if c.Leases.Finish > 0 {
		o.FinishLease = c.Leases.Finish
	}
	return o
}

// invocation returns the logger of one invocation, carrying its request id.
func (b *base) invocation(ctx context.Context) (*slog.Logger, string) {
	id := requestID(ctx)
	return b.log.With("requestId", id), id
}

func requestID(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		return lc.AwsRequestID
	}
	return ""
}

// softDeadline returns a context that ends margin before ctx's deadline
// (at most a quarter of the time left), so the handler can still record
// what it did and answer before Lambda stops the process.
func softDeadline(ctx context.Context, margin time.Duration) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	if left := time.Until(dl); margin > left/4 {
		margin = left / 4
	}
	return context.WithDeadline(ctx, dl.Add(-margin))
}

// receiveCount is an SQS record's ApproximateReceiveCount (1 when absent).
func receiveCount(attrs map[string]string) int {
	n, err := strconv.Atoi(attrs["ApproximateReceiveCount"])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// shortHash is a stable, key-safe digest of s.
func shortHash(s string, n int) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:n]
}

func (b *base) emit(d metrics.Doc) {
	d.Dimensions = append([]metrics.Dimension{{Name: "Function", Value: b.cfg.Function}}, d.Dimensions...)
	if err := b.metrics.Emit(d); err != nil {
		b.log.Warn("could not emit metrics", "err", err)
	}
}
