package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
)

// validConfig is DefaultConfig with the one required value.
func validConfig() Config {
	c := DefaultConfig()
	c.EdgeBaseURL = "https://edgebase.example.com"
	return c
}

func validDRConfig() DRDestinationConfig {
	d := DefaultDRDestinationConfig()
	d.Region = "eu-central-1"
	d.SourceRoleARN = "arn:aws:iam::111122223333:role/x"
	d.SourceBucket = "edgevault-backups"
	d.SourceKeyARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	return d
}

func TestDefaultConfigIsValid(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	// The EdgeBase URL has no default.
	if err := DefaultConfig().Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ctxEdgeBaseURL) {
		t.Errorf("default config without %s: %v", ctxEdgeBaseURL, err)
	}
	d := validDRConfig()
	if err := d.Validate(); err != nil {
		t.Fatalf("default DR config: %v", err)
	}
	if got := d.SourceAccount(); got != "111122223333" {
		t.Errorf("SourceAccount = %q", got)
	}
	if got := d.SourceRegion(); got != "us-east-1" {
		t.Errorf("SourceRegion = %q", got)
	}
	if c := validConfig(); c.MaxReceiveCount < 5 || c.LogLevel != "INFO" || c.Namespace() != "EdgeVault/EdgeVault" {
		t.Errorf("defaults: maxReceiveCount %d, logLevel %s, namespace %s", c.MaxReceiveCount, c.LogLevel, c.Namespace())
	}
}

// Warnings say what a working configuration leaves unwatched; strict
// turns them into errors.
func TestStrict(t *testing.T) {
	c := validConfig()
	if w := fmt.Sprint(c.Warnings()); !strings.Contains(w, ctxAlarmEmail) {
		t.Errorf("no warning without %s: %q", ctxAlarmEmail, w)
	}
	c.Strict = true
	if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ctxAlarmEmail) || !strings.Contains(err.Error(), ctxStrict) {
		t.Errorf("strict without %s: %v", ctxAlarmEmail, err)
	}
	c.AlarmEmail = "ops@example.com"
	if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ctxDRBucket) {
		t.Errorf("strict without a DR destination (a redeploy that forgot -c %s): %v", ctxDRBucket, err)
	}
	c.DR = DRTarget{Account: "111122223333", Region: "eu-west-1", Bucket: "dr-bucket"}
	if err := c.Validate(); err != nil || len(c.Warnings()) > 0 {
		t.Errorf("strict with %s and DR: %v %v", ctxAlarmEmail, err, c.Warnings())
	}
	for name, mutate := range map[string]func(*Config){
		"http URL":        func(c *Config) { c.EdgeBaseURL, c.AllowInsecureEdgeBaseURL = "http://eb.internal", true },
		"no schedule":     func(c *Config) { c.Schedule = "off" },
		"secrets via API": func(c *Config) { c.APIAllowSecrets = true },
	} {
		c2 := c
		mutate(&c2)
		if err := c2.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("strict, %s: %v", name, err)
		}
		c2.Strict = false
		if err := c2.Validate(); err != nil || len(c2.Warnings()) != 1 {
			t.Errorf("%s: %v, warnings %v", name, err, c2.Warnings())
		}
	}
	d := validDRConfig()
	d.Strict = true
	if err := d.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ctxDRAlarmEmail) {
		t.Errorf("strict DR stack without %s: %v", ctxDRAlarmEmail, err)
	}
	d.AlarmEmail = "dr@example.com"
	if err := d.Validate(); err != nil {
		t.Errorf("strict DR stack: %v", err)
	}
}

func TestConfigValidateRejects(t *testing.T) {
	dr := func(c *Config) { c.DR = DRTarget{Account: "111122223333", Region: "eu-west-1", Bucket: "dr-bucket"} }
	for _, tc := range []struct {
		key    string
		mutate func(*Config)
	}{
		{ctxStackName, func(c *Config) { c.StackName = "1bad name" }},
		{ctxEdgeBaseURL, func(c *Config) { c.EdgeBaseURL = "ftp://x" }},
		{ctxEdgeBaseURL, func(c *Config) { c.EdgeBaseURL = "" }},
		{ctxEdgeBaseURL, func(c *Config) { c.EdgeBaseURL = "http://edgebase.example.com" }}, // without allowInsecureEdgebaseUrl
		{ctxCloudflareAccount, func(c *Config) { c.CloudflareAccountID = "nothex" }},
		{ctxNotifyURL, func(c *Config) { c.NotifyURL = "http://hooks.example.com/x" }},
		{ctxNotifyURL, func(c *Config) { c.NotifyURL = "not a url" }},
		{ctxR2Bucket, func(c *Config) { c.R2AccountID = "0123456789abcdef0123456789abcdef" }},
		{ctxR2AccountID, func(c *Config) { c.R2Bucket = "b" }},
		{ctxR2AccountID, func(c *Config) { c.R2Bucket, c.R2AccountID = "b", "nothex" }},
		{ctxR2Endpoint, func(c *Config) { c.R2Bucket, c.R2Endpoint = "b", "http://r2.example.com" }},
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
		{ctxMaxReceiveCount, func(c *Config) { c.MaxReceiveCount = 3 }}, // below AWS's advice for SQS event sources
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
		// Lambda would drop the INFO metric documents the alarms read.
		{ctxLogLevel, func(c *Config) { c.LogLevel = "WARN" }},
		{ctxLogLevel, func(c *Config) { c.LogLevel = "ERROR" }},
		{ctxAlarmEmail, func(c *Config) { c.AlarmEmail = "Ops <ops@example.com>" }},
		{ctxBackupMaxAgeHours, func(c *Config) { c.BackupMaxAgeHours = 0 }},
		{ctxDRCopyMaxAgeHours, func(c *Config) { c.DRCopyMaxAgeHours = 169 }}, // beyond CloudWatch's 7-day range
		{ctxTaskAgeAlarmMinutes, func(c *Config) { c.TaskAgeAlarmMinutes = 1 }},
		{ctxMetricsNamespace, func(c *Config) { c.MetricsNamespace = "AWS/Lambda" }},
		{ctxMetricsNamespace, func(c *Config) { c.MetricsNamespace = strings.Repeat("n", 250) }}, // too long with the stack name
		{ctxAPIBackupRoleARNs, func(c *Config) { c.APIBackupRoleARNs = "arn:aws:iam::111122223333:role/a, not-an-arn" }},
		{ctxAPIRestoreRoleARNs, func(c *Config) { c.APIRestoreRoleARNs = "arn:aws:iam::111122223333:group/ops" }},
		{ctxDRRegion, func(c *Config) { dr(c); c.DR.Region = "" }},
		{ctxDRRegion, func(c *Config) { dr(c); c.DR.Region = "Europe" }},
		{ctxAPIRateLimit, func(c *Config) { c.APIRateLimit = 0 }},
		{ctxAPIBurstLimit, func(c *Config) { c.APIBurstLimit = 0 }},
		{ctxDRAccount, func(c *Config) { c.DR = DRTarget{Bucket: "dr-bucket", Region: "eu-west-1"} }},
		{ctxDRBucket, func(c *Config) { c.DR = DRTarget{Account: "111122223333", Region: "eu-west-1", Bucket: "Bad_Bucket"} }},
		{ctxDRRoleARN, func(c *Config) {
			c.DR = DRTarget{Account: "111122223333", Region: "eu-west-1", Bucket: "dr-bucket", RoleARN: "arn:aws:iam::999988887777:role/x"}
		}},
		{ctxDRKMSKeyARN, func(c *Config) {
			c.DR = DRTarget{Account: "111122223333", Region: "eu-west-1", Bucket: "dr-bucket", KMSKeyARN: "arn:aws:kms:eu-west-1:111122223333:alias/x"}
		}},
		// The key must be in the bucket's region: S3 uses it there.
		{ctxDRKMSKeyARN, func(c *Config) {
			c.DR = DRTarget{Account: "111122223333", Region: "eu-central-1", Bucket: "dr-bucket", KMSKeyARN: "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}
		}},
	} {
		c := validConfig()
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
		ctxEdgeBaseURL:        "https://edgebase.example.com",
		ctxAPIBackupRoleARNs:  "arn:aws:iam::111122223333:role/ci",
		ctxDRRegion:           "eu-west-1",
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
	want := validConfig()
	want.APIBackupRoleARNs = "arn:aws:iam::111122223333:role/ci"
	want.DR.Region = "eu-west-1" // read, though unused without a destination
	want.IncludeStorage, want.IncludeSecrets = false, true
	want.WorkerTimeout, want.TaskBatchSize = 12*time.Minute, 3
	want.ObjectLockMode, want.ObjectLockDays = "COMPLIANCE", 7
	want.LogLevel, want.APIRateLimit, want.Schedule = "DEBUG", 2.5, "off"
	want.TaskBatchingWindow = 20 * time.Second
	if c != want {
		t.Errorf("config\n got %+v\nwant %+v", c, want)
	}
	if b, r := c.APIPrincipals(); len(b) != 1 || len(r) != 0 {
		t.Errorf("APIPrincipals = %v, %v", b, r)
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
	url := "https://edgebase.example.com"
	for name, ctx := range map[string]map[string]any{
		"missing assets":       {ctxAssetDir: t.TempDir(), ctxEdgeBaseURL: url},
		"no edgebaseUrl":       {ctxAssetDir: assetDir},
		"http edgebaseUrl":     {ctxAssetDir: assetDir, ctxEdgeBaseURL: "http://edgebase.example.com"},
		"logLevel WARN":        {ctxAssetDir: assetDir, ctxEdgeBaseURL: url, ctxLogLevel: "warn"},
		"strict, no alarms":    {ctxAssetDir: assetDir, ctxEdgeBaseURL: url, ctxStrict: "true"},
		"bad context":          {ctxAssetDir: assetDir, ctxEdgeBaseURL: url, ctxDRBucket: "dr-bucket"},
		"bad DR stack":         withDR(map[string]any{ctxAssetDir: assetDir, ctxEdgeBaseURL: url, ctxDRSourceRoleARN: "not-an-arn"}),
		"same names":           withDR(map[string]any{ctxAssetDir: assetDir, ctxEdgeBaseURL: url, ctxDRStackName: "EdgeVault"}),
		"drOnly without DR":    {ctxDROnly: "true"},
		"drOnly not a boolean": withDR(map[string]any{ctxDROnly: "only"}),
	} {
		app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(t.TempDir())})
		_, _, err := buildApp(app)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: want ErrConfig, got %v", name, err)
		}
	}
}
