package serverless

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/lambdainvoke"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/cloudflare"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	sqsqueue "github.com/edgevault/edgevault/pkg/queue/sqs"
	"github.com/edgevault/edgevault/pkg/secrets/secretsmanager"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Invoker starts a job without waiting for its planning: the api function
// hands the request to the scheduler function.
type Invoker interface {
	Start(ctx context.Context, req events.StartRequest) error
}

// InvokerFunc adapts a function (an in-process scheduler in tests).
type InvokerFunc func(ctx context.Context, req events.StartRequest) error

// Start implements Invoker.
func (f InvokerFunc) Start(ctx context.Context, req events.StartRequest) error { return f(ctx, req) }

// Main is the body of every function's main: it reads fn's Config from the
// environment, connects its AWS dependencies (AWSDeps), builds the handler
// once per cold start and serves handle(h) with lambda.Start. An init
// error is logged as JSON and exits 1; Lambda records the failed init and
// retries it on the next invocation.
func Main[H any](fn string, build func(Config, Runtime, Deps) (H, error), handle func(H) any) {
	ctx := context.Background()
	cfg, err := ConfigFromEnv(fn, os.Getenv)
	if err == nil {
		var d Deps
		if cfg, d, err = AWSDeps(ctx, cfg); err == nil {
			var h H
			if h, err = build(cfg, LambdaRuntime(), d); err == nil {
				lambda.Start(handle(h))
				return
			}
		}
	}
	slog.New(slog.NewJSONHandler(os.Stdout, nil)).Error(fn+": init failed", "function", fn, "err", err)
	os.Exit(1)
}

// AWSDeps connects what cfg's function uses: the backup bucket, the
// queues it reads or writes, the EdgeBase and Cloudflare credentials from
// Secrets Manager, the EdgeBase secrets store, the scheduler invoker, the
// DR bucket. The worker's attempts follow the task queue's redrive policy.
func AWSDeps(ctx context.Context, cfg Config) (Config, Deps, error) {
	var d Deps
	if err := cfg.Validate(); err != nil {
		return cfg, d, err
	}
	clients, err := awsconfig.Load(ctx, cfg.AWS)
	if err != nil {
		return cfg, d, err
	}
	if d.Store, err = s3store.New(clients.S3(), cfg.Bucket, "", s3store.Options{KMSKeyID: cfg.KMSKeyARN}); err != nil {
		return cfg, d, err
	}
	reads := func(name string) bool { return slices.Contains(lambdaenv.Reads[cfg.Function], name) }
	if reads(lambdaenv.TaskQueueURL) {
		tasks, err := sqsqueue.New(clients.SQS(), cfg.TaskQueueURL, sqsqueue.Options{})
		if err != nil {
			return cfg, d, err
		}
		d.Tasks = tasks
		if cfg.Function == lambdaenv.Worker {
			if n, err := tasks.MaxReceiveCount(ctx); err != nil {
				return cfg, d, err
			} else if n > 0 {
				cfg.MaxAttempts = n
			}
		}
	}
	if reads(lambdaenv.ControlQueueURL) {
		if d.Control, err = sqsqueue.New(clients.SQS(), cfg.ControlQueueURL, sqsqueue.Options{}); err != nil {
			return cfg, d, err
		}
	}
	if reads(lambdaenv.EdgeBaseURL) {
		sm, err := secretsmanager.New(clients.SecretsManager())
		if err != nil {
			return cfg, d, err
		}
		if err := connectEdgeBase(ctx, cfg, sm, time.Now, &d); err != nil {
			return cfg, d, err
		}
		if d.R2, err = ConnectR2(ctx, cfg, sm.GetString); err != nil {
			return cfg, d, err
		}
	}
	if cfg.EdgeBaseSecrets != "" && reads(lambdaenv.EdgeBaseSecrets) {
		if d.Secrets, err = secretsmanager.NewStore(clients.SecretsManager(), cfg.EdgeBaseSecrets); err != nil {
			return cfg, d, err
		}
	}
	if cfg.NotifyURL != "" && reads(lambdaenv.NotifyURL) {
		if d.Notify, err = notifyWebhook(ctx, cfg, clients); err != nil {
			return cfg, d, err
		}
	}
	if reads(lambdaenv.SchedulerFunction) {
		if d.Invoker, err = lambdainvoke.New(clients.Lambda(cfg.LambdaEndpoint), cfg.SchedulerFunction); err != nil {
			return cfg, d, err
		}
	}
	if reads(lambdaenv.DRBucket) {
		// The DR bucket's own region: the SDK does not follow S3's 301,
		// and the assume-role's STS is regional too.
		drClients := clients.InRegion(cfg.DRRegion)
		dst := drClients.S3()
		if cfg.DRRoleARN != "" {
			dst = drClients.S3AsRole(cfg.DRRoleARN, "edgevault-drcopy")
		}
		if d.DR, err = s3store.New(dst, cfg.DRBucket, "", s3store.Options{KMSKeyID: cfg.DRKMSKeyARN, PartSize: DRPartSize}); err != nil {
			return cfg, d, err
		}
	}
	if err := connectDrill(ctx, cfg, clients, &d); err != nil {
		return cfg, d, err
	}
	if err := connectBackupRepository(cfg, clients, &d); err != nil {
		return cfg, d, err
	}
	return cfg, d, nil
}

// connectEdgeBase connects the target deployment with the service key
// (and, in Edge mode, the Cloudflare token) of Secrets Manager: read at
// cold start (a function without its key refuses to start), then again
// after cfg.SecretTTL and when EdgeBase or Cloudflare refuse the value in
// use (secretsmanager.Credential), so a rotated secret reaches warm
// functions without a redeploy.
func connectEdgeBase(ctx context.Context, cfg Config, sm *secretsmanager.Manager, now func() time.Time, d *Deps) error {
	key := sm.Credential(cfg.ServiceKeySecret, cfg.SecretTTL, now)
	if _, err := key.Get(ctx); err != nil {
		return fmt.Errorf("serverless: the EdgeBase service key: %w", err)
	}
	var token Credential
	if cfg.CloudflareAccount != "" && cfg.CloudflareSecret != "" {
		t := sm.Credential(cfg.CloudflareSecret, cfg.SecretTTL, now)
		if _, err := t.Get(ctx); err != nil {
			return fmt.Errorf("serverless: the Cloudflare API token: %w", err)
		}
		token = t
	}
	var err error
	d.EdgeBase, d.Enum, err = ConnectEdgeBaseWith(cfg, key, token)
	return err
}

// Credential is a secret value that may change while a function is warm
// (secretsmanager.Credential): Get returns the value to use, Refresh is
// told that a server refused one and returns the current value.
type Credential interface {
	Get(ctx context.Context) (sensitive.String, error)
	Refresh(ctx context.Context, refused sensitive.String) (sensitive.String, error)
}

// fixed is a Credential that never changes.
type fixed sensitive.String

func (f fixed) Get(context.Context) (sensitive.String, error) { return sensitive.String(f), nil }
func (f fixed) Refresh(context.Context, sensitive.String) (sensitive.String, error) {
	return sensitive.String(f), nil
}

// ConnectEdgeBase connects the target deployment and sets up DO
// enumeration (Edge mode through the Cloudflare API when an account and a
// token are given) with fixed credentials.
func ConnectEdgeBase(cfg Config, serviceKey, cloudflareToken sensitive.String) (*edgebase.Client, *discovery.Enumerator, error) {
	var token Credential
	if !cloudflareToken.IsZero() {
		token = fixed(cloudflareToken)
	}
	return ConnectEdgeBaseWith(cfg, fixed(serviceKey), token)
}

// ConnectEdgeBaseWith is ConnectEdgeBase with credentials that are asked
// for on every request (EdgeBase) or listing (Cloudflare), and read again
// once when the server refuses them. token nil: no Edge mode.
func ConnectEdgeBaseWith(cfg Config, serviceKey, cloudflareToken Credential) (*edgebase.Client, *discovery.Enumerator, error) {
	client, err := edgebase.New(edgebase.Options{BaseURL: cfg.EdgeBaseURL, ServiceKeyFunc: serviceKey.Get, RefreshServiceKey: serviceKey.Refresh})
	if err != nil {
		return nil, nil, fmt.Errorf("serverless: %w", err)
	}
	enum := &discovery.Enumerator{Client: client, Instances: cfg.Instances, SkipInstances: cfg.SkipInstances}
	if cfg.CloudflareAccount != "" && cloudflareToken != nil {
		limiter, err := cloudflare.NewLimiter(cloudflare.LimiterConfig{})
		if err != nil {
			return nil, nil, fmt.Errorf("serverless: %w", err)
		}
		e := &cloudflareEdge{cfg: cfg, token: cloudflareToken, limiter: limiter}
		// The options are checked now, as a fixed token's were.
		tok, err := cloudflareToken.Get(context.Background())
		if err == nil {
			_, err = e.client(tok)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("serverless: %w", err)
		}
		enum.Edge = e
	}
	return client, enum, nil
}

// cloudflareEdge lists DatabaseDOs through the Cloudflare API with the
// current token: a client per listing (they share one rate limiter), and
// one more try with a token read again when the API refuses the one in
// use before it reported any object.
type cloudflareEdge struct {
	cfg     Config
	token   Credential
	limiter *cloudflare.Limiter
}

func (e *cloudflareEdge) client(token sensitive.String) (*cloudflare.Client, error) {
	return cloudflare.New(cloudflare.Options{BaseURL: e.cfg.CloudflareAPIURL, AccountID: e.cfg.CloudflareAccount, Token: token, Limiter: e.limiter})
}

// DatabaseDOIDs implements discovery.EdgeLister.
func (e *cloudflareEdge) DatabaseDOIDs(ctx context.Context, fn func(hexID string) error) (int, error) {
	tok, err := e.token.Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("serverless: the Cloudflare API token: %w", err)
	}
	n, reported, err := e.list(ctx, tok, fn)
	if err != nil && reported == 0 && (errors.Is(err, cloudflare.ErrUnauthorized) || errors.Is(err, cloudflare.ErrForbidden)) {
		if nt, rerr := e.token.Refresh(ctx, tok); rerr == nil && !nt.IsZero() && nt.Reveal() != tok.Reveal() {
			n, _, err = e.list(ctx, nt, fn)
		}
	}
	return n, err
}

func (e *cloudflareEdge) list(ctx context.Context, token sensitive.String, fn func(string) error) (int, int, error) {
	c, err := e.client(token)
	if err != nil {
		return 0, 0, err
	}
	reported := 0
	n, err := discovery.CloudflareEdge(c, "").DatabaseDOIDs(ctx, func(id string) error {
		reported++
		return fn(id)
	})
	return n, reported, err
}
