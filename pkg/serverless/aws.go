package serverless

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"

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
		if err := connectEdgeBase(ctx, cfg, clients, &d); err != nil {
			return cfg, d, err
		}
	}
	if cfg.EdgeBaseSecrets != "" && reads(lambdaenv.EdgeBaseSecrets) {
		if d.Secrets, err = secretsmanager.NewStore(clients.SecretsManager(), cfg.EdgeBaseSecrets); err != nil {
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
	return cfg, d, nil
}

// connectEdgeBase reads the service key (and the Cloudflare token in Edge
// mode) and connects the target deployment with its DO enumeration.
func connectEdgeBase(ctx context.Context, cfg Config, clients *awsconfig.Clients, d *Deps) error {
	sm, err := secretsmanager.New(clients.SecretsManager())
	if err != nil {
		return err
	}
	key, err := sm.GetString(ctx, cfg.ServiceKeySecret)
	if err != nil {
		return fmt.Errorf("serverless: the EdgeBase service key: %w", err)
	}
	var token sensitive.String
	if cfg.CloudflareAccount != "" && cfg.CloudflareSecret != "" {
		if token, err = sm.GetString(ctx, cfg.CloudflareSecret); err != nil {
			return fmt.Errorf("serverless: the Cloudflare API token: %w", err)
		}
	}
	d.EdgeBase, d.Enum, err = ConnectEdgeBase(cfg, key, token)
	return err
}

// ConnectEdgeBase connects the target deployment and sets up DO
// enumeration (Edge mode through the Cloudflare API when an account and a
// token are given).
func ConnectEdgeBase(cfg Config, serviceKey, cloudflareToken sensitive.String) (*edgebase.Client, *discovery.Enumerator, error) {
	client, err := edgebase.New(edgebase.Options{BaseURL: cfg.EdgeBaseURL, ServiceKey: serviceKey})
	if err != nil {
		return nil, nil, fmt.Errorf("serverless: %w", err)
	}
	enum := &discovery.Enumerator{Client: client, Instances: cfg.Instances, SkipInstances: cfg.SkipInstances}
	if cfg.CloudflareAccount != "" && !cloudflareToken.IsZero() {
		cf, err := cloudflare.New(cloudflare.Options{BaseURL: cfg.CloudflareAPIURL, AccountID: cfg.CloudflareAccount, Token: cloudflareToken})
		if err != nil {
			return nil, nil, fmt.Errorf("serverless: %w", err)
		}
		enum.Edge = discovery.CloudflareEdge(cf, "")
	}
	return client, enum, nil
}
