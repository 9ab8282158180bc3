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
	ctxStrict                    = "strict"
	ctxDROnly                    = "drOnly"
	ctxEdgeBaseURL               = "edgebaseUrl"
	ctxAllowInsecureEdgeBaseURL  = "allowInsecureEdgebaseUrl"
	ctxCloudflareAccount         = "cloudflareAccountId"
	ctxInstances                 = "instances"
	ctxR2Bucket                  = "r2Bucket"
	ctxR2AccountID               = "r2AccountId"
	ctxR2Endpoint                = "r2Endpoint"
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
	ctxBackupMaxAgeHours         = "backupMaxAgeHours"
	ctxDRCopyMaxAgeHours         = "drCopyMaxAgeHours"
	ctxTaskAgeAlarmMinutes       = "taskAgeAlarmMinutes"
	ctxMetricsNamespace          = "metricsNamespace"
	ctxAPIRateLimit              = "apiRateLimit"
	ctxAPIBurstLimit             = "apiBurstLimit"
	ctxAPICloudWatchRole         = "apiGatewayCloudWatchRole"
	ctxAPIBackupRoleARNs         = "apiBackupRoleArns"
	ctxAPIRestoreRoleARNs        = "apiRestoreRoleArns"
	ctxAPIAllowSecrets           = "apiAllowSecrets"
	ctxNotifyURL                 = "notifyUrl"
	ctxDRAccount                 = "drAccount"
	ctxDRRegion                  = "drRegion" // also places the destination stack
	ctxDRBucket                  = "drBucket"
	ctxDRRoleARN                 = "drRoleArn"
	ctxDRKMSKeyARN               = "drKmsKeyArn"
	// Repository mode (repository.go): backupMode is "repository" (the
	// default: snapshots in the repository under repositoryPrefix,
	// default "repository/", its key wrapped by a stack key or by
	// repositoryKmsKeyArn; the maintain function forgets by retention,
	// default "last=7,daily=14,weekly=8,monthly=12", and prunes after
	// pruneGrace, default 48h, more than the job timeout) or "archive"
	// (one v1.1 archive per backup, no repository, no maintain function).
	ctxBackupMode          = "backupMode"
	ctxRepositoryPrefix    = "repositoryPrefix"
	ctxRepositoryKMSKeyARN = "repositoryKmsKeyArn"
	ctxRetention           = "retention"
	ctxPruneGrace          = "pruneGrace"

	// Destination-account stack (dr_stack.go).
	ctxDRStackName          = "drStackName"
	ctxDRSourceRoleARN      = "drSourceRoleArn"
	ctxDRSourceBucket       = "drSourceBucket"
	ctxDRSourceKeyARN       = "drSourceKeyArn"
	ctxDRObjectLockMode     = "drObjectLockMode"
	ctxDRObjectLockDays     = "drObjectLockDays"
	ctxDRRetentionDays      = "drRetentionDays"
	ctxDRNoncurrentDays     = "drNoncurrentVersionDays"
	ctxDRLogRetentionDays   = "drAccessLogRetentionDays"
	ctxDRKeyBreakGlassARN   = "drKeyBreakGlassArn"
	ctxDRAlarmEmail         = "drAlarmEmail"
	drObjectLockModeNone    = "NONE"
	defaultDRObjectLockDays = 35
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
	// Strict turns every warning of the synth into an error.
	Strict bool
	// EdgeBaseURL is the deployment to back up (required); https unless
	// AllowInsecureEdgeBaseURL, since the service key travels with every
	// request.
	EdgeBaseURL              string
	AllowInsecureEdgeBaseURL bool
	// CloudflareAccountID selects Edge mode (with the Cloudflare token secret).
	CloudflareAccountID string
	// R2Bucket moves storage through R2 direct (the R2 credentials
	// secret); the endpoint is R2Endpoint, else derived from R2AccountID.
	R2Bucket, R2AccountID, R2Endpoint string
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
	// LogLevel is the functions' application log level: at most INFO,
	// since Lambda drops the lines below it, the metric (EMF) documents
	// included, and the alarms depend on those.
	LogLevel   string
	Tracing    bool
	AlarmEmail string
	// BackupMaxAgeHours and DRCopyMaxAgeHours: the freshness alarms fire
	// when no backup finished, or no archive was copied to the DR bucket
	// and verified, for that long.
	BackupMaxAgeHours int
	DRCopyMaxAgeHours int
	// TaskAgeAlarmMinutes: the oldest task waiting in the task queue for
	// longer raises an alarm.
	TaskAgeAlarmMinutes int
	// MetricsNamespace prefixes the stack's CloudWatch namespace (see
	// Namespace).
	MetricsNamespace string
	APIRateLimit     float64
	APIBurstLimit    int
	// APICloudWatchRole sets the region-wide API Gateway logging role of
	// the account (needed once per account and region for access logs).
	APICloudWatchRole bool
	// APIBackupRoleARNs and APIRestoreRoleARNs (comma-separated IAM role
	// or user ARNs) may call the API besides the stack's own operator and
	// restore roles: the first may read jobs and start backups, the second
	// also start restores. Nobody else may, whatever their IAM policies.
	APIBackupRoleARNs  string
	APIRestoreRoleARNs string
	// APIAllowSecrets lets API callers ask for secrets (a backup including
	// them, a restore writing them back).
	APIAllowSecrets bool
	// NotifyURL is the webhook told when a job ends (Slack-compatible,
	// signed with the stack's NotifyWebhookSecret); "" for none.
	NotifyURL string
	DR        DRTarget
	Drill     DrillConfig
	// Repository is the backup mode (repository or archive) and the
	// repository's settings.
	Repository RepositoryConfig
}

// DRTarget is the cross-account destination drcopy writes to.
type DRTarget struct {
	Account string
	// Region of the bucket and key (required with a destination).
	Region string
	Bucket string
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
	Strict    bool
	// Region places the stack (and so the bucket and key).
	Region string
	// SourceRoleARN is the drcopy role of the backup stack (its output
	// DRCopyRoleArn); the destination role trusts exactly that role.
	SourceRoleARN string
	// SourceBucket and SourceKeyARN are the backup stack's BucketName and
	// ArchiveKeyArn outputs: the writer role reads archives there to copy
	// them server-side (UploadPartCopy).
	SourceBucket string
	SourceKeyARN string
	// ObjectLockMode is COMPLIANCE (default), GOVERNANCE or NONE (given
	// explicitly: the synth refuses a DR bucket without a lock otherwise).
	ObjectLockMode   string
	ObjectLockDays   int
	RetentionDays    int
	NoncurrentDays   int
	LogRetentionDays int
	// KeyBreakGlassARN is the one principal that may schedule the deletion
	// of the DR key ("" = nobody, short of changing the key policy).
	KeyBreakGlassARN string
	AlarmEmail       string
	// CopyMaxAgeHours: the bucket's freshness alarm fires when no archive
	// arrived for that long.
	CopyMaxAgeHours int
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
		MaxReceiveCount:       5,
		WorkerMemoryMB:        1024,
		WorkerTimeout:         10 * time.Minute,
		WorkerMaxConcurrency:  10,
		TaskBatchSize:         5,
		LogRetentionDays:      90,
		LogLevel:              "INFO",
		BackupMaxAgeHours:     25,
		DRCopyMaxAgeHours:     26,
		TaskAgeAlarmMinutes:   120,
		MetricsNamespace:      "EdgeVault",
		APIRateLimit:          5,
		APIBurstLimit:         10,
		APICloudWatchRole:     true,
		Drill:                 DrillConfig{Schedule: defaultDrillSchedule, MaxAgeDays: defaultDrillMaxAgeDays},
		Repository:            defaultRepositoryConfig(),
	}
}

// DefaultDRDestinationConfig is the destination stack without context.
func DefaultDRDestinationConfig() DRDestinationConfig {
	return DRDestinationConfig{
		StackName: "EdgeVaultDR", NoncurrentDays: 30, LogRetentionDays: 365,
		ObjectLockMode: "COMPLIANCE", ObjectLockDays: defaultDRObjectLockDays, CopyMaxAgeHours: 26,
	}
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
	r.boolean(ctxStrict, &c.Strict)
	r.str(ctxEdgeBaseURL, &c.EdgeBaseURL)
	r.boolean(ctxAllowInsecureEdgeBaseURL, &c.AllowInsecureEdgeBaseURL)
	r.str(ctxCloudflareAccount, &c.CloudflareAccountID)
	r.str(ctxInstances, &c.Instances)
	r.str(ctxR2Bucket, &c.R2Bucket)
	r.str(ctxR2AccountID, &c.R2AccountID)
	r.str(ctxR2Endpoint, &c.R2Endpoint)
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
	r.integer(ctxBackupMaxAgeHours, &c.BackupMaxAgeHours)
	r.integer(ctxDRCopyMaxAgeHours, &c.DRCopyMaxAgeHours)
	r.integer(ctxTaskAgeAlarmMinutes, &c.TaskAgeAlarmMinutes)
	r.str(ctxMetricsNamespace, &c.MetricsNamespace)
	r.num(ctxAPIRateLimit, &c.APIRateLimit)
	r.integer(ctxAPIBurstLimit, &c.APIBurstLimit)
	r.boolean(ctxAPICloudWatchRole, &c.APICloudWatchRole)
	r.str(ctxAPIBackupRoleARNs, &c.APIBackupRoleARNs)
	r.str(ctxAPIRestoreRoleARNs, &c.APIRestoreRoleARNs)
	r.boolean(ctxAPIAllowSecrets, &c.APIAllowSecrets)
	r.str(ctxNotifyURL, &c.NotifyURL)
	r.str(ctxDRAccount, &c.DR.Account)
	r.str(ctxDRRegion, &c.DR.Region)
	r.str(ctxDRBucket, &c.DR.Bucket)
	r.str(ctxDRRoleARN, &c.DR.RoleARN)
	r.str(ctxDRKMSKeyARN, &c.DR.KMSKeyARN)
	readDrillContext(r, &c.Drill)
	readRepositoryContext(r, &c.Repository)
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
	r.boolean(ctxStrict, &c.Strict)
	r.str(ctxDRRegion, &c.Region)
	r.str(ctxDRSourceRoleARN, &c.SourceRoleARN)
	r.str(ctxDRSourceBucket, &c.SourceBucket)
	r.str(ctxDRSourceKeyARN, &c.SourceKeyARN)
	r.str(ctxDRObjectLockMode, &c.ObjectLockMode)
	c.ObjectLockMode = strings.ToUpper(c.ObjectLockMode)
	if c.ObjectLockMode == drObjectLockModeNone {
		c.ObjectLockDays = 0
	}
	r.integer(ctxDRObjectLockDays, &c.ObjectLockDays)
	r.integer(ctxDRRetentionDays, &c.RetentionDays)
	r.integer(ctxDRNoncurrentDays, &c.NoncurrentDays)
	r.integer(ctxDRLogRetentionDays, &c.LogRetentionDays)
	r.str(ctxDRKeyBreakGlassARN, &c.KeyBreakGlassARN)
	r.str(ctxDRAlarmEmail, &c.AlarmEmail)
	r.integer(ctxDRCopyMaxAgeHours, &c.CopyMaxAgeHours)
	if len(r.errs) > 0 {
		return c, false, errors.Join(r.errs...)
	}
	if c.SourceRoleARN == "" {
		return c, false, nil
	}
	return c, true, c.Validate()
}

var (
	stackNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{0,127}$`)
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	cfAccountRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	bucketRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	roleARNRE   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::([0-9]{12}):role/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	kmsKeyARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:kms:([a-z0-9-]+):([0-9]{12}):key/(mrk-)?[0-9a-f-]{32,36}$`)
	principalRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	scheduleRE  = regexp.MustCompile(`^(cron|rate)\(.+\)$`)
	namespaceRE = regexp.MustCompile(`^[A-Za-z0-9._/#: -]{1,255}$`)
	// logLevels are the levels the functions may log at: Lambda drops
	// every line below the level, and the metric documents the alarms
	// read are INFO lines.
	logLevels      = []string{"TRACE", "DEBUG", "INFO"}
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
	if u, err := url.Parse(c.NotifyURL); c.NotifyURL != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
		bad(ctxNotifyURL, c.NotifyURL, "an https URL of the webhook told when a job ends")
	}
	if u, err := url.Parse(c.EdgeBaseURL); c.EdgeBaseURL == "" {
		bad(ctxEdgeBaseURL, `""`, "the URL of the EdgeBase deployment to back up (required: -c edgebaseUrl=https://...)")
	} else if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad(ctxEdgeBaseURL, c.EdgeBaseURL, "an https URL")
	} else if u.Scheme == "http" && !c.AllowInsecureEdgeBaseURL {
		bad(ctxEdgeBaseURL, c.EdgeBaseURL, "https (the service key travels with every request); "+ctxAllowInsecureEdgeBaseURL+"=true accepts http")
	}
	if c.CloudflareAccountID != "" && !cfAccountRE.MatchString(c.CloudflareAccountID) {
		bad(ctxCloudflareAccount, c.CloudflareAccountID, "a 32-character hex Cloudflare account id")
	}
	c.validateR2(bad)
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
	errs = append(errs, c.workerErrors()...)
	if !slices.Contains(retentionDaysV, c.LogRetentionDays) {
		bad(ctxLogRetentionDays, c.LogRetentionDays, fmt.Sprintf("one of %v", retentionDaysV))
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		bad(ctxLogLevel, c.LogLevel, fmt.Sprintf("one of %v: Lambda drops the lines below the level, and the metrics the alarms watch are INFO lines", logLevels))
	}
	if err := emailError(ctxAlarmEmail, c.AlarmEmail); err != nil {
		errs = append(errs, err)
	}
	for _, a := range []struct {
		key string
		v   int
	}{{ctxBackupMaxAgeHours, c.BackupMaxAgeHours}, {ctxDRCopyMaxAgeHours, c.DRCopyMaxAgeHours}} {
		if err := maxAgeError(a.key, a.v); err != nil {
			errs = append(errs, err)
		}
	}
	if c.TaskAgeAlarmMinutes < 5 || c.TaskAgeAlarmMinutes > 24*60 {
		bad(ctxTaskAgeAlarmMinutes, c.TaskAgeAlarmMinutes, "5..1440")
	}
	if ns := c.Namespace(); !namespaceRE.MatchString(c.MetricsNamespace) || !namespaceRE.MatchString(ns) || strings.HasPrefix(ns, "AWS/") {
		bad(ctxMetricsNamespace, c.MetricsNamespace, "a custom CloudWatch namespace (at most 255 characters with /"+c.StackName+")")
	}
	for _, k := range []struct{ key, v string }{{ctxAPIBackupRoleARNs, c.APIBackupRoleARNs}, {ctxAPIRestoreRoleARNs, c.APIRestoreRoleARNs}} {
		if _, err := principalList(k.v); err != nil {
			bad(k.key, k.v, err.Error())
		}
	}
	if c.APIRateLimit <= 0 || c.APIRateLimit > 10000 {
		bad(ctxAPIRateLimit, c.APIRateLimit, "requests per second in (0, 10000]")
	}
	if c.APIBurstLimit < 1 || c.APIBurstLimit > 5000 {
		bad(ctxAPIBurstLimit, c.APIBurstLimit, "1..5000")
	}
	errs = append(errs, c.DR.validate()...)
	errs = append(errs, c.Drill.validate(c)...)
	errs = append(errs, c.Repository.validate()...)
	if len(errs) == 0 {
		errs = strictErrors(c.Strict, c.Warnings())
	}
	return errors.Join(errs...)
}

// workerErrors checks the worker function's sizing and its event source.
func (c Config) workerErrors() []error {
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("%w: %s=%v: %s", ErrConfig, key, v, want))
	}
	// Lambda's SQS poller raises the receive count of messages it could
	// not hand to a throttled function; AWS advises at least 5.
	if c.MaxReceiveCount < 5 || c.MaxReceiveCount > 1000 {
		bad(ctxMaxReceiveCount, c.MaxReceiveCount, "5..1000")
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
	return errs
}

func (d DRTarget) validate() []error {
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("%w: %s=%v: %s", ErrConfig, key, v, want))
	}
	// drRegion alone places the DR stack; it configures no destination.
	if d.Account == "" && d.Bucket == "" && d.RoleARN == "" && d.KMSKeyARN == "" {
		return nil
	}
	if !accountRE.MatchString(d.Account) {
		bad(ctxDRAccount, d.Account, "the 12-digit destination account id (required with any dr* key)")
	}
	if !regionRE.MatchString(d.Region) {
		bad(ctxDRRegion, d.Region, "the region of the destination bucket, e.g. eu-central-1 (required with any dr* key)")
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
		} else if m[2] != d.Account {
			bad(ctxDRKMSKeyARN, d.KMSKeyARN, "a key in "+ctxDRAccount)
		} else if m[1] != d.Region {
			bad(ctxDRKMSKeyARN, d.KMSKeyARN, "a key in "+ctxDRRegion+" "+d.Region+" (S3 uses the key of the bucket's region)")
		}
	}
	return errs
}

// Namespace is the CloudWatch namespace of the stack's metrics: the
// configured prefix and the stack name, so two stacks in one account and
// region never count (or alarm on) each other's jobs.
func (c Config) Namespace() string { return c.MetricsNamespace + "/" + c.StackName }

// APIPrincipals are the callers named by context (not the stack's roles):
// those that may start backups, and those that may also start restores.
func (c Config) APIPrincipals() (backup, restore []string) {
	backup, _ = principalList(c.APIBackupRoleARNs)
	restore, _ = principalList(c.APIRestoreRoleARNs)
	return backup, restore
}

// maxAPIPrincipals keeps the API's resource policy well under its size
// limit.
const maxAPIPrincipals = 20

func principalList(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !principalRE.MatchString(p) {
			return nil, fmt.Errorf("%q is not an IAM role or user ARN", p)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) > maxAPIPrincipals {
		return nil, fmt.Errorf("at most %d ARNs (name a role the callers assume instead)", maxAPIPrincipals)
	}
	return out, nil
}

// configWarning is a working configuration that leaves something
// unwatched or unprotected; key is the context key that decides it.
type configWarning struct{ key, text string }

func (w configWarning) String() string { return "context " + w.key + w.text }

// Warnings are what the synth reports (the CDK CLI prints them, as
// edgevault:KEY); with strict they fail it.
func (c Config) Warnings() []configWarning {
	var w []configWarning
	if c.AlarmEmail == "" {
		w = append(w, configWarning{ctxAlarmEmail, " is not set: the alarms (backup freshness, failed jobs, dead letters) notify nobody until someone subscribes to the AlarmTopicArn topic"})
	}
	if strings.HasPrefix(c.EdgeBaseURL, "http://") {
		w = append(w, configWarning{ctxEdgeBaseURL, " is http:// (" + ctxAllowInsecureEdgeBaseURL + "): the EdgeBase service key travels unencrypted"})
	}
	if c.Schedule == "off" {
		w = append(w, configWarning{ctxSchedule, "=off: no scheduled backups; the backup freshness alarm fires unless backups are started otherwise at least every " + strconv.Itoa(c.BackupMaxAgeHours) + " hours"})
	}
	if c.APIAllowSecrets {
		w = append(w, configWarning{ctxAPIAllowSecrets, "=true: API callers may back up the EdgeBase secrets and write them back"})
	}
	// Also what a redeploy that forgets -c drBucket looks like.
	if !c.DR.Enabled() {
		w = append(w, configWarning{ctxDRBucket, " is not set: archives are not copied to a disaster-recovery account"})
	}
	return w
}

// Validate reports every invalid field.
func (c DRDestinationConfig) Validate() error {
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("%w: %s=%v: %s", ErrConfig, key, v, want))
	}
	if !stackNameRE.MatchString(c.StackName) {
		bad(ctxDRStackName, c.StackName, "a CloudFormation stack name")
	}
	if !regionRE.MatchString(c.Region) {
		bad(ctxDRRegion, c.Region, "the region of the DR bucket, e.g. eu-central-1 (required)")
	}
	if !roleARNRE.MatchString(c.SourceRoleARN) {
		bad(ctxDRSourceRoleARN, c.SourceRoleARN, "the backup stack's DRCopyRoleArn output")
	}
	if !bucketRE.MatchString(c.SourceBucket) || strings.Contains(c.SourceBucket, "..") {
		bad(ctxDRSourceBucket, c.SourceBucket, "the backup stack's BucketName output (required)")
	}
	if m := kmsKeyARNRE.FindStringSubmatch(c.SourceKeyARN); m == nil {
		bad(ctxDRSourceKeyARN, c.SourceKeyARN, "the backup stack's ArchiveKeyArn output (required)")
	} else if a := c.SourceAccount(); a != "" && m[2] != a {
		bad(ctxDRSourceKeyARN, c.SourceKeyARN, "a key of the source account "+a)
	}
	errs = append(errs, lifecycleErrors(ctxDRRetentionDays, c.RetentionDays, "", 0, ctxDRNoncurrentDays, c.NoncurrentDays)...)
	switch c.ObjectLockMode {
	case drObjectLockModeNone:
		if c.ObjectLockDays != 0 {
			bad(ctxDRObjectLockDays, c.ObjectLockDays, ctxDRObjectLockMode+"=none takes no days")
		}
	case "":
		bad(ctxDRObjectLockMode, `""`, "compliance (the default) or governance; a DR bucket without Object Lock only with "+ctxDRObjectLockMode+"=none")
	default:
		errs = append(errs, objectLockErrors(ctxDRObjectLockMode, c.ObjectLockMode, ctxDRObjectLockDays, c.ObjectLockDays)...)
		// Expiring an archive before its lock ends only hides it behind a
		// delete marker.
		if c.RetentionDays > 0 && c.RetentionDays < c.ObjectLockDays {
			bad(ctxDRRetentionDays, c.RetentionDays, fmt.Sprintf("0 (keep) or at least %s=%d", ctxDRObjectLockDays, c.ObjectLockDays))
		}
	}
	if !slices.Contains(retentionDaysV, c.LogRetentionDays) {
		bad(ctxDRLogRetentionDays, c.LogRetentionDays, fmt.Sprintf("one of %v", retentionDaysV))
	}
	if c.KeyBreakGlassARN != "" && !principalRE.MatchString(c.KeyBreakGlassARN) {
		bad(ctxDRKeyBreakGlassARN, c.KeyBreakGlassARN, "an IAM role or user ARN")
	}
	if err := emailError(ctxDRAlarmEmail, c.AlarmEmail); err != nil {
		errs = append(errs, err)
	}
	if err := maxAgeError(ctxDRCopyMaxAgeHours, c.CopyMaxAgeHours); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = strictErrors(c.Strict, c.Warnings())
	}
	return errors.Join(errs...)
}

// Warnings: see Config.Warnings.
func (c DRDestinationConfig) Warnings() []configWarning {
	var w []configWarning
	switch c.ObjectLockMode {
	case drObjectLockModeNone:
		w = append(w, configWarning{ctxDRObjectLockMode, "=none: DR copies are not locked; whoever controls the DR account can delete them"})
	case "GOVERNANCE":
		w = append(w, configWarning{ctxDRObjectLockMode, "=governance: principals with s3:BypassGovernanceRetention can delete DR copies; compliance mode cannot be bypassed"})
	}
	if c.AlarmEmail == "" {
		w = append(w, configWarning{ctxDRAlarmEmail, " is not set: the DR alarms notify nobody until someone subscribes to the DRAlarmTopicArn topic"})
	}
	return w
}

func emailError(key, v string) error {
	if v == "" {
		return nil
	}
	if a, err := mail.ParseAddress(v); err != nil || a.Address != v {
		return fmt.Errorf("%w: %s=%v: a plain e-mail address", ErrConfig, key, v)
	}
	return nil
}

// maxAgeError checks a freshness alarm's window: whole hours (the alarm
// looks at hourly sums) and at most CloudWatch's 7-day evaluation range.
func maxAgeError(key string, hours int) error {
	if hours < 1 || hours > 7*24 {
		return fmt.Errorf("%w: %s=%d: 1..168 hours", ErrConfig, key, hours)
	}
	return nil
}

// SourceRegion is the region of the backup stack (of its archive key).
func (c DRDestinationConfig) SourceRegion() string {
	if m := kmsKeyARNRE.FindStringSubmatch(c.SourceKeyARN); m != nil {
		return m[1]
	}
	return ""
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

// validateR2 checks the R2-direct keys: all or nothing, an https
// endpoint or a Cloudflare account id.
func (c Config) validateR2(bad func(key string, v any, want string)) {
	if c.R2Bucket == "" {
		if c.R2AccountID != "" || c.R2Endpoint != "" {
			bad(ctxR2Bucket, `""`, "the R2 bucket bound as EdgeBase's storage (r2AccountId/r2Endpoint need it)")
		}
		return
	}
	switch u, err := url.Parse(c.R2Endpoint); {
	case c.R2Endpoint == "" && c.R2AccountID == "":
		bad(ctxR2AccountID, `""`, "the Cloudflare account id of the R2 bucket (or r2Endpoint)")
	case c.R2Endpoint == "" && !cfAccountRE.MatchString(c.R2AccountID):
		bad(ctxR2AccountID, c.R2AccountID, "a 32-character hex Cloudflare account id")
	case c.R2Endpoint != "" && (err != nil || u.Scheme != "https" || u.Host == ""):
		bad(ctxR2Endpoint, c.R2Endpoint, "an https URL (the S3 API of R2)")
	}
}

// R2EndpointURL is the S3 API endpoint of the R2 bucket ("" without one).
func (c Config) R2EndpointURL() string {
	switch {
	case c.R2Bucket == "":
		return ""
	case c.R2Endpoint != "":
		return c.R2Endpoint
	}
	return "https://" + strings.ToLower(c.R2AccountID) + ".r2.cloudflarestorage.com"
}
