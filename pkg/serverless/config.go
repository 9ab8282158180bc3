package serverless

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/repository"
)

// Defaults of Config.
const (
	DefaultStagingPrefix = "jobs/"
	DefaultArchivePrefix = "backups/"
	DefaultConcurrency   = 10
	DefaultMaxAttempts   = 3
	// DefaultRecheckDelay spaces the assembler's checks of a running job.
	// Each check lists the job's task statuses, so it is a trade between
	// how soon a finished job is assembled and S3 requests per job.
	DefaultRecheckDelay = 20 * time.Second
	// DefaultComposeAbove is where the assembler stops streaming the
	// storage members through itself and joins them server-side with
	// UploadPartCopy. Below it the archive gets a whole-file SHA-256 and
	// streams in well under a minute; above it the assembler's time no
	// longer grows with the archive (see the measurements in test/e2e).
	DefaultComposeAbove = 1 << 30
	// DefaultDeadlineMargin is how long before the Lambda deadline a
	// handler stops work, so statuses, visibility changes and aborted
	// multipart uploads still get done.
	DefaultDeadlineMargin = 20 * time.Second
	// DefaultJobTimeout fails a job that is still not finished after this
	// long; the stack expires staging objects after a day, so a job older
	// than that could never be assembled anyway.
	DefaultJobTimeout = 20 * time.Hour
	// DefaultBatchConcurrency: how many records of one SQS batch a worker
	// runs at once. At least the stack's batch size, so no record waits
	// behind another and reaches the deadline unstarted.
	DefaultBatchConcurrency = 10
	// DefaultRetryDelay is the first redelivery delay of a failed task or
	// check (doubled per attempt, capped at MaxRetryDelay). Without it a
	// failed message would wait out the queue's whole visibility timeout.
	DefaultRetryDelay = 10 * time.Second
	MaxRetryDelay     = 5 * time.Minute
	// DefaultSecretTTL: a rotated service key or Cloudflare token reaches
	// warm functions within this time (at once where the old one is
	// refused).
	DefaultSecretTTL = 10 * time.Minute
	MaxSecretTTL     = 15 * time.Minute
	DefaultListLimit = 20
	MaxListLimit     = 100
	// DefaultPruneGrace exceeds DefaultJobTimeout: a pack a running job
	// wrote (not yet in any index) is never deleted before the job ends.
	DefaultPruneGrace = 48 * time.Hour
)

// Config is what a function reads from its environment (pkg/lambdaenv
// names the variables), with defaults, plus tuning that has no variable.
type Config struct {
	// Function is the lambdaenv function name; it decides what Validate
	// requires.
	Function string

	Bucket        string
	StagingPrefix string
	ArchivePrefix string
	KMSKeyARN     string

	TaskQueueURL      string
	ControlQueueURL   string
	SchedulerFunction string

	EdgeBaseURL       string
	ServiceKeySecret  string // Secrets Manager id; the value is read at cold start, then again after SecretTTL
	CloudflareAccount string
	CloudflareSecret  string
	// R2Endpoint, R2Bucket and R2Secret move storage through R2 direct
	// (pkg/r2) when R2Bucket is set; R2Secret names the credentials.
	R2Endpoint, R2Bucket, R2Secret string
	// Instances are dynamic DB instances ("ns:id") the scheduler backs up
	// besides those Edge mode lists; SkipInstances accepts a backup that
	// leaves out a dynamic block nothing can list (backup.Enumerator).
	Instances       []string
	SkipInstances   bool
	EdgeBaseSecrets string
	// NotifyURL is the webhook told when a job ends ("" = none); the
	// HMAC secret it is signed with is in Secrets Manager (NotifySecret).
	NotifyURL    string
	NotifySecret string
	Concurrency  int
	// SpoolDir and SpoolBytes are where the worker keeps downloaded
	// objects that wait for their turn in a storage member, and the disk
	// budget all its tasks share there ("" = the system temp directory).
	SpoolDir   string
	SpoolBytes int64
	// MaxAttempts is the deliveries a task gets before it is recorded as
	// failed. It must equal the task queue's maxReceiveCount, or a task
	// dead-lettered before its last attempt would leave its job running,
	// so NewWorker reads it from the queue's redrive policy; this is the
	// value for a queue without one.
	MaxAttempts int

	DRBucket    string
	DRRoleARN   string
	DRKMSKeyARN string
	// DRRegion is the region of the DR bucket and key ("" = the
	// function's own region).
	DRRegion string
	// APIAllowSecrets lets API callers ask for secrets.
	APIAllowSecrets bool

	// DrillURL and DrillKeySecret are the drill's scratch deployment and
	// the Secrets Manager id of its service key; SigningKeyARN the KMS key
	// that signs manifests and drill reports ("" = unsigned). DrillWorkDir
	// is where the drill unpacks the archive ("" = the system temp
	// directory) and DrillMaxBytes the largest archive it takes there.
	DrillURL       string
	DrillKeySecret string
	SigningKeyARN  string
	DrillWorkDir   string
	DrillMaxBytes  int64

	// RepositoryPrefix turns repository mode on: backups become snapshots
	// of the repository in Bucket under this prefix ("" = v1.1 archives).
	// RepositoryKMSKey is the KMS key that wraps the repository key.
	RepositoryPrefix string
	RepositoryKMSKey string
	// Retention is maintain's forget policy; PruneGrace how long a pack
	// stays marked before prune deletes it (longer than JobTimeout, so a
	// running job's packs are never deleted under it).
	Retention  repository.Policy
	PruneGrace time.Duration

	MetricsNamespace string
	LogLevel         slog.Level

	// AWS carries the test-only endpoint override and path style.
	AWS awsconfig.Config
	// LambdaEndpoint and CloudflareAPIURL are test-only overrides.
	LambdaEndpoint   string
	CloudflareAPIURL string

	RecheckDelay     time.Duration
	ComposeAbove     int64
	DeadlineMargin   time.Duration
	JobTimeout       time.Duration
	BatchConcurrency int
	RetryDelay       time.Duration
	// VerifyReadBack makes drcopy verify a copy by reading it back even
	// when S3 reports a checksum (tests; buckets without checksums).
	VerifyReadBack bool
	// Leases overrides the engine's leases and watchdog threshold (tests);
	// zero values derive them from the function timeouts.
	Leases Leases
	// SecretTTL is how long the service key and the Cloudflare token are
	// used before Secrets Manager is asked again (at most 15 minutes; a
	// refusal by the server asks at once).
	SecretTTL time.Duration
}

// Leases are the engine's fences in time (see pipeline.Options).
type Leases struct {
	Task, Dispatch, Finish, Plan, StallAfter time.Duration
}

// DefaultConfig is the Config of fn before the environment is applied.
func DefaultConfig(fn string) Config {
	return Config{
		Function:         fn,
		StagingPrefix:    DefaultStagingPrefix,
		ArchivePrefix:    DefaultArchivePrefix,
		Concurrency:      DefaultConcurrency,
		MaxAttempts:      DefaultMaxAttempts,
		MetricsNamespace: metrics.DefaultNamespace,
		LogLevel:         slog.LevelInfo,
		RecheckDelay:     DefaultRecheckDelay,
		ComposeAbove:     DefaultComposeAbove,
		DeadlineMargin:   DefaultDeadlineMargin,
		JobTimeout:       DefaultJobTimeout,
		BatchConcurrency: DefaultBatchConcurrency,
		RetryDelay:       DefaultRetryDelay,
		SecretTTL:        DefaultSecretTTL,
		DrillMaxBytes:    DefaultDrillMaxBytes,
		PruneGrace:       DefaultPruneGrace,
	}
}

// ConfigFromEnv is DefaultConfig(fn) with every variable fn reads applied,
// validated. getenv is usually os.Getenv.
func ConfigFromEnv(fn string, getenv func(string) string) (Config, error) {
	c := DefaultConfig(fn)
	// A function reads exactly the variables lambdaenv lists for it (the
	// stack sets those and derives its permissions from them), plus the
	// test-only overrides.
	allowed := map[string]bool{lambdaenv.AWSEndpoint: true, lambdaenv.S3PathStyle: true,
		lambdaenv.LambdaEndpoint: true, lambdaenv.CloudflareAPIURL: true, lambdaLogLevel: true}
	for _, name := range lambdaenv.Reads[fn] {
		allowed[name] = true
	}
	get := func(name string) string {
		if !allowed[name] {
			return ""
		}
		return getenv(name)
	}
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(get(name)); v != "" {
			*dst = v
		}
	}
	var errs []error
	num := func(name string, dst *int) {
		if v := strings.TrimSpace(get(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a number", name, v))
				return
			}
			*dst = n
		}
	}
	str(lambdaenv.Bucket, &c.Bucket)
	str(lambdaenv.StagingPrefix, &c.StagingPrefix)
	str(lambdaenv.ArchivePrefix, &c.ArchivePrefix)
	str(lambdaenv.KMSKeyARN, &c.KMSKeyARN)
	str(lambdaenv.TaskQueueURL, &c.TaskQueueURL)
	str(lambdaenv.ControlQueueURL, &c.ControlQueueURL)
	str(lambdaenv.SchedulerFunction, &c.SchedulerFunction)
	str(lambdaenv.EdgeBaseURL, &c.EdgeBaseURL)
	str(lambdaenv.ServiceKeySecret, &c.ServiceKeySecret)
	str(lambdaenv.CloudflareAccount, &c.CloudflareAccount)
	str(lambdaenv.CloudflareSecret, &c.CloudflareSecret)
	str(lambdaenv.EdgeBaseSecrets, &c.EdgeBaseSecrets)
	str(lambdaenv.NotifyURL, &c.NotifyURL)
	str(lambdaenv.NotifySecret, &c.NotifySecret)
	str(lambdaenv.R2Endpoint, &c.R2Endpoint)
	str(lambdaenv.R2Bucket, &c.R2Bucket)
	str(lambdaenv.R2Secret, &c.R2Secret)
	if insts, err := lambdaenv.ParseInstances(get(lambdaenv.Instances)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", lambdaenv.Instances, err))
	} else {
		c.Instances = insts
	}
	if v := strings.TrimSpace(get(lambdaenv.SkipInstances)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not true or false", lambdaenv.SkipInstances, v))
		}
		c.SkipInstances = b
	}
	num(lambdaenv.Concurrency, &c.Concurrency)
	str(lambdaenv.SpoolDir, &c.SpoolDir)
	if v := strings.TrimSpace(get(lambdaenv.SpoolBytes)); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: not a byte count", lambdaenv.SpoolBytes, v))
		}
		c.SpoolBytes = n
	}
	str(lambdaenv.DRBucket, &c.DRBucket)
	str(lambdaenv.DRRoleARN, &c.DRRoleARN)
	str(lambdaenv.DRKMSKeyARN, &c.DRKMSKeyARN)
	str(lambdaenv.DRRegion, &c.DRRegion)
	if v := strings.TrimSpace(get(lambdaenv.APIAllowSecrets)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not true or false", lambdaenv.APIAllowSecrets, v))
		}
		c.APIAllowSecrets = b
	}
	str(lambdaenv.DrillURL, &c.DrillURL)
	str(lambdaenv.DrillKeySecret, &c.DrillKeySecret)
	str(lambdaenv.SigningKeyARN, &c.SigningKeyARN)
	errs = append(errs, c.applyRepositoryEnv(get)...)
	str(lambdaenv.MetricsNamespace, &c.MetricsNamespace)
	str(lambdaenv.LambdaEndpoint, &c.LambdaEndpoint)
	str(lambdaenv.CloudflareAPIURL, &c.CloudflareAPIURL)
	if v := get(lambdaLogLevel); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(lambdaLevel(v))); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", lambdaLogLevel, v, err))
		}
	}
	if err := c.AWS.ApplyEnv(get); err != nil {
		errs = append(errs, err)
	}
	if err := lambdaenv.RefuseTestOverrides(get); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("serverless: %w", errors.Join(errs...))
	}
	return c, c.Validate()
}

// applyRepositoryEnv reads the repository-mode variables.
func (c *Config) applyRepositoryEnv(get func(string) string) []error {
	var errs []error
	c.RepositoryPrefix = strings.TrimSpace(get(lambdaenv.RepositoryPrefix))
	c.RepositoryKMSKey = strings.TrimSpace(get(lambdaenv.RepositoryKMSKey))
	if p, err := repository.ParsePolicy(get(lambdaenv.Retention)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", lambdaenv.Retention, err))
	} else {
		c.Retention = p
	}
	if v := strings.TrimSpace(get(lambdaenv.PruneGrace)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a duration", lambdaenv.PruneGrace, v))
		}
		c.PruneGrace = d
	}
	return errs
}

// lambdaLogLevel is set by Lambda from the function's application log
// level when its log format is JSON.
const lambdaLogLevel = "AWS_LAMBDA_LOG_LEVEL"

// lambdaLevel maps Lambda's level names onto slog's.
func lambdaLevel(v string) string {
	switch strings.ToUpper(v) {
	case "TRACE":
		return "DEBUG-4"
	case "FATAL":
		return "ERROR+4"
	}
	return v
}

// ErrConfig marks an unusable configuration.
var ErrConfig = errors.New("serverless: invalid configuration")

// Validate reports every missing or invalid setting fn needs.
func (c Config) Validate() error {
	var errs []string
	need := func(v, name string) {
		if v == "" {
			errs = append(errs, name+" is required")
		}
	}
	if !slices.Contains(lambdaenv.Functions, c.Function) && !slices.Contains(lambdaenv.Optional, c.Function) {
		return fmt.Errorf("%w: unknown function %q", ErrConfig, c.Function)
	}
	need(c.Bucket, lambdaenv.Bucket)
	for _, p := range []struct{ v, name string }{{c.StagingPrefix, lambdaenv.StagingPrefix}, {c.ArchivePrefix, lambdaenv.ArchivePrefix}} {
		if p.v == "" || !strings.HasSuffix(p.v, "/") || strings.HasPrefix(p.v, "/") {
			errs = append(errs, fmt.Sprintf("%s=%q must be a non-empty prefix ending in '/'", p.name, p.v))
		}
	}
	if c.StagingPrefix != "" && c.ArchivePrefix != "" && (strings.HasPrefix(c.StagingPrefix, c.ArchivePrefix) || strings.HasPrefix(c.ArchivePrefix, c.StagingPrefix)) {
		errs = append(errs, "the staging and archive prefixes must not contain one another")
	}
	switch c.Function {
	case lambdaenv.Scheduler:
		need(c.TaskQueueURL, lambdaenv.TaskQueueURL)
		need(c.ControlQueueURL, lambdaenv.ControlQueueURL)
		c.needEdgeBase(need)
		// The stack always creates the token secret; only an account id
		// turns Edge mode on, and then the secret is needed.
		if c.CloudflareAccount != "" && c.CloudflareSecret == "" {
			errs = append(errs, fmt.Sprintf("Edge mode (%s set) needs %s", lambdaenv.CloudflareAccount, lambdaenv.CloudflareSecret))
		}
	case lambdaenv.Worker:
		need(c.TaskQueueURL, lambdaenv.TaskQueueURL)
		c.needEdgeBase(need)
	case lambdaenv.Assembler:
		need(c.TaskQueueURL, lambdaenv.TaskQueueURL)
		need(c.ControlQueueURL, lambdaenv.ControlQueueURL)
	case lambdaenv.API:
		need(c.SchedulerFunction, lambdaenv.SchedulerFunction)
	case lambdaenv.DRCopy:
		need(c.DRBucket, lambdaenv.DRBucket)
		if c.DRBucket != "" && c.DRBucket == c.Bucket && c.DRRoleARN == "" {
			errs = append(errs, "the DR bucket must differ from the backup bucket")
		}
	case lambdaenv.Maintain:
		need(c.RepositoryPrefix, lambdaenv.RepositoryPrefix)
		if c.Retention.Empty() {
			errs = append(errs, lambdaenv.Retention+" is required (maintain forgets by it)")
		}
		if c.PruneGrace <= c.JobTimeout {
			errs = append(errs, fmt.Sprintf("prune grace %s must exceed the job timeout %s", c.PruneGrace, c.JobTimeout))
		}
	case lambdaenv.Drill:
		need(c.DrillURL, lambdaenv.DrillURL)
		need(c.DrillKeySecret, lambdaenv.DrillKeySecret)
		if c.DrillMaxBytes <= 0 {
			errs = append(errs, "the drill's largest archive must be positive")
		}
	}
	if c.RepositoryPrefix != "" {
		if !strings.HasSuffix(c.RepositoryPrefix, "/") || strings.HasPrefix(c.RepositoryPrefix, "/") {
			errs = append(errs, fmt.Sprintf("%s=%q must be a prefix ending in '/'", lambdaenv.RepositoryPrefix, c.RepositoryPrefix))
		}
		for _, other := range []string{c.StagingPrefix, c.ArchivePrefix} {
			if other != "" && (strings.HasPrefix(c.RepositoryPrefix, other) || strings.HasPrefix(other, c.RepositoryPrefix)) {
				errs = append(errs, fmt.Sprintf("%s=%q must not contain or be inside %q", lambdaenv.RepositoryPrefix, c.RepositoryPrefix, other))
			}
		}
		need(c.RepositoryKMSKey, lambdaenv.RepositoryKMSKey)
	}
	if c.Concurrency < 1 || c.Concurrency > 100 {
		errs = append(errs, fmt.Sprintf("%s=%d outside 1..100", lambdaenv.Concurrency, c.Concurrency))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 1000 {
		errs = append(errs, fmt.Sprintf("max attempts %d outside 1..1000", c.MaxAttempts))
	}
	if c.BatchConcurrency < 1 {
		errs = append(errs, "batch concurrency must be at least 1")
	}
	if c.RecheckDelay <= 0 || c.RecheckDelay > 15*time.Minute {
		errs = append(errs, fmt.Sprintf("recheck delay %s outside 0..15m (SQS delay limit; SQS rounds it up to whole seconds)", c.RecheckDelay))
	}
	if c.SecretTTL <= 0 || c.SecretTTL > MaxSecretTTL {
		errs = append(errs, fmt.Sprintf("secret TTL %s outside (0, %s]", c.SecretTTL, MaxSecretTTL))
	}
	if c.DeadlineMargin < 0 || c.JobTimeout <= 0 || c.RetryDelay <= 0 {
		errs = append(errs, "deadline margin, job timeout and retry delay must be positive")
	}
	if err := c.AWS.Validate(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w for %s: %s", ErrConfig, c.Function, strings.Join(errs, "; "))
	}
	return nil
}

func (c Config) needEdgeBase(need func(v, name string)) {
	need(c.EdgeBaseURL, lambdaenv.EdgeBaseURL)
	need(c.ServiceKeySecret, lambdaenv.ServiceKeySecret)
	// R2 direct is on when a bucket is named; it then needs the rest.
	if c.R2Bucket != "" || c.R2Endpoint != "" {
		need(c.R2Endpoint, lambdaenv.R2Endpoint)
		need(c.R2Bucket, lambdaenv.R2Bucket)
		need(c.R2Secret, lambdaenv.R2Secret)
	}
}
