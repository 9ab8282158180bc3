package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	d := DefaultDRDestinationConfig()
	d.SourceRoleARN = "arn:aws:iam::111122223333:role/x"
	if err := d.Validate(); err != nil {
		t.Fatalf("default DR config: %v", err)
	}
	if got := d.SourceAccount(); got != "111122223333" {
		t.Errorf("SourceAccount = %q", got)
	}
}

func TestConfigValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		key    string
		mutate func(*Config)
	}{
		{ctxStackName, func(c *Config) { c.StackName = "1bad name" }},
		{ctxEdgeBaseURL, func(c *Config) { c.EdgeBaseURL = "ftp://x" }},
		{ctxCloudflareAccount, func(c *Config) { c.CloudflareAccountID = "nothex" }},
		{ctxInstances, func(c *Config) { c.Instances = "workspace:a,workspace" }},
		{ctxInstances, func(c *Config) { c.Instances = strings.Repeat("workspace:a,", 200) + "workspace:b" }},
		{ctxSchedule, func(c *Config) { c.Schedule = "daily" }},
		{ctxConcurrency, func(c *Config) { c.Concurrency = 0 }},
		{ctxRetentionDays, func(c *Config) { c.RetentionDays = 10 }}, // not after the 30-day transition
		{ctxNoncurrentDays, func(c *Config) { c.NoncurrentDays = 0 }},
		{ctxObjectLockMode, func(c *Config) { c.ObjectLockMode = "LEGAL" }},
		{ctxObjectLockMode, func(c *Config) { c.ObjectLockMode = "GOVERNANCE" }}, // no days
		{ctxObjectLockDays, func(c *Config) { c.ObjectLockDays = 5 }},            // no mode
		{ctxMaxReceiveCount, func(c *Config) { c.MaxReceiveCount = 0 }},
		{ctxWorkerMemory, func(c *Config) { c.WorkerMemoryMB = 64 }},
		{ctxWorkerTimeout, func(c *Config) { c.WorkerTimeout = 20 * time.Minute }},
		{ctxWorkerMaxConcurrency, func(c *Config) { c.WorkerMaxConcurrency = 1 }},
		{ctxWorkerReservedConcurrency, func(c *Config) { c.WorkerReservedConcurrency = 1 }},
		// Reserved below the event source's concurrency: throttled batches
		// would burn receive counts.
		{ctxWorkerMaxConcurrency, func(c *Config) { c.WorkerReservedConcurrency = 5 }},
		{ctxTaskBatchSize, func(c *Config) { c.TaskBatchSize = 11 }},
		{ctxTaskBatchingWindow, func(c *Config) { c.TaskBatchingWindow = time.Hour }},
		{ctxLogRetentionDays, func(c *Config) { c.LogRetentionDays = 42 }},
		{ctxLogLevel, func(c *Config) { c.LogLevel = "LOUD" }},
		{ctxAlarmEmail, func(c *Config) { c.AlarmEmail = "Ops <ops@example.com>" }},
		{ctxMetricsNamespace, func(c *Config) { c.MetricsNamespace = "AWS/Lambda" }},
		{ctxAPIRateLimit, func(c *Config) { c.APIRateLimit = 0 }},
		{ctxAPIBurstLimit, func(c *Config) { c.APIBurstLimit = 0 }},
		{ctxDRAccount, func(c *Config) { c.DR = DRTarget{Bucket: "dr-bucket"} }},
		{ctxDRBucket, func(c *Config) { c.DR = DRTarget{Account: "111122223333", Bucket: "Bad_Bucket"} }},
		{ctxDRRoleARN, func(c *Config) {
			c.DR = DRTarget{Account: "111122223333", Bucket: "dr-bucket", RoleARN: "arn:aws:iam::999988887777:role/x"}
		}},
		{ctxDRKMSKeyARN, func(c *Config) {
			c.DR = DRTarget{Account: "111122223333", Bucket: "dr-bucket", KMSKeyARN: "arn:aws:kms:eu-west-1:111122223333:alias/x"}
		}},
	} {
		c := DefaultConfig()
		tc.mutate(&c)
		err := c.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: want an ErrConfig naming it, got %v", tc.key, err)
		}
	}
}

// TestConfigFromContext reads values the way the CLI passes them (-c
// key=value gives strings) and the way cdk.json does (JSON types).
func TestConfigFromContext(t *testing.T) {
	app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]any{
		ctxIncludeStorage:     "false",
		ctxIncludeSecrets:     true,
		ctxWorkerTimeout:      "12",
		ctxTaskBatchSize:      float64(3),
		ctxObjectLockMode:     "compliance",
		ctxObjectLockDays:     "7",
		ctxLogLevel:           "debug",
		ctxAPIRateLimit:       "2.5",
		ctxSchedule:           "off",
		ctxTaskBatchingWindow: "20",
	}})
	c, err := ConfigFromContext(app.Node())
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.IncludeStorage, want.IncludeSecrets = false, true
	want.WorkerTimeout, want.TaskBatchSize = 12*time.Minute, 3
	want.ObjectLockMode, want.ObjectLockDays = "COMPLIANCE", 7
	want.LogLevel, want.APIRateLimit, want.Schedule = "DEBUG", 2.5, "off"
	want.TaskBatchingWindow = 20 * time.Second
	if c != want {
		t.Errorf("config\n got %+v\nwant %+v", c, want)
	}
	if _, ok, err := DRDestinationFromContext(app.Node()); ok || err != nil {
		t.Errorf("DR destination without drSourceRoleArn: ok=%v err=%v", ok, err)
	}

	bad := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]any{
		ctxIncludeStorage: "maybe",
		ctxWorkerMemory:   "1.5",
		ctxConcurrency:    "ten",
	}})
	_, err = ConfigFromContext(bad.Node())
	for _, key := range []string{ctxIncludeStorage, ctxWorkerMemory, ctxConcurrency} {
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), key) {
			t.Errorf("want an ErrConfig naming %s, got %v", key, err)
		}
	}
}

// TestBuildAppReportsErrors: bad input is an error from buildApp (main
// prints it), never a panic from inside the jsii runtime.
func TestBuildAppReportsErrors(t *testing.T) {
	for name, ctx := range map[string]map[string]any{
		"missing assets": {ctxAssetDir: t.TempDir()},
		"bad context":    {ctxAssetDir: assetDir, ctxDRBucket: "dr-bucket"},
		"bad DR stack":   {ctxAssetDir: assetDir, ctxDRSourceRoleARN: "not-an-arn"},
		"same names":     {ctxAssetDir: assetDir, ctxDRSourceRoleARN: "arn:aws:iam::111122223333:role/x", ctxDRStackName: "EdgeVault"},
	} {
		app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(t.TempDir())})
		_, _, err := buildApp(app)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: want ErrConfig, got %v", name, err)
		}
	}
}
