package serverless

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/backup"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/cloudflare"
	"github.com/edgevault/edgevault/pkg/edgebase"
	sqsqueue "github.com/edgevault/edgevault/pkg/queue/sqs"
	"github.com/edgevault/edgevault/pkg/secrets/secretsmanager"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Runtime is what a handler takes from its process: the clock and where
// logs and metrics go. Tests pass a fixed clock and their own writers.
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

// base is what every function builds once per cold start.
type base struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Emitter
	now     func() time.Time
	clients *awsconfig.Clients
	store   backup.BlobStore
	jobs    *backup.Jobs
}

func newBase(ctx context.Context, cfg Config, rt Runtime) (*base, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
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
	clients, err := awsconfig.Load(ctx, cfg.AWS)
	if err != nil {
		return nil, err
	}
	store, err := s3store.New(clients.S3(), cfg.Bucket, "", s3store.Options{KMSKeyID: cfg.KMSKeyARN})
	if err != nil {
		return nil, err
	}
	jobs, err := backup.NewJobs(store, cfg.StagingPrefix, cfg.ArchivePrefix, rt.Now)
	if err != nil {
		return nil, err
	}
	return &base{
		cfg: cfg, log: log, now: rt.Now, clients: clients, store: store, jobs: jobs,
		metrics: metrics.New(rt.Metrics, cfg.MetricsNamespace, rt.Now),
	}, nil
}

func (b *base) queue(url string) (*sqsqueue.Queue, error) {
	return sqsqueue.New(b.clients.SQS(), url, sqsqueue.Options{})
}

// credentials are the secret values a function reads at cold start.
type credentials struct {
	serviceKey      sensitive.String
	cloudflareToken sensitive.String
}

func (b *base) readCredentials(ctx context.Context) (credentials, error) {
	var c credentials
	sm, err := secretsmanager.New(b.clients.SecretsManager())
	if err != nil {
		return c, err
	}
	if c.serviceKey, err = sm.GetString(ctx, b.cfg.ServiceKeySecret); err != nil {
		return c, fmt.Errorf("serverless: the EdgeBase service key: %w", err)
	}
	if b.cfg.CloudflareAccount != "" && b.cfg.CloudflareSecret != "" {
		if c.cloudflareToken, err = sm.GetString(ctx, b.cfg.CloudflareSecret); err != nil {
			return c, fmt.Errorf("serverless: the Cloudflare API token: %w", err)
		}
	}
	return c, nil
}

// edgeBase connects to the target deployment and sets up DO enumeration
// (Edge mode through the Cloudflare API when an account is configured).
func (b *base) edgeBase(creds credentials) (*edgebase.Client, *backup.Enumerator, error) {
	client, err := edgebase.New(edgebase.Options{BaseURL: b.cfg.EdgeBaseURL, ServiceKey: creds.serviceKey, Logger: b.log})
	if err != nil {
		return nil, nil, fmt.Errorf("serverless: %w", err)
	}
	enum := &backup.Enumerator{Client: client, Instances: b.cfg.Instances, SkipInstances: b.cfg.SkipInstances}
	if b.cfg.CloudflareAccount != "" && !creds.cloudflareToken.IsZero() {
		cf, err := cloudflare.New(cloudflare.Options{BaseURL: b.cfg.CloudflareAPIURL, AccountID: b.cfg.CloudflareAccount,
			Token: creds.cloudflareToken, Logger: b.log})
		if err != nil {
			return nil, nil, fmt.Errorf("serverless: %w", err)
		}
		enum.Edge = backup.CloudflareEdge(cf, "")
	}
	return client, enum, nil
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

// retryDelay is the visibility delay before attempt+1 of a failed message.
func (b *base) retryDelay(attempt int) time.Duration {
	d := b.cfg.RetryDelay << min(max(attempt-1, 0), 16)
	return min(d, MaxRetryDelay)
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

// Main is the body of every function's main: it reads fn's Config from the
// environment, builds the handler once per cold start and serves handle(h)
// with lambda.Start. An init error is logged as JSON and exits 1; Lambda
// records the failed init and retries it on the next invocation.
func Main[H any](fn string, build func(context.Context, Config, Runtime) (H, error), handle func(H) any) {
	ctx := context.Background()
	cfg, err := ConfigFromEnv(fn, os.Getenv)
	if err == nil {
		var h H
		if h, err = build(ctx, cfg, LambdaRuntime()); err == nil {
			lambda.Start(handle(h))
			return
		}
	}
	slog.New(slog.NewJSONHandler(os.Stdout, nil)).Error(fn+": init failed", "function", fn, "err", err)
	os.Exit(1)
}
