package main

import (
	"errors"
	"fmt"
	"math"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/constructs-go/constructs/v10"

	"github.com/edgevault/edgevault/internal/lambdaenv"
)

// maxInstancesLen bounds the instances context value, which travels in
// the scheduler's environment.
const maxInstancesLen = 2048

// Context keys (cdk.json "context" or `cdk synth -c key=value`). DEPLOY.md
// lists them with their defaults.
const (
	ctxStackName                 = "stackName"
	ctxAssetDir                  = "assetDir"
	ctxEdgeBaseURL               = "edgebaseUrl"
	ctxCloudflareAccount         = "cloudflareAccountId"
	ctxInstances                 = "instances"
	ctxSkipInstances             = "skipInstances"
	ctxSchedule                  = "schedule"
	ctxIncludeStorage            = "includeStorage"
	ctxIncludeSecrets            = "includeSecrets"
	ctxConcurrency               = "concurrency"
	ctxRetentionDays             = "retentionDays"
	ctxArchiveTransitionDays     = "archiveTransitionDays"
	ctxNoncurrentDays            = "noncurrentVersionDays"
	ctxObjectLockMode            = "objectLockMode"
	ctxObjectLockDays            = "objectLockDays"
	ctxMaxReceiveCount           = "maxReceiveCount"
	ctxWorkerMemory              = "workerMemoryMB"
	ctxWorkerTimeout             = "workerTimeoutMinutes"
	ctxWorkerReservedConcurrency = "workerReservedConcurrency"
	ctxWorkerMaxConcurrency      = "workerMaxConcurrency"
	ctxTaskBatchSize             = "taskBatchSize"
	ctxTaskBatchingWindow        = "taskBatchingWindowSeconds"
	ctxLogRetentionDays          = "logRetentionDays"
	ctxLogLevel                  = "logLevel"
	ctxTracing                   = "tracing"
	ctxAlarmEmail                = "alarmEmail"
	ctxMetricsNamespace          = "metricsNamespace"
	ctxAPIRateLimit              = "apiRateLimit"
	ctxAPIBurstLimit             = "apiBurstLimit"
	ctxAPICloudWatchRole         = "apiGatewayCloudWatchRole"
	ctxDRAccount                 = "drAccount"
	ctxDRBucket                  = "drBucket"
	ctxDRRoleARN                 = "drRoleArn"
	ctxDRKMSKeyARN               = "drKmsKeyArn"

	// Destination-account stack (dr_stack.go).
	ctxDRStackName        = "drStackName"
	ctxDRSourceRoleARN    = "drSourceRoleArn"
	ctxDRObjectLockMode   = "drObjectLockMode"
	ctxDRObjectLockDays   = "drObjectLockDays"
	ctxDRRetentionDays    = "drRetentionDays"
	ctxDRNoncurrentDays   = "drNoncurrentVersionDays"
	ctxDRLogRetentionDays = "drAccessLogRetentionDays"
)

// defaultSchedule runs the backup daily at 03:00 UTC.
const defaultSchedule = "cron(0 3 * * ? *)"

// ErrConfig marks invalid context values.
var ErrConfig = errors.New("infra: invalid configuration")

// Config is everything a deployment of the backup stack can choose.
type Config struct {
	StackName string
	// AssetDir holds <function>/bootstrap for every function.
	AssetDir string
	// EdgeBaseURL is the deployment to back up ("" synthesizes, with a
	// warning, a stack whose functions refuse to run).
	EdgeBaseURL string
	// CloudflareAccountID selects Edge mode (with the Cloudflare token secret).
	CloudflareAccountID string
	// Instances lists dynamic DB instances ("ns:id,ns:id") to back up
	// besides those Edge mode finds; SkipInstances accepts backups that
	// leave out a dynamic block no source can list.
	Instances     string
	SkipInstances bool
	// Schedule is an EventBridge cron()/rate() expression; "off" disables it.
	Schedule       string
	IncludeStorage bool
	IncludeSecrets bool
	// Concurrency is the in-task fan-out (EDGEVAULT_CONCURRENCY).
	Concurrency int
	// RetentionDays expires archives (0 keeps them forever).
	RetentionDays int
	// ArchiveTransitionDays moves archives to Glacier Instant Retrieval
	// (0 never); restores read them directly, without a restore request.
	ArchiveTransitionDays int
	// NoncurrentDays expires overwritten and deleted object versions.
	NoncurrentDays int
	// ObjectLockMode is "", "GOVERNANCE" or "COMPLIANCE"; ObjectLockDays is
	// the default retention of every new object version.
	ObjectLockMode string
	ObjectLockDays int
	// MaxReceiveCount is the deliveries a queue message gets before its
	// dead-letter queue.
	MaxReceiveCount int
	WorkerMemoryMB  int
	WorkerTimeout   time.Duration
	// WorkerReservedConcurrency reserves (and caps) worker concurrency;
	// 0 reserves nothing.
	WorkerReservedConcurrency int
	// WorkerMaxConcurrency caps the concurrent worker invocations the task
	// queue starts (the load on the EdgeBase target); 0 leaves it open.
	WorkerMaxConcurrency int
	TaskBatchSize        int
	TaskBatchingWindow   time.Duration
	LogRetentionDays     int
	LogLevel             string
	Tracing              bool
	AlarmEmail           string
	MetricsNamespace     string
	APIRateLimit         float64
	APIBurstLimit        int
	// APICloudWatchRole sets the region-wide API Gateway logging role of
	// the account (needed once per account and region for access logs).
	APICloudWatchRole bool
	DR                DRTarget
}

// DRTarget is the cross-account destination drcopy writes to.
type DRTarget struct {
	Account string
	Bucket  string
	// RoleARN is the destination role drcopy assumes; "" means the
	// destination bucket (and key) policy grants drcopy's own role.
	RoleARN   string
	KMSKeyARN string
}

// Enabled reports whether a destination is configured.
func (d DRTarget) Enabled() bool { return d.Bucket != "" }

// DRDestinationConfig configures the destination-account stack.
type DRDestinationConfig struct {
	StackName string
	// SourceRoleARN is the drcopy role of the backup stack (its output
	// DRCopyRoleArn); the destination role trusts exactly that role.
	SourceRoleARN    string
	ObjectLockMode   string
	ObjectLockDays   int
	RetentionDays    int
	NoncurrentDays   int
	LogRetentionDays int
}

// DefaultConfig is the configuration without any context.
func DefaultConfig() Config {
	return Config{
		StackName:             "EdgeVault",
		AssetDir:              "build/lambda",
		Schedule:              defaultSchedule,
		IncludeStorage:        true,
		Concurrency:           10,
		RetentionDays:         90,
		ArchiveTransitionDays: 30,
		NoncurrentDays:        30,
		MaxReceiveCount:       3,
		WorkerMemoryMB:        1024,
		WorkerTimeout:         10 * time.Minute,
		WorkerMaxConcurrency:  10,
		TaskBatchSize:         5,
		LogRetentionDays:      90,
		LogLevel:              "INFO",
		MetricsNamespace:      "EdgeVault",
		APIRateLimit:          5,
		APIBurstLimit:         10,
		APICloudWatchRole:     true,
	}
}

// DefaultDRDestinationConfig is the destination stack without context.
func DefaultDRDestinationConfig() DRDestinationConfig {
	return DRDestinationConfig{StackName: "EdgeVaultDR", NoncurrentDays: 30, LogRetentionDays: 365}
}

// contextReader reads typed context values, collecting every error so one
// synth reports all of them.
type contextReader struct {
	node constructs.Node
	errs []error
}

func (r *contextReader) raw(key string) (any, bool) {
	v := r.node.TryGetContext(&key)
	if v == nil {
		return nil, false
	}
	return v, true
}

func (r *contextReader) fail(key string, v any, want string) {
	r.errs = append(r.errs, fmt.Errorf("%w: context %s=%v: want %s", ErrConfig, key, v, want))
}

func (r *contextReader) str(key string, dst *string) {
	v, ok := r.raw(key)
	if !ok {
		return
	}
	switch s := v.(type) {
	case string:
		*dst = strings.TrimSpace(s)
	case float64:
		*dst = strconv.FormatFloat(s, 'f', -1, 64)
	default:
		r.fail(key, v, "a string")
	}
}

func (r *contextReader) num(key string, dst *float64) {
	v, ok := r.raw(key)
	if !ok {
		return
	}
	switch n := v.(type) {
	case float64:
		*dst = n
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			r.fail(key, v, "a number")
			return
		}
		*dst = f
	default:
		r.fail(key, v, "a number")
	}
}

func (r *contextReader) integer(key string, dst *int) {
	if _, ok := r.raw(key); !ok {
		return
	}
	f := float64(*dst)
	n := len(r.errs)
	r.num(key, &f)
	if len(r.errs) > n {
		return
	}
	if f != math.Trunc(f) || math.Abs(f) > 1e9 {
		r.fail(key, f, "a whole number")
		return
	}
	*dst = int(f)
}

func (r *contextReader) boolean(key string, dst *bool) {
	v, ok := r.raw(key)
	if !ok {
		return
	}
	switch b := v.(type) {
	case bool:
		*dst = b
	case string:
		p, err := strconv.ParseBool(strings.TrimSpace(b))
		if err != nil {
			r.fail(key, v, "true or false")
			return
		}
		*dst = p
	default:
		r.fail(key, v, "true or false")
	}
}

// ConfigFromContext reads Config from the context visible at node, over
// DefaultConfig, and validates it.
func ConfigFromContext(node constructs.Node) (Config, error) {
	c := DefaultConfig()
	r := &contextReader{node: node}
	r.str(ctxStackName, &c.StackName)
	r.str(ctxAssetDir, &c.AssetDir)
	r.str(ctxEdgeBaseURL, &c.EdgeBaseURL)
	r.str(ctxCloudflareAccount, &c.CloudflareAccountID)
	r.str(ctxInstances, &c.Instances)
	r.boolean(ctxSkipInstances, &c.SkipInstances)
	r.str(ctxSchedule, &c.Schedule)
	r.boolean(ctxIncludeStorage, &c.IncludeStorage)
	r.boolean(ctxIncludeSecrets, &c.IncludeSecrets)
	r.integer(ctxConcurrency, &c.Concurrency)
	r.integer(ctxRetentionDays, &c.RetentionDays)
	r.integer(ctxArchiveTransitionDays, &c.ArchiveTransitionDays)
	r.integer(ctxNoncurrentDays, &c.NoncurrentDays)
	r.str(ctxObjectLockMode, &c.ObjectLockMode)
	r.integer(ctxObjectLockDays, &c.ObjectLockDays)
	r.integer(ctxMaxReceiveCount, &c.MaxReceiveCount)
	r.integer(ctxWorkerMemory, &c.WorkerMemoryMB)
	minutes := int(c.WorkerTimeout / time.Minute)
	r.integer(ctxWorkerTimeout, &minutes)
	c.WorkerTimeout = time.Duration(minutes) * time.Minute
	r.integer(ctxWorkerReservedConcurrency, &c.WorkerReservedConcurrency)
	r.integer(ctxWorkerMaxConcurrency, &c.WorkerMaxConcurrency)
	r.integer(ctxTaskBatchSize, &c.TaskBatchSize)
	seconds := int(c.TaskBatchingWindow / time.Second)
	r.integer(ctxTaskBatchingWindow, &seconds)
	c.TaskBatchingWindow = time.Duration(seconds) * time.Second
	r.integer(ctxLogRetentionDays, &c.LogRetentionDays)
	r.str(ctxLogLevel, &c.LogLevel)
	r.boolean(ctxTracing, &c.Tracing)
	r.str(ctxAlarmEmail, &c.AlarmEmail)
	r.str(ctxMetricsNamespace, &c.MetricsNamespace)
	r.num(ctxAPIRateLimit, &c.APIRateLimit)
	r.integer(ctxAPIBurstLimit, &c.APIBurstLimit)
	r.boolean(ctxAPICloudWatchRole, &c.APICloudWatchRole)
	r.str(ctxDRAccount, &c.DR.Account)
	r.str(ctxDRBucket, &c.DR.Bucket)
	r.str(ctxDRRoleARN, &c.DR.RoleARN)
	r.str(ctxDRKMSKeyARN, &c.DR.KMSKeyARN)
	c.ObjectLockMode = strings.ToUpper(c.ObjectLockMode)
	c.LogLevel = strings.ToUpper(c.LogLevel)
	if len(r.errs) > 0 {
		return c, errors.Join(r.errs...)
	}
	return c, c.Validate()
}

// DRDestinationFromContext reads the destination stack's configuration;
// ok is false when drSourceRoleArn is not set (no destination stack).
func DRDestinationFromContext(node constructs.Node) (c DRDestinationConfig, ok bool, err error) {
	c = DefaultDRDestinationConfig()
	r := &contextReader{node: node}
	r.str(ctxDRStackName, &c.StackName)
	r.str(ctxDRSourceRoleARN, &c.SourceRoleARN)
	r.str(ctxDRObjectLockMode, &c.ObjectLockMode)
	r.integer(ctxDRObjectLockDays, &c.ObjectLockDays)
	r.integer(ctxDRRetentionDays, &c.RetentionDays)
	r.integer(ctxDRNoncurrentDays, &c.NoncurrentDays)
	r.integer(ctxDRLogRetentionDays, &c.LogRetentionDays)
	c.ObjectLockMode = strings.ToUpper(c.ObjectLockMode)
	if len(r.errs) > 0 {
		return c, false, errors.Join(r.errs...)
	}
	if c.SourceRoleARN == "" {
		return c, false, nil
	}
	return c, true, c.Validate()
}

var (
	stackNameRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{0,127}$`)
	accountRE      = regexp.MustCompile(`^[0-9]{12}$`)
	cfAccountRE    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	bucketRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	roleARNRE      = regexp.MustCompile(`^arn:aws[a-z-]*:iam::([0-9]{12}):role/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	kmsKeyARNRE    = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:([0-9]{12}):key/(mrk-)?[0-9a-f-]{32,36}$`)
	scheduleRE     = regexp.MustCompile(`^(cron|rate)\(.+\)$`)
	namespaceRE    = regexp.MustCompile(`^[A-Za-z0-9._/#: -]{1,255}$`)
	logLevels      = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	retentionDaysV = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("%w: %s=%v: %s", ErrConfig, key, v, want))
	}
	if !stackNameRE.MatchString(c.StackName) {
		bad(ctxStackName, c.StackName, "a CloudFormation stack name")
	}
	if c.AssetDir == "" {
		bad(ctxAssetDir, c.AssetDir, "a directory")
	}
	if c.EdgeBaseURL != "" {
		u, err := url.Parse(c.EdgeBaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(ctxEdgeBaseURL, c.EdgeBaseURL, "an http(s) URL")
		}
	}
	if c.CloudflareAccountID != "" && !cfAccountRE.MatchString(c.CloudflareAccountID) {
		bad(ctxCloudflareAccount, c.CloudflareAccountID, "a 32-character hex Cloudflare account id")
	}
	if _, err := lambdaenv.ParseInstances(c.Instances); err != nil {
		bad(ctxInstances, c.Instances, "ns:id[,ns:id...]: "+err.Error())
	}
	if len(c.Instances) > maxInstancesLen {
		// Lambda allows 4 KB of environment in all.
		bad(ctxInstances, fmt.Sprintf("%d characters", len(c.Instances)), fmt.Sprintf("at most %d characters (list more instances with Edge mode)", maxInstancesLen))
	}
	if c.Schedule != "off" && !scheduleRE.MatchString(c.Schedule) {
		bad(ctxSchedule, c.Schedule, `cron(...), rate(...) or "off"`)
	}
	if c.Concurrency < 1 || c.Concurrency > 100 {
		bad(ctxConcurrency, c.Concurrency, "1..100")
	}
	errs = append(errs, lifecycleErrors(ctxRetentionDays, c.RetentionDays, ctxArchiveTransitionDays, c.ArchiveTransitionDays, ctxNoncurrentDays, c.NoncurrentDays)...)
	errs = append(errs, objectLockErrors(ctxObjectLockMode, c.ObjectLockMode, ctxObjectLockDays, c.ObjectLockDays)...)
	if c.MaxReceiveCount < 1 || c.MaxReceiveCount > 1000 {
		bad(ctxMaxReceiveCount, c.MaxReceiveCount, "1..1000")
	}
	if c.WorkerMemoryMB < 128 || c.WorkerMemoryMB > 10240 {
		bad(ctxWorkerMemory, c.WorkerMemoryMB, "128..10240")
	}
	// 15 minutes is Lambda's limit; it also keeps the worker's wipe lease
	// (20 minutes in pkg/backup) above the task timeout.
	if c.WorkerTimeout < time.Minute || c.WorkerTimeout > 15*time.Minute {
		bad(ctxWorkerTimeout, c.WorkerTimeout, "1..15 minutes")
	}
	if c.WorkerMaxConcurrency != 0 && (c.WorkerMaxConcurrency < 2 || c.WorkerMaxConcurrency > 1000) {
		bad(ctxWorkerMaxConcurrency, c.WorkerMaxConcurrency, "0 (no limit) or 2..1000")
	}
	if c.WorkerReservedConcurrency < 0 || c.WorkerReservedConcurrency == 1 {
		bad(ctxWorkerReservedConcurrency, c.WorkerReservedConcurrency, "0 (none) or at least 2")
	}
	// Invocations throttled by reserved concurrency return their messages
	// to the queue with the receive count raised, so tasks would reach the
	// dead-letter queue without ever running.
	if c.WorkerReservedConcurrency > 0 && (c.WorkerMaxConcurrency == 0 || c.WorkerMaxConcurrency > c.WorkerReservedConcurrency) {
		bad(ctxWorkerMaxConcurrency, c.WorkerMaxConcurrency, fmt.Sprintf("at most %s=%d", ctxWorkerReservedConcurrency, c.WorkerReservedConcurrency))
	}
	if c.TaskBatchSize < 1 || c.TaskBatchSize > 10 {
		bad(ctxTaskBatchSize, c.TaskBatchSize, "1..10")
	}
	if c.TaskBatchingWindow < 0 || c.TaskBatchingWindow > 300*time.Second {
		bad(ctxTaskBatchingWindow, c.TaskBatchingWindow, "0..300 seconds")
	}
	if !slices.Contains(retentionDaysV, c.LogRetentionDays) {
		bad(ctxLogRetentionDays, c.LogRetentionDays, fmt.Sprintf("one of %v", retentionDaysV))
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		bad(ctxLogLevel, c.LogLevel, fmt.Sprintf("one of %v", logLevels))
	}
	if c.AlarmEmail != "" {
		if a, err := mail.ParseAddress(c.AlarmEmail); err != nil || a.Address != c.AlarmEmail {
			bad(ctxAlarmEmail, c.AlarmEmail, "a plain e-mail address")
		}
	}
	if !namespaceRE.MatchString(c.MetricsNamespace) || strings.HasPrefix(c.MetricsNamespace, "AWS/") {
		bad(ctxMetricsNamespace, c.MetricsNamespace, "a custom CloudWatch namespace")
	}
	if c.APIRateLimit <= 0 || c.APIRateLimit > 10000 {
		bad(ctxAPIRateLimit, c.APIRateLimit, "requests per second in (0, 10000]")
	}
	if c.APIBurstLimit < 1 || c.APIBurstLimit > 5000 {
		bad(ctxAPIBurstLimit, c.APIBurstLimit, "1..5000")
	}
	errs = append(errs, c.DR.validate()...)
	return errors.Join(errs...)
}

func (d DRTarget) validate() []error {
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("%w: %s=%v: %s", ErrConfig, key, v, want))
	}
	if d == (DRTarget{}) {
		return nil
	}
	if !accountRE.MatchString(d.Account) {
		bad(ctxDRAccount, d.Account, "the 12-digit destination account id (required with any dr* key)")
	}
	if !bucketRE.MatchString(d.Bucket) || strings.Contains(d.Bucket, "..") {
		bad(ctxDRBucket, d.Bucket, "the destination bucket name (required with any dr* key)")
	}
	if d.RoleARN != "" {
		m := roleARNRE.FindStringSubmatch(d.RoleARN)
		if m == nil {
			bad(ctxDRRoleARN, d.RoleARN, "an IAM role ARN")
		} else if m[1] != d.Account {
			bad(ctxDRRoleARN, d.RoleARN, "a role in "+ctxDRAccount)
		}
	}
	if d.KMSKeyARN != "" {
		m := kmsKeyARNRE.FindStringSubmatch(d.KMSKeyARN)
		if m == nil {
			bad(ctxDRKMSKeyARN, d.KMSKeyARN, "a KMS key ARN (not an alias)")
		} else if m[1] != d.Account {
			bad(ctxDRKMSKeyARN, d.KMSKeyARN, "a key in "+ctxDRAccount)
		}
	}
	return errs
}

// Validate reports every invalid field.
func (c DRDestinationConfig) Validate() error {
	var errs []error
	if !stackNameRE.MatchString(c.StackName) {
		errs = append(errs, fmt.Errorf("%w: %s=%q: a CloudFormation stack name", ErrConfig, ctxDRStackName, c.StackName))
	}
	if !roleARNRE.MatchString(c.SourceRoleARN) {
		errs = append(errs, fmt.Errorf("%w: %s=%q: the backup stack's DRCopyRoleArn output", ErrConfig, ctxDRSourceRoleARN, c.SourceRoleARN))
	}
	errs = append(errs, lifecycleErrors(ctxDRRetentionDays, c.RetentionDays, "", 0, ctxDRNoncurrentDays, c.NoncurrentDays)...)
	errs = append(errs, objectLockErrors(ctxDRObjectLockMode, c.ObjectLockMode, ctxDRObjectLockDays, c.ObjectLockDays)...)
	if !slices.Contains(retentionDaysV, c.LogRetentionDays) {
		errs = append(errs, fmt.Errorf("%w: %s=%d: one of %v", ErrConfig, ctxDRLogRetentionDays, c.LogRetentionDays, retentionDaysV))
	}
	return errors.Join(errs...)
}

// SourceAccount is the account of the backup stack.
func (c DRDestinationConfig) SourceAccount() string {
	if m := roleARNRE.FindStringSubmatch(c.SourceRoleARN); m != nil {
		return m[1]
	}
	return ""
}

func lifecycleErrors(retentionKey string, retention int, transitionKey string, transition int, noncurrentKey string, noncurrent int) []error {
	var errs []error
	if retention < 0 {
		errs = append(errs, fmt.Errorf("%w: %s=%d: 0 (keep) or more days", ErrConfig, retentionKey, retention))
	}
	if transition < 0 {
		errs = append(errs, fmt.Errorf("%w: %s=%d: 0 (never) or more days", ErrConfig, transitionKey, transition))
	}
	if retention > 0 && transition > 0 && retention <= transition {
		errs = append(errs, fmt.Errorf("%w: %s=%d must exceed %s=%d", ErrConfig, retentionKey, retention, transitionKey, transition))
	}
	if noncurrent < 1 {
		errs = append(errs, fmt.Errorf("%w: %s=%d: at least 1", ErrConfig, noncurrentKey, noncurrent))
	}
	return errs
}

func objectLockErrors(modeKey, mode, daysKey string, days int) []error {
	switch mode {
	case "":
		if days != 0 {
			return []error{fmt.Errorf("%w: %s=%d without %s", ErrConfig, daysKey, days, modeKey)}
		}
	case "GOVERNANCE", "COMPLIANCE":
		if days < 1 || days > 36500 {
			return []error{fmt.Errorf("%w: %s=%s needs %s in 1..36500, got %d", ErrConfig, modeKey, mode, daysKey, days)}
		}
	default:
		return []error{fmt.Errorf("%w: %s=%q: governance or compliance", ErrConfig, modeKey, mode)}
	}
	return nil
}
