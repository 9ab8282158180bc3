package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// The stack tests synthesize three variants of the app once each (jsii
// runs node, so every synth costs seconds) and share the templates:
//   - base:   no context beyond the asset directory (every default);
//   - full:   Object Lock, DR through an assumed role plus the DR
//     destination stack, tracing, alarm e-mail, reserved worker
//     concurrency and other non-default values;
//   - direct: DR through the destination bucket policy (no role), no
//     schedule, no API Gateway account role, archives kept forever, no
//     Edge mode: dynamic instances from the instances context.

var (
	// assetDir holds dummy bootstrap files: functions/ is built elsewhere.
	assetDir   string
	outDir     string
	cdkContext map[string]any // "context" of the repository's cdk.json
	variants   = map[string]*variant{}
)

const (
	drAccount   = "111122223333"
	drBucket    = "edgevault-dr-copies"
	drRole      = "arn:aws:iam::111122223333:role/edgevault-dr-writer"
	drKey       = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	drSource    = "arn:aws:iam::444455556666:role/EdgeVault-DrCopyRole-ABC"
	edgebaseURL = "https://edgebase.example.com"
	cfAccount   = "0123456789abcdef0123456789abcdef"
)

var variantContext = map[string]map[string]any{
	"base": {},
	"full": {
		ctxEdgeBaseURL: edgebaseURL, ctxCloudflareAccount: cfAccount,
		ctxObjectLockMode: "governance", ctxObjectLockDays: "30",
		ctxDRAccount: drAccount, ctxDRBucket: drBucket, ctxDRRoleARN: drRole, ctxDRKMSKeyARN: drKey,
		ctxTracing: "true", ctxAlarmEmail: "ops@example.com",
		ctxWorkerReservedConcurrency: "20", ctxWorkerTimeout: "12", ctxMaxReceiveCount: "5",
		ctxTaskBatchingWindow: "10", ctxIncludeSecrets: "true", ctxSchedule: "rate(12 hours)",
		ctxMetricsNamespace: "EdgeVaultTest", ctxConcurrency: "16",
		ctxDRSourceRoleARN: drSource, ctxDRObjectLockMode: "compliance", ctxDRObjectLockDays: "35", ctxDRRetentionDays: "400",
	},
	"direct": {
		ctxEdgeBaseURL: edgebaseURL, ctxInstances: "workspace:ws-1, workspace:ws-2", ctxSkipInstances: "true",
		ctxDRAccount: drAccount, ctxDRBucket: drBucket, ctxDRKMSKeyARN: drKey,
		ctxSchedule: "off", ctxAPICloudWatchRole: "false",
		ctxRetentionDays: "0", ctxArchiveTransitionDays: "0",
	},
}

type variant struct {
	name     string
	backup   *BackupStack
	dr       *DRDestinationStack
	tmpl     assertions.Template
	json     map[string]any
	drTmpl   assertions.Template
	drJSON   map[string]any
	nagError []string // unsuppressed cdk-nag (or other) errors
	synthErr error
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	defer jsii.Close()
	var err error
	if assetDir, err = os.MkdirTemp("", "edgevault-infra-assets-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(assetDir)
	if outDir, err = os.MkdirTemp("", "edgevault-infra-out-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(outDir)
	for _, fn := range lambdaenv.Functions {
		if err := os.MkdirAll(filepath.Join(assetDir, fn), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Distinct contents, so each function gets its own asset.
		if err := os.WriteFile(filepath.Join(assetDir, fn, "bootstrap"), []byte("#!/bin/sh\n# "+fn+"\n"), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	b, err := os.ReadFile("../cdk.json")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var cdkJSON struct {
		App     string         `json:"app"`
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(b, &cdkJSON); err != nil {
		fmt.Fprintln(os.Stderr, "cdk.json:", err)
		return 1
	}
	if cdkJSON.App != "go run ./infra" {
		fmt.Fprintf(os.Stderr, "cdk.json: app is %q\n", cdkJSON.App)
		return 1
	}
	cdkContext = cdkJSON.Context
	return m.Run()
}

// get synthesizes a variant on first use, as the CDK CLI would: the
// feature flags of cdk.json plus the variant's context.
func get(t *testing.T, name string) *variant {
	t.Helper()
	if v, ok := variants[name]; ok {
		if v.synthErr != nil {
			t.Fatal(v.synthErr)
		}
		return v
	}
	ctx := maps.Clone(cdkContext)
	maps.Copy(ctx, variantContext[name])
	ctx[ctxAssetDir] = assetDir
	dir := filepath.Join(outDir, name)
	app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(dir)})
	backup, dr, err := buildApp(app)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	v := &variant{name: name, backup: backup, dr: dr}
	variants[name] = v
	// With the flags of cdk.json an error annotation (an unsuppressed
	// cdk-nag finding) fails the synth itself; its findings are printed.
	if err := synth(func() {
		v.tmpl = assertions.Template_FromStack(backup.Stack, nil)
		v.json = *v.tmpl.ToJSON()
		v.nagError = errorsOf(backup.Stack)
		if dr != nil {
			v.drTmpl = assertions.Template_FromStack(dr.Stack, nil)
			v.drJSON = *v.drTmpl.ToJSON()
			v.nagError = append(v.nagError, errorsOf(dr.Stack)...)
		}
	}); err != nil {
		v.synthErr = fmt.Errorf("%s: synth failed: %v", name, err)
	}
	if v.synthErr != nil {
		t.Fatal(v.synthErr)
	}
	return v
}

func synth(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return nil
}

func errorsOf(stack awscdk.Stack) []string {
	var out []string
	for _, m := range *assertions.Annotations_FromStack(stack).FindError(jsii.String("*"), assertions.Match_AnyValue()) {
		out = append(out, fmt.Sprintf("%s: %v", *m.Id, m.Entry.Data))
	}
	return out
}

// check turns a failed jsii assertion (a panic) into a test error.
func check(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

func has(t *testing.T, tmpl assertions.Template, typ string, props any) {
	t.Helper()
	check(t, typ, func() { tmpl.HasResourceProperties(jsii.String(typ), props) })
}

func count(t *testing.T, tmpl assertions.Template, typ string, n int) {
	t.Helper()
	check(t, typ, func() { tmpl.ResourceCountIs(jsii.String(typ), jsii.Number(float64(n))) })
}

func like(v map[string]any) assertions.Matcher { return assertions.Match_ObjectLike(&v) }
func arrayWith(v ...any) assertions.Matcher    { return assertions.Match_ArrayWith(&v) }
func absent() assertions.Matcher               { return assertions.Match_Absent() }

// logicalID is the template id of c (an L1, or an L2 via its default child).
func logicalID(c constructs.IConstruct) string {
	el, ok := c.(awscdk.CfnElement)
	if !ok {
		el = c.Node().DefaultChild().(awscdk.CfnElement)
	}
	stack := awscdk.Stack_Of(c)
	return stack.Resolve(stack.GetLogicalId(el)).(string)
}

func resources(tmpl map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range tmpl["Resources"].(map[string]any) {
		out[id] = r.(map[string]any)
	}
	return out
}

func props(tmpl map[string]any, id string) map[string]any {
	r, ok := resources(tmpl)[id]
	if !ok {
		panic("no resource " + id)
	}
	p, _ := r["Properties"].(map[string]any)
	return p
}

func ofType(tmpl map[string]any, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range resources(tmpl) {
		if r["Type"] == typ {
			out[id] = r
		}
	}
	return out
}

func ref(id string) map[string]any          { return map[string]any{"Ref": id} }
func getAtt(id, attr string) map[string]any { return map[string]any{"Fn::GetAtt": []any{id, attr}} }

// ---------------------------------------------------------------------------

func TestCdkNagHasNoUnsuppressedErrors(t *testing.T) {
	for _, name := range []string{"base", "full", "direct"} {
		v := get(t, name)
		for _, e := range v.nagError {
			t.Errorf("%s: %s", name, e)
		}
	}
}

func TestResourceCounts(t *testing.T) {
	base, full, direct := get(t, "base"), get(t, "full"), get(t, "direct")
	for typ, n := range map[string][3]int{
		"AWS::KMS::Key":                   {1, 1, 1},
		"AWS::S3::Bucket":                 {2, 2, 2}, // backups + access logs
		"AWS::S3::BucketPolicy":           {2, 2, 2},
		"AWS::SQS::Queue":                 {5, 5, 5}, // task, control, their DLQs, invoke DLQ
		"AWS::SQS::QueuePolicy":           {5, 5, 5},
		"AWS::SecretsManager::Secret":     {3, 3, 3},
		"AWS::Lambda::Function":           {5, 6, 6}, // + CDK's bucket-notification handler with DR
		"AWS::Lambda::EventSourceMapping": {2, 2, 2},
		"AWS::Lambda::EventInvokeConfig":  {2, 2, 2}, // scheduler, drcopy
		"AWS::Logs::LogGroup":             {6, 6, 6}, // five functions + API access logs
		"AWS::IAM::Role":                  {6, 7, 6}, // five functions + API GW logging (+ notification handler)
		"AWS::Events::Rule":               {1, 1, 0},
		"AWS::ApiGateway::RestApi":        {1, 1, 1},
		"AWS::ApiGateway::Method":         {2, 2, 2}, // ANY / and ANY /{proxy+}
		"AWS::ApiGateway::Stage":          {1, 1, 1},
		"AWS::ApiGateway::Account":        {1, 1, 0},
		"AWS::SNS::Topic":                 {1, 1, 1},
		"AWS::SNS::TopicPolicy":           {1, 1, 1},
		"AWS::SNS::Subscription":          {0, 1, 0},
		"AWS::CloudWatch::Alarm":          {5, 5, 5},
		"Custom::S3BucketNotifications":   {0, 1, 1},
	} {
		count(t, base.tmpl, typ, n[0])
		count(t, full.tmpl, typ, n[1])
		count(t, direct.tmpl, typ, n[2])
	}
	for typ, n := range map[string]int{
		"AWS::KMS::Key": 1, "AWS::S3::Bucket": 2, "AWS::S3::BucketPolicy": 2, "AWS::IAM::Role": 1,
		"AWS::IAM::Policy": 1, "AWS::Lambda::Function": 0,
	} {
		count(t, full.drTmpl, typ, n)
	}
}

func TestKeyRotationAndPolicy(t *testing.T) {
	for _, tmpl := range []assertions.Template{get(t, "base").tmpl, get(t, "full").drTmpl} {
		has(t, tmpl, "AWS::KMS::Key", map[string]any{"EnableKeyRotation": true, "PendingWindowInDays": 30})
	}
	// CloudWatch Logs may use the key for this account's log groups only.
	has(t, get(t, "base").tmpl, "AWS::KMS::Key", map[string]any{"KeyPolicy": like(map[string]any{
		"Statement": arrayWith(like(map[string]any{
			"Sid": "CloudWatchLogsOfThisAccount",
			"Condition": map[string]any{"ArnLike": map[string]any{"kms:EncryptionContext:aws:logs:arn": map[string]any{"Fn::Join": []any{"", []any{
				"arn:", ref("AWS::Partition"), ":logs:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":log-group:*",
			}}}}},
		})),
	})})
}

func TestBackupBucket(t *testing.T) {
	base := get(t, "base")
	key := logicalID(base.backup.Key)
	logs := logicalID(base.backup.AccessLogs)
	bucket := logicalID(base.backup.Bucket)
	has(t, base.tmpl, "AWS::S3::Bucket", map[string]any{
		"VersioningConfiguration": map[string]any{"Status": "Enabled"},
		"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{map[string]any{
			"BucketKeyEnabled":              true,
			"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": getAtt(key, "Arn")},
		}}},
		"PublicAccessBlockConfiguration": map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"OwnershipControls":    map[string]any{"Rules": []any{map[string]any{"ObjectOwnership": "BucketOwnerEnforced"}}},
		"LoggingConfiguration": map[string]any{"DestinationBucketName": ref(logs), "LogFilePrefix": "backup-bucket/"},
		"LifecycleConfiguration": map[string]any{"Rules": []any{
			map[string]any{"Id": "expire-staging", "Prefix": "jobs/", "Status": "Enabled",
				"ExpirationInDays": 1, "NoncurrentVersionExpiration": map[string]any{"NoncurrentDays": 1}},
			map[string]any{"Id": "clean-up-versions-and-uploads", "Status": "Enabled",
				"AbortIncompleteMultipartUpload": map[string]any{"DaysAfterInitiation": 1},
				"NoncurrentVersionExpiration":    map[string]any{"NoncurrentDays": 30},
				"ExpiredObjectDeleteMarker":      true},
			map[string]any{"Id": "archive-retention", "Prefix": "backups/", "Status": "Enabled", "ExpirationInDays": 90,
				"Transitions": []any{map[string]any{"StorageClass": "GLACIER_IR", "TransitionInDays": 30}}},
		}},
		"ObjectLockEnabled": absent(),
	})
	// TLS only, and TLS 1.2 or newer, for the bucket and its objects.
	arns := []any{getAtt(bucket, "Arn"), map[string]any{"Fn::Join": []any{"", []any{getAtt(bucket, "Arn"), "/*"}}}}
	has(t, base.tmpl, "AWS::S3::BucketPolicy", map[string]any{
		"Bucket": ref(bucket),
		"PolicyDocument": like(map[string]any{"Statement": arrayWith(
			map[string]any{"Effect": "Deny", "Action": "s3:*", "Principal": map[string]any{"AWS": "*"}, "Resource": arns,
				"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}},
			map[string]any{"Effect": "Deny", "Action": "s3:*", "Principal": map[string]any{"AWS": "*"}, "Resource": arns,
				"Condition": map[string]any{"NumericLessThan": map[string]any{"s3:TlsVersion": 1.2}}},
		)}),
	})
	// The access log bucket: SSE-S3 (log delivery cannot use SSE-KMS), private, TLS only.
	has(t, base.tmpl, "AWS::S3::Bucket", map[string]any{
		"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{map[string]any{
			"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"},
		}}},
		"PublicAccessBlockConfiguration": map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"LifecycleConfiguration": like(map[string]any{"Rules": arrayWith(like(map[string]any{"ExpirationInDays": 90}))}),
	})
	has(t, base.tmpl, "AWS::S3::BucketPolicy", map[string]any{
		"Bucket": ref(logs),
		"PolicyDocument": like(map[string]any{"Statement": arrayWith(
			like(map[string]any{"Effect": "Deny", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
			like(map[string]any{"Effect": "Allow", "Action": "s3:PutObject",
				"Principal": map[string]any{"Service": "logging.s3.amazonaws.com"},
				"Condition": like(map[string]any{"ArnLike": map[string]any{"aws:SourceArn": getAtt(bucket, "Arn")}})}),
		)}),
	})

	full := get(t, "full")
	has(t, full.tmpl, "AWS::S3::Bucket", map[string]any{
		"ObjectLockEnabled": true,
		"ObjectLockConfiguration": map[string]any{"ObjectLockEnabled": "Enabled",
			"Rule": map[string]any{"DefaultRetention": map[string]any{"Mode": "GOVERNANCE", "Days": 30}}},
		"VersioningConfiguration": map[string]any{"Status": "Enabled"},
	})
	// Archives kept forever: no archive rule at all.
	direct := get(t, "direct")
	rules := props(direct.json, logicalID(direct.backup.Bucket))["LifecycleConfiguration"].(map[string]any)["Rules"].([]any)
	for _, r := range rules {
		if r.(map[string]any)["Id"] == "archive-retention" {
			t.Errorf("direct: archive-retention rule with retentionDays=0 and archiveTransitionDays=0: %v", r)
		}
	}
}

func TestQueues(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		workerTimeout, receives float64
	}{{"base", 600, 3}, {"full", 720, 5}} {
		v := get(t, tc.name)
		b := v.backup
		for _, q := range []struct {
			queue, dlq string
			timeout    float64
		}{
			{logicalID(b.TaskQueue), logicalID(b.TaskDLQ), tc.workerTimeout},
			{logicalID(b.ControlQueue), logicalID(b.ControlDLQ), 900},
		} {
			p := props(v.json, q.queue)
			want := map[string]any{
				"SqsManagedSseEnabled": true,
				"VisibilityTimeout":    6 * q.timeout,
				"RedrivePolicy":        map[string]any{"deadLetterTargetArn": getAtt(q.dlq, "Arn"), "maxReceiveCount": tc.receives},
			}
			for k, w := range want {
				if g, _ := json.Marshal(p[k]); string(g) != mustJSON(w) {
					t.Errorf("%s %s: %s = %s, want %s", tc.name, q.queue, k, g, mustJSON(w))
				}
			}
		}
		// Every queue (DLQs too) is encrypted and refuses plain HTTP.
		for id, r := range ofType(v.json, "AWS::SQS::Queue") {
			if r["Properties"].(map[string]any)["SqsManagedSseEnabled"] != true {
				t.Errorf("%s: queue %s without encryption", tc.name, id)
			}
			has(t, v.tmpl, "AWS::SQS::QueuePolicy", map[string]any{
				"Queues": []any{ref(id)},
				"PolicyDocument": like(map[string]any{"Statement": arrayWith(like(map[string]any{
					"Effect": "Deny", "Action": "sqs:*", "Resource": getAtt(id, "Arn"),
					"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
				}))}),
			})
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestEventSourceMappings(t *testing.T) {
	base, full := get(t, "base"), get(t, "full")
	fn := func(v *variant, name string) string { return logicalID(v.backup.Functions[name]) }
	has(t, base.tmpl, "AWS::Lambda::EventSourceMapping", map[string]any{
		"FunctionName":                   ref(fn(base, lambdaenv.Worker)),
		"EventSourceArn":                 getAtt(logicalID(base.backup.TaskQueue), "Arn"),
		"BatchSize":                      5,
		"FunctionResponseTypes":          []any{"ReportBatchItemFailures"},
		"ScalingConfig":                  map[string]any{"MaximumConcurrency": 10},
		"MaximumBatchingWindowInSeconds": absent(),
	})
	has(t, base.tmpl, "AWS::Lambda::EventSourceMapping", map[string]any{
		"FunctionName":          ref(fn(base, lambdaenv.Assembler)),
		"EventSourceArn":        getAtt(logicalID(base.backup.ControlQueue), "Arn"),
		"BatchSize":             1,
		"FunctionResponseTypes": []any{"ReportBatchItemFailures"},
	})
	has(t, full.tmpl, "AWS::Lambda::EventSourceMapping", map[string]any{
		"FunctionName":                   ref(fn(full, lambdaenv.Worker)),
		"MaximumBatchingWindowInSeconds": 10,
		"FunctionResponseTypes":          []any{"ReportBatchItemFailures"},
	})
	has(t, full.tmpl, "AWS::Lambda::Function", map[string]any{
		"Description": assertions.Match_StringLikeRegexp(jsii.String("^edgevault worker")), "ReservedConcurrentExecutions": 20,
	})
	// Every mapping reports partial batch failures.
	for _, v := range []*variant{base, full} {
		for id, r := range ofType(v.json, "AWS::Lambda::EventSourceMapping") {
			if got := mustJSON(r["Properties"].(map[string]any)["FunctionResponseTypes"]); got != `["ReportBatchItemFailures"]` {
				t.Errorf("%s: %s FunctionResponseTypes = %s", v.name, id, got)
			}
		}
	}
}

// The worker's /tmp holds its spool budget with room to spare.
func TestWorkerEphemeralStorageFitsTheSpool(t *testing.T) {
	spec := fnSpecs(DefaultConfig())[lambdaenv.Worker]
	if int64(spec.ephemeralMB)<<20 < workerSpoolBytes+256<<20 {
		t.Fatalf("worker /tmp %d MiB does not hold the %d-byte spool budget and the runtime's own files", spec.ephemeralMB, workerSpoolBytes)
	}
}

func TestFunctions(t *testing.T) {
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		specs := fnSpecs(v.backup.Config)
		for _, fn := range lambdaenv.Functions {
			spec := specs[fn]
			id := logicalID(v.backup.Functions[fn])
			p := props(v.json, id)
			want := map[string]any{
				"Runtime":       "provided.al2023",
				"Architectures": []any{"arm64"},
				"Handler":       "bootstrap",
				"MemorySize":    spec.memoryMB,
				"Timeout":       spec.timeout.Seconds(),
				"LoggingConfig": map[string]any{
					"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
					"LogGroup": ref(logicalID(v.backup.Functions[fn].LogGroup())),
				},
			}
			if spec.async {
				want["DeadLetterConfig"] = map[string]any{"TargetArn": getAtt(logicalID(v.backup.InvokeDLQ), "Arn")}
			}
			if spec.loops {
				want["RecursiveLoop"] = "Allow"
			}
			if spec.ephemeralMB > 0 {
				want["EphemeralStorage"] = map[string]any{"Size": spec.ephemeralMB}
			}
			if name == "full" {
				want["TracingConfig"] = map[string]any{"Mode": "Active"}
			}
			for k, w := range want {
				if g := mustJSON(p[k]); g != mustJSON(w) {
					t.Errorf("%s %s: %s = %s, want %s", name, fn, k, g, mustJSON(w))
				}
			}
			for _, k := range []string{"DeadLetterConfig", "RecursiveLoop", "TracingConfig"} {
				if _, ok := want[k]; !ok && p[k] != nil {
					t.Errorf("%s %s: unexpected %s %v", name, fn, k, p[k])
				}
			}
			if fn == lambdaenv.Worker && spec.timeout.Minutes() != v.backup.Config.WorkerTimeout.Minutes() {
				t.Errorf("worker timeout %v, config %v", spec.timeout, v.backup.Config.WorkerTimeout)
			}
		}
		// Log groups: retained, KMS-encrypted, with retention.
		for id, r := range ofType(v.json, "AWS::Logs::LogGroup") {
			p := r["Properties"].(map[string]any)
			if mustJSON(p["KmsKeyId"]) != mustJSON(getAtt(logicalID(v.backup.Key), "Arn")) || p["RetentionInDays"] != 90.0 || r["DeletionPolicy"] != "Retain" {
				t.Errorf("%s: log group %s: %v", name, id, r)
			}
		}
	}
}

// TestFunctionEnvironmentMatchesLambdaenv is the contract check between
// infra and functions/: each function gets exactly the variables
// lambdaenv.Reads lists for it, with the stack's values.
func TestFunctionEnvironmentMatchesLambdaenv(t *testing.T) {
	if got, want := len(fnSpecs(DefaultConfig())), len(lambdaenv.Functions); got != want {
		t.Errorf("%d function specs for %d functions", got, want)
	}
	for _, name := range []string{"base", "full", "direct"} {
		v := get(t, name)
		b := v.backup
		if got := ofType(v.json, "AWS::Lambda::Function"); len(got) < len(lambdaenv.Functions) {
			t.Fatalf("%s: %d functions", name, len(got))
		}
		for _, fn := range lambdaenv.Functions {
			vars, _ := props(v.json, logicalID(b.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
			got := slices.Sorted(maps.Keys(vars))
			want := slices.Sorted(slices.Values(lambdaenv.Reads[fn]))
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s environment\n got %v\nwant %v (lambdaenv.Reads)", name, fn, got, want)
			}
			for _, k := range lambdaenv.TestOverrides {
				if _, ok := vars[k]; ok {
					t.Errorf("%s: %s sets test-only %s", name, fn, k)
				}
			}
			c := b.Config
			expect := map[string]any{
				lambdaenv.Bucket:            ref(logicalID(b.Bucket)),
				lambdaenv.StagingPrefix:     "jobs/",
				lambdaenv.ArchivePrefix:     "backups/",
				lambdaenv.KMSKeyARN:         getAtt(logicalID(b.Key), "Arn"),
				lambdaenv.TaskQueueURL:      ref(logicalID(b.TaskQueue)),
				lambdaenv.ControlQueueURL:   ref(logicalID(b.ControlQueue)),
				lambdaenv.SchedulerFunction: getAtt(logicalID(b.Functions[lambdaenv.Scheduler]), "Arn"),
				lambdaenv.EdgeBaseURL:       c.EdgeBaseURL,
				lambdaenv.ServiceKeySecret:  ref(logicalID(b.Secrets[lambdaenv.ServiceKeySecret])),
				lambdaenv.CloudflareAccount: c.CloudflareAccountID,
				lambdaenv.CloudflareSecret:  ref(logicalID(b.Secrets[lambdaenv.CloudflareSecret])),
				lambdaenv.Instances:         c.Instances,
				lambdaenv.SkipInstances:     strconv.FormatBool(c.SkipInstances),
				lambdaenv.EdgeBaseSecrets:   ref(logicalID(b.Secrets[lambdaenv.EdgeBaseSecrets])),
				lambdaenv.Concurrency:       fmt.Sprint(c.Concurrency),
				lambdaenv.SpoolDir:          "/tmp",
				lambdaenv.SpoolBytes:        fmt.Sprint(workerSpoolBytes),
				lambdaenv.DRBucket:          c.DR.Bucket,
				lambdaenv.DRRoleARN:         c.DR.RoleARN,
				lambdaenv.DRKMSKeyARN:       c.DR.KMSKeyARN,
				lambdaenv.DRRegion:          "",
				lambdaenv.APIAllowSecrets:   "false",
				lambdaenv.MetricsNamespace:  c.MetricsNamespace,
				lambdaenv.Deployed:          "true",
			}
			for k, val := range vars {
				if w, ok := expect[k]; !ok || mustJSON(val) != mustJSON(w) {
					t.Errorf("%s: %s %s = %s, want %s", name, fn, k, mustJSON(val), mustJSON(w))
				}
			}
		}
	}
	full := get(t, "full")
	vars := props(full.json, logicalID(full.backup.Functions[lambdaenv.DRCopy]))["Environment"].(map[string]any)["Variables"].(map[string]any)
	if vars[lambdaenv.DRBucket] != drBucket || vars[lambdaenv.DRRoleARN] != drRole || vars[lambdaenv.DRKMSKeyARN] != drKey {
		t.Errorf("full: drcopy DR settings %v", vars)
	}
	direct := get(t, "direct")
	if v := props(direct.json, logicalID(direct.backup.Functions[lambdaenv.Scheduler]))["Environment"].(map[string]any)["Variables"].(map[string]any); v[lambdaenv.Instances] != "workspace:ws-1, workspace:ws-2" || v[lambdaenv.SkipInstances] != "true" || v[lambdaenv.CloudflareAccount] != "" {
		t.Errorf("direct: scheduler instance settings %v", v)
	}
	if v := props(full.json, logicalID(full.backup.Functions[lambdaenv.Worker]))["Environment"].(map[string]any)["Variables"].(map[string]any); v[lambdaenv.MetricsNamespace] != "EdgeVaultTest" || v[lambdaenv.Concurrency] != "16" || v[lambdaenv.EdgeBaseURL] != edgebaseURL {
		t.Errorf("full: worker context values %v", v)
	}
}

// TestFunctionsStartWithTheStackEnvironment feeds each function's
// environment, as every variant of the stack sets it (CloudFormation
// references resolved to placeholders), to the functions' own
// configuration reader: a deployed function must pass its cold start (and
// refuse it with a test-only override added to its environment). Both
// variants set edgebaseUrl and a DR destination ("base" has neither: the
// stack warns about the URL, and drcopy has no trigger without DR), one in
// Edge mode and one without.
func TestFunctionsStartWithTheStackEnvironment(t *testing.T) {
	for _, name := range []string{"full", "direct"} {
		v := get(t, name)
		for _, fn := range lambdaenv.Functions {
			vars, _ := props(v.json, logicalID(v.backup.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
			env := func(k string) string {
				switch val := vars[k].(type) {
				case nil:
					return ""
				case string:
					return val
				default: // Ref, Fn::GetAtt: known once deployed
					return "resolved-" + strings.ToLower(k)
				}
			}
			if _, err := serverless.ConfigFromEnv(fn, env); err != nil {
				t.Errorf("%s: %s would fail its cold start: %v", name, fn, err)
			}
			for _, o := range lambdaenv.TestOverrides {
				val := "http://127.0.0.1:9"
				if o == lambdaenv.S3PathStyle {
					val = "true"
				}
				with := func(k string) string {
					if k == o {
						return val
					}
					return env(k)
				}
				if _, err := serverless.ConfigFromEnv(fn, with); err == nil || !strings.Contains(err.Error(), lambdaenv.Deployed) {
					t.Errorf("%s: %s starts with test-only %s set: %v", name, fn, o, err)
				}
			}
		}
	}
}

func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		opts       events.Options
	}{
		{"base", "cron(0 3 * * ? *)", events.Options{IncludeStorage: true}},
		{"full", "rate(12 hours)", events.Options{IncludeStorage: true, IncludeSecrets: true}},
	} {
		v := get(t, tc.name)
		scheduler := logicalID(v.backup.Functions[lambdaenv.Scheduler])
		p := props(v.json, logicalID(v.backup.Schedule))
		if p["ScheduleExpression"] != tc.expr || p["State"] != "ENABLED" {
			t.Errorf("%s: rule %v", tc.name, p)
		}
		targets := p["Targets"].([]any)
		if len(targets) != 1 {
			t.Fatalf("%s: targets %v", tc.name, targets)
		}
		target := targets[0].(map[string]any)
		if mustJSON(target["Arn"]) != mustJSON(getAtt(scheduler, "Arn")) ||
			mustJSON(target["DeadLetterConfig"]) != mustJSON(map[string]any{"Arn": getAtt(logicalID(v.backup.InvokeDLQ), "Arn")}) {
			t.Errorf("%s: target %v", tc.name, target)
		}
		// The input is a StartRequest the scheduler decodes, with the job id
		// taken from the event's id (one job per scheduled event).
		tr, _ := target["InputTransformer"].(map[string]any)
		paths, _ := tr["InputPathsMap"].(map[string]any)
		tmpl, _ := tr["InputTemplate"].(string)
		var ref string
		for k, v := range paths {
			if v == "$.id" {
				ref = k
			}
		}
		if ref == "" || !strings.Contains(tmpl, "<"+ref+">") {
			t.Fatalf("%s: input transformer %v does not use the event id", tc.name, tr)
		}
		input := strings.ReplaceAll(tmpl, "<"+ref+">", "0f1e2d3c-aaaa-bbbb-cccc-000000000001")
		dec := json.NewDecoder(strings.NewReader(input))
		dec.DisallowUnknownFields()
		var req events.StartRequest
		if err := dec.Decode(&req); err != nil {
			t.Fatalf("%s: input %s: %v", tc.name, input, err)
		}
		want := events.StartRequest{JobID: "backup-0f1e2d3c-aaaa-bbbb-cccc-000000000001", Kind: events.KindBackup, Trigger: events.TriggerSchedule, Options: tc.opts}
		if mustJSON(req) != mustJSON(want) {
			t.Errorf("%s: input %s, want %s", tc.name, input, mustJSON(want))
		}
		var raw struct{ Options map[string]any }
		_ = json.Unmarshal([]byte(input), &raw)
		if _, ok := raw.Options["includeSecrets"]; !ok {
			t.Errorf("%s: input does not spell out includeSecrets: %s", tc.name, input)
		}
		has(t, v.tmpl, "AWS::Lambda::Permission", map[string]any{
			"Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
			"FunctionName": getAtt(scheduler, "Arn"), "SourceArn": getAtt(logicalID(v.backup.Schedule), "Arn"),
		})
	}
	if get(t, "direct").backup.Schedule != nil {
		t.Error("direct: schedule=off still created a rule")
	}
}

func TestAPI(t *testing.T) {
	for _, name := range []string{"base", "full", "direct"} {
		v := get(t, name)
		methods := ofType(v.json, "AWS::ApiGateway::Method")
		if len(methods) == 0 {
			t.Fatalf("%s: no methods", name)
		}
		for id, m := range methods {
			p := m["Properties"].(map[string]any)
			if p["AuthorizationType"] != "AWS_IAM" {
				t.Errorf("%s: method %s authorization %v, want AWS_IAM", name, id, p["AuthorizationType"])
			}
			if p["Integration"].(map[string]any)["Type"] != "AWS_PROXY" {
				t.Errorf("%s: method %s integration %v", name, id, p["Integration"])
			}
		}
		c := v.backup.Config
		has(t, v.tmpl, "AWS::ApiGateway::Stage", map[string]any{
			"StageName": "v1",
			"MethodSettings": []any{map[string]any{
				"HttpMethod": "*", "ResourcePath": "/*",
				"ThrottlingRateLimit": c.APIRateLimit, "ThrottlingBurstLimit": c.APIBurstLimit,
				"LoggingLevel": "ERROR", "DataTraceEnabled": false, "MetricsEnabled": true,
			}},
			"AccessLogSetting": map[string]any{
				"DestinationArn": assertions.Match_AnyValue(),
				"Format":         assertions.Match_StringLikeRegexp(jsii.String(`\$context\.identity\.caller`)),
			},
			"TracingEnabled": name == "full",
		})
		has(t, v.tmpl, "AWS::ApiGateway::RestApi", map[string]any{
			"EndpointConfiguration": map[string]any{"Types": []any{"REGIONAL"}},
		})
	}
	// The access log destination is the stack's own (encrypted) log group.
	v := get(t, "base")
	stage := ofType(v.json, "AWS::ApiGateway::Stage")
	for _, s := range stage {
		dest := mustJSON(s["Properties"].(map[string]any)["AccessLogSetting"].(map[string]any)["DestinationArn"])
		groups := ofType(v.json, "AWS::Logs::LogGroup")
		found := false
		for id := range groups {
			found = found || strings.Contains(dest, `"Ref":"`+id+`"`)
		}
		if !found {
			t.Errorf("access log destination %s is not a log group of the stack", dest)
		}
	}
}

func TestSecrets(t *testing.T) {
	v := get(t, "base")
	for env, s := range v.backup.Secrets {
		id := logicalID(s)
		r := resources(v.json)[id]
		p := r["Properties"].(map[string]any)
		if mustJSON(p["KmsKeyId"]) != mustJSON(getAtt(logicalID(v.backup.Key), "Arn")) {
			t.Errorf("%s: KmsKeyId %v", env, p["KmsKeyId"])
		}
		// Created empty: operators put the real values.
		if p["SecretString"] != nil || p["GenerateSecretString"] != nil {
			t.Errorf("%s: the stack sets a value: %v", env, p)
		}
		if r["DeletionPolicy"] != "Retain" {
			t.Errorf("%s: DeletionPolicy %v", env, r["DeletionPolicy"])
		}
	}
	if len(v.backup.Secrets) != 3 {
		t.Errorf("%d secrets", len(v.backup.Secrets))
	}
}

func TestAlarms(t *testing.T) {
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		b := v.backup
		topic := logicalID(b.AlarmTopic)
		for id, a := range ofType(v.json, "AWS::CloudWatch::Alarm") {
			p := a["Properties"].(map[string]any)
			if mustJSON(p["AlarmActions"]) != mustJSON([]any{ref(topic)}) {
				t.Errorf("%s: alarm %s actions %v", name, id, p["AlarmActions"])
			}
			if p["Threshold"] != 0.0 || p["ComparisonOperator"] != "GreaterThanThreshold" || p["TreatMissingData"] != "notBreaching" {
				t.Errorf("%s: alarm %s: %v", name, id, p)
			}
		}
		for _, q := range []string{logicalID(b.TaskDLQ), logicalID(b.ControlDLQ), logicalID(b.InvokeDLQ)} {
			has(t, v.tmpl, "AWS::CloudWatch::Alarm", map[string]any{
				"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Statistic": "Maximum",
				"Dimensions": []any{map[string]any{"Name": "QueueName", "Value": getAtt(q, "QueueName")}},
			})
		}
		has(t, v.tmpl, "AWS::CloudWatch::Alarm", map[string]any{
			"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum",
			"Dimensions": []any{map[string]any{"Name": "FunctionName", "Value": ref(logicalID(b.Functions[lambdaenv.Worker]))}},
		})
		has(t, v.tmpl, "AWS::CloudWatch::Alarm", map[string]any{
			"Namespace": b.Config.MetricsNamespace, "MetricName": jobsFailedMetric, "Statistic": "Sum", "Dimensions": absent(),
		})
		has(t, v.tmpl, "AWS::SNS::Topic", map[string]any{"KmsMasterKeyId": getAtt(logicalID(b.Key), "Arn")})
		has(t, v.tmpl, "AWS::SNS::TopicPolicy", map[string]any{
			"Topics": []any{ref(topic)},
			"PolicyDocument": like(map[string]any{"Statement": arrayWith(
				like(map[string]any{"Effect": "Deny", "Action": "sns:Publish", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
				like(map[string]any{"Effect": "Allow", "Action": "sns:Publish", "Principal": map[string]any{"Service": "cloudwatch.amazonaws.com"},
					"Condition": like(map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": ref("AWS::AccountId")}})}),
			)}),
		})
		// CloudWatch may use the key to publish to the encrypted topic.
		has(t, v.tmpl, "AWS::KMS::Key", map[string]any{"KeyPolicy": like(map[string]any{"Statement": arrayWith(like(map[string]any{
			"Principal": map[string]any{"Service": "cloudwatch.amazonaws.com"}, "Action": []any{"kms:Decrypt", "kms:GenerateDataKey"},
		}))})})
	}
	has(t, get(t, "full").tmpl, "AWS::SNS::Subscription", map[string]any{"Protocol": "email", "Endpoint": "ops@example.com"})
}

func TestDRCopyTrigger(t *testing.T) {
	for _, name := range []string{"full", "direct"} {
		v := get(t, name)
		drcopy := logicalID(v.backup.Functions[lambdaenv.DRCopy])
		bucket := logicalID(v.backup.Bucket)
		has(t, v.tmpl, "Custom::S3BucketNotifications", map[string]any{
			"BucketName": ref(bucket),
			"NotificationConfiguration": map[string]any{"LambdaFunctionConfigurations": []any{map[string]any{
				"Events": []any{"s3:ObjectCreated:*"},
				"Filter": map[string]any{"Key": map[string]any{"FilterRules": assertions.Match_ArrayEquals(&[]any{
					map[string]any{"Name": "suffix", "Value": ".manifest.json"},
					map[string]any{"Name": "prefix", "Value": "backups/"},
				})}},
				"LambdaFunctionArn": getAtt(drcopy, "Arn"),
			}}},
		})
		has(t, v.tmpl, "AWS::Lambda::Permission", map[string]any{
			"Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com", "FunctionName": getAtt(drcopy, "Arn"),
			"SourceArn": getAtt(bucket, "Arn"), "SourceAccount": ref("AWS::AccountId"),
		})
	}
}

func TestDRDestinationStack(t *testing.T) {
	v := get(t, "full")
	if v.dr == nil {
		t.Fatal("no DR destination stack with drSourceRoleArn")
	}
	has(t, v.drTmpl, "AWS::S3::Bucket", map[string]any{
		"VersioningConfiguration": map[string]any{"Status": "Enabled"},
		"ObjectLockEnabled":       true,
		"ObjectLockConfiguration": map[string]any{"ObjectLockEnabled": "Enabled",
			"Rule": map[string]any{"DefaultRetention": map[string]any{"Mode": "COMPLIANCE", "Days": 35}}},
		"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{map[string]any{
			"BucketKeyEnabled":              true,
			"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": getAtt(logicalID(v.dr.Key), "Arn")},
		}}},
		"PublicAccessBlockConfiguration": map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"LifecycleConfiguration": like(map[string]any{"Rules": arrayWith(like(map[string]any{"Prefix": "backups/", "ExpirationInDays": 400}))}),
	})
	has(t, v.drTmpl, "AWS::S3::BucketPolicy", map[string]any{
		"Bucket": ref(logicalID(v.dr.Bucket)),
		"PolicyDocument": like(map[string]any{"Statement": arrayWith(like(map[string]any{
			"Effect": "Deny", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
		}))}),
	})
	// Only the source drcopy role may assume the writer role.
	has(t, v.drTmpl, "AWS::IAM::Role", map[string]any{
		"AssumeRolePolicyDocument": like(map[string]any{"Statement": []any{map[string]any{
			"Action": "sts:AssumeRole", "Effect": "Allow",
			"Principal": map[string]any{"AWS": map[string]any{"Fn::Join": []any{"", []any{"arn:", ref("AWS::Partition"), ":iam::444455556666:root"}}}},
			"Condition": map[string]any{"ArnEquals": map[string]any{"aws:PrincipalArn": drSource}},
		}}}),
	})
	st := roleStatements(v.drJSON, logicalID(v.dr.WriterRole))
	for _, s := range st {
		for _, a := range s.actions {
			if strings.Contains(a, "Delete") || strings.HasPrefix(a, "s3:PutObjectRetention") || strings.HasPrefix(a, "s3:BypassGovernance") {
				t.Errorf("DR writer role may %s", a)
			}
		}
	}
	if !grants(st, "s3:PutObject", "<"+logicalID(v.dr.Bucket)+".Arn>/backups/*") || !grants(st, "kms:GenerateDataKey", "<"+logicalID(v.dr.Key)+".Arn>") {
		t.Errorf("DR writer role cannot write archives: %+v", st)
	}
	outputs := v.drJSON["Outputs"].(map[string]any)
	for _, o := range []string{"DRBucketName", "DRRoleArn", "DRKmsKeyArn", "DRAccount"} {
		if outputs[o] == nil {
			t.Errorf("DR stack lacks output %s", o)
		}
	}
}

// ---------------------------------------------------------------------------
// Least privilege, checked over whole templates.

// render flattens an intrinsic the way cdk-nag does: <Id.Attr>, <Id>.
func render(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		if a, ok := x["Fn::GetAtt"].([]any); ok && len(a) == 2 {
			return fmt.Sprintf("<%v.%v>", a[0], a[1])
		}
		if r, ok := x["Ref"].(string); ok {
			return "<" + r + ">"
		}
		if j, ok := x["Fn::Join"].([]any); ok && len(j) == 2 {
			var parts []string
			for _, p := range j[1].([]any) {
				parts = append(parts, render(p))
			}
			return strings.Join(parts, j[0].(string))
		}
	}
	return mustJSON(v)
}

func strs(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, render(e))
		}
		return out
	default:
		return []string{render(x)}
	}
}

type stmt struct {
	resType, resID string
	actions        []string
	resources      []string
	condition      map[string]any
	raw            map[string]any
}

// allowStatements finds every Allow statement of every policy document
// in a template (identity, bucket, queue, topic and key policies, role
// trust policies).
func allowStatements(tmpl map[string]any) []stmt {
	var out []stmt
	var walk func(id, typ string, v any)
	walk = func(id, typ string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if sts, ok := x["Statement"]; ok {
				list, _ := sts.([]any)
				if m, ok := sts.(map[string]any); ok {
					list = []any{m}
				}
				for _, s := range list {
					sm := s.(map[string]any)
					if sm["Effect"] != "Allow" {
						continue
					}
					c, _ := sm["Condition"].(map[string]any)
					out = append(out, stmt{typ, id, strs(sm["Action"]), strs(sm["Resource"]), c, sm})
				}
			}
			for _, e := range x {
				walk(id, typ, e)
			}
		case []any:
			for _, e := range x {
				walk(id, typ, e)
			}
		}
	}
	for id, r := range resources(tmpl) {
		walk(id, r["Type"].(string), r["Properties"])
	}
	return out
}

// wildcardResources lists every resource with a "*" an Allow statement
// may name, and why it cannot be narrower.
var wildcardResources = []struct {
	resType string
	re      *regexp.Regexp
	actions string // when set, every action must match
	why     string
}{
	{"AWS::KMS::Key", regexp.MustCompile(`^\*$`), "", "in a key policy, * is the key itself"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^\*$`), `^xray:(PutTraceSegments|PutTelemetryRecords)$`, "X-Ray has no resource-level permissions (tracing=true only)"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^<Backups[0-9A-F]{8}\.Arn>/jobs/\*$`), "", "staging objects: keys generated per job and task"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^<Backups[0-9A-F]{8}\.Arn>/backups/\*$`), "", "archives: names derived from each backup's start time"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^<Archives[0-9A-F]{8}\.Arn>/backups/\*$`), "", "DR copies of archives (destination stack)"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^arn:<AWS::Partition>:s3:::` + regexp.QuoteMeta(drBucket) + `/backups/\*$`), "", "DR copies in the destination bucket (bucket-policy mode), pinned to the DR account by s3:ResourceAccount"},
	{"AWS::S3::BucketPolicy", regexp.MustCompile(`^<AccessLogs[0-9A-F]{8}\.Arn>/(backup|dr)-bucket/\*$`), "", "S3 log delivery names the log objects under the source bucket's prefix"},
}

func TestNoWildcardPermissions(t *testing.T) {
	seen := map[string]bool{}
	var report []string
	for _, name := range []string{"base", "full", "direct"} {
		v := get(t, name)
		tmpls := []map[string]any{v.json}
		if v.drJSON != nil {
			tmpls = append(tmpls, v.drJSON)
		}
		for _, tmpl := range tmpls {
			for _, s := range allowStatements(tmpl) {
				for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
					if _, ok := s.raw[k]; ok {
						t.Errorf("%s: %s %s: Allow with %s", name, s.resType, s.resID, k)
					}
				}
				if len(s.actions) == 0 {
					t.Errorf("%s: %s %s: Allow without actions", name, s.resType, s.resID)
				}
				for _, a := range s.actions {
					if strings.Contains(a, "*") {
						t.Errorf("%s: %s %s allows wildcard action %q", name, s.resType, s.resID, a)
					}
				}
				if s.resType == "AWS::IAM::Policy" && len(s.resources) == 0 {
					t.Errorf("%s: %s has a statement without resources", name, s.resID)
				}
				for _, r := range s.resources {
					if !strings.Contains(r, "*") {
						continue
					}
					why := ""
					for _, w := range wildcardResources {
						if w.resType != s.resType || !w.re.MatchString(r) {
							continue
						}
						ok := true
						for _, a := range s.actions {
							ok = ok && (w.actions == "" || regexp.MustCompile(w.actions).MatchString(a))
						}
						if ok {
							why = w.why
							break
						}
					}
					if why == "" {
						t.Errorf("%s: %s %s: unjustified wildcard resource %q for %v", name, s.resType, s.resID, r, s.actions)
						continue
					}
					line := fmt.Sprintf("%-22s %-55s %s", s.resType, r, why)
					if !seen[line] {
						seen[line] = true
						report = append(report, line)
					}
				}
			}
			// Lambda permissions are single actions on one function.
			for id, p := range ofType(tmpl, "AWS::Lambda::Permission") {
				if a := p["Properties"].(map[string]any)["Action"]; a != "lambda:InvokeFunction" {
					t.Errorf("%s: permission %s action %v", name, id, a)
				}
			}
		}
	}
	sort.Strings(report)
	t.Logf("wildcard resources and their justification:\n%s", strings.Join(report, "\n"))
}

// roleStatements collects the Allow statements of the identity policies
// attached to a role.
func roleStatements(tmpl map[string]any, role string) []stmt {
	var out []stmt
	for id, r := range ofType(tmpl, "AWS::IAM::Policy") {
		p := r["Properties"].(map[string]any)
		if !strings.Contains(mustJSON(p["Roles"]), `"Ref":"`+role+`"`) {
			continue
		}
		out = append(out, allowStatements(map[string]any{"Resources": map[string]any{id: r}})...)
	}
	return out
}

func grants(st []stmt, action, resource string) bool {
	for _, s := range st {
		if slices.Contains(s.actions, action) && slices.Contains(s.resources, resource) {
			return true
		}
	}
	return false
}

// TestFunctionGrants checks each role against the contract: secrets and
// queues exactly as lambdaenv.Reads says, S3 per the function's spec, and
// the few single-purpose grants.
func TestFunctionGrants(t *testing.T) {
	for _, name := range []string{"base", "full", "direct"} {
		v := get(t, name)
		b := v.backup
		bucket := "<" + logicalID(b.Bucket) + ".Arn>"
		specs := fnSpecs(b.Config)
		for _, fn := range lambdaenv.Functions {
			st := roleStatements(v.json, logicalID(b.Roles[fn]))
			spec := specs[fn]
			for env, sec := range b.Secrets {
				secret := "<" + logicalID(sec) + ">"
				if got, want := grants(st, "secretsmanager:GetSecretValue", secret), reads(fn, env); got != want {
					t.Errorf("%s: %s GetSecretValue on %s = %v, want %v (reads %s)", name, fn, secret, got, want, env)
				}
				wantPut := fn == lambdaenv.Worker && env == lambdaenv.EdgeBaseSecrets
				if got := grants(st, "secretsmanager:PutSecretValue", secret); got != wantPut {
					t.Errorf("%s: %s PutSecretValue on %s = %v", name, fn, secret, got)
				}
			}
			for q, want := range map[string]bool{logicalID(b.TaskQueue): spec.sendsTasks, logicalID(b.ControlQueue): spec.sendsControl} {
				if got := grants(st, "sqs:SendMessage", "<"+q+".Arn>"); got != want {
					t.Errorf("%s: %s SendMessage to %s = %v, want %v", name, fn, q, got, want)
				}
				if want && !reads(fn, map[string]string{logicalID(b.TaskQueue): lambdaenv.TaskQueueURL, logicalID(b.ControlQueue): lambdaenv.ControlQueueURL}[q]) {
					t.Errorf("%s: %s may send to %s but is not given its URL", name, fn, q)
				}
			}
			for prefix, access := range map[string]s3Access{"jobs/": spec.staging, "backups/": spec.archive} {
				var got []string
				for _, s := range st {
					if slices.Contains(s.resources, bucket+"/"+prefix+"*") {
						got = append(got, s.actions...)
					}
				}
				if want := access.actions(); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
					t.Errorf("%s: %s on %s* may %v, want %v", name, fn, prefix, got, want)
				}
			}
			if !grants(st, "s3:ListBucket", bucket) || !grants(st, "kms:Decrypt", "<"+logicalID(b.Key)+".Arn>") {
				t.Errorf("%s: %s cannot list the bucket or decrypt its objects", name, fn)
			}
			for _, s := range st {
				if strings.HasPrefix(s.actions[0], "kms:") && (s.condition == nil || !strings.Contains(mustJSON(s.condition), "kms:ViaService")) {
					t.Errorf("%s: %s uses KMS outside a service: %v", name, fn, s.raw)
				}
				if slices.Contains(s.actions, "lambda:InvokeFunction") {
					if fn != lambdaenv.API || !slices.Equal(s.resources, []string{"<" + logicalID(b.Functions[lambdaenv.Scheduler]) + ".Arn>"}) {
						t.Errorf("%s: %s may invoke %v", name, fn, s.resources)
					}
				}
				if slices.Contains(s.actions, "sts:AssumeRole") {
					if fn != lambdaenv.DRCopy || name != "full" || !slices.Equal(s.resources, []string{drRole}) {
						t.Errorf("%s: %s may assume %v", name, fn, s.resources)
					}
				}
				if strings.HasPrefix(mustJSON(s.resources), `["arn:<AWS::Partition>:s3:::`+drBucket) {
					if fn != lambdaenv.DRCopy || name != "direct" || !strings.Contains(mustJSON(s.condition), `"s3:ResourceAccount":"`+drAccount+`"`) {
						t.Errorf("%s: %s reaches the DR bucket: %v", name, fn, s.raw)
					}
				}
			}
		}
		drcopy := roleStatements(v.json, logicalID(b.Roles[lambdaenv.DRCopy]))
		switch name {
		case "full":
			if !grants(drcopy, "sts:AssumeRole", drRole) {
				t.Errorf("full: drcopy cannot assume %s", drRole)
			}
		case "direct":
			if !grants(drcopy, "s3:PutObject", "arn:<AWS::Partition>:s3:::"+drBucket+"/backups/*") || !grants(drcopy, "kms:GenerateDataKey", drKey) {
				t.Errorf("direct: drcopy cannot write the DR bucket: %+v", drcopy)
			}
		}
	}
}
