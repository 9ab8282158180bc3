package main

import (
	"encoding/json"
	"errors"
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
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// The stack tests synthesize four variants of the app once each (jsii
// runs node, so every synth costs seconds) and share the templates:
//   - base:   only what is required (the asset directory, edgebaseUrl);
//     every other setting at its default;
//   - full:   Object Lock, DR through an assumed role plus the DR
//     destination stack, tracing, alarm e-mails, API callers by context,
//     reserved worker concurrency and other non-default values;
//   - direct: DR through the destination bucket policy (no role), no
//     schedule, no API Gateway account role, archives kept forever, an
//     http:// EdgeBase URL allowed explicitly, no Edge mode: dynamic
//     instances from the instances context;
//   - dronly: the DR destination stack alone (drOnly), without function
//     assets, its bucket explicitly without Object Lock.
//
// "base", "full" and "drill" run in repository mode (the default; "full"
// with a KMS key, prefix, retention and grace period of its own),
// "direct" in archive mode (repository_test.go).

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
	drRegion    = "eu-west-1"
	drSource    = "arn:aws:iam::444455556666:role/EdgeVault-DrCopyRole-ABC"
	srcBucket   = "edgevault-backups-abc123"
	srcKey      = "arn:aws:kms:us-east-1:444455556666:key/abcd1234-12ab-34cd-56ef-1234567890ab"
	breakGlass  = "arn:aws:iam::111122223333:role/break-glass"
	apiBackuper = "arn:aws:iam::444455556666:role/ci-backups"
	apiRestorer = "arn:aws:iam::444455556666:role/oncall-restores"
	edgebaseURL = "https://edgebase.example.com"
	cfAccount   = "0123456789abcdef0123456789abcdef"
	repoKey     = "arn:aws:kms:us-east-1:444455556666:key/0f0f0f0f-12ab-34cd-56ef-1234567890ab"
)

// drDestinationContext is what every variant with the DR stack passes.
var drDestinationContext = map[string]any{
	ctxDRSourceRoleARN: drSource, ctxDRSourceBucket: srcBucket, ctxDRSourceKeyARN: srcKey, ctxDRRegion: drRegion,
}

var variantContext = map[string]map[string]any{
	"base": {ctxEdgeBaseURL: edgebaseURL},
	"full": withDR(map[string]any{
		ctxEdgeBaseURL: edgebaseURL, ctxCloudflareAccount: cfAccount,
		ctxR2Bucket: "edgebase-storage", ctxR2AccountID: cfAccount,
		ctxObjectLockMode: "governance", ctxObjectLockDays: "30",
		ctxDRAccount: drAccount, ctxDRBucket: drBucket, ctxDRRoleARN: drRole, ctxDRKMSKeyARN: drKey,
		ctxTracing: "true", ctxAlarmEmail: "ops@example.com",
		ctxWorkerReservedConcurrency: "20", ctxWorkerTimeout: "12", ctxMaxReceiveCount: "6",
		ctxTaskBatchingWindow: "10", ctxIncludeSecrets: "true", ctxSchedule: "rate(12 hours)",
		ctxMetricsNamespace: "EdgeVaultTest", ctxConcurrency: "16",
		ctxBackupMaxAgeHours: "13", ctxDRCopyMaxAgeHours: "14", ctxTaskAgeAlarmMinutes: "30",
		ctxAPIBackupRoleARNs: apiBackuper, ctxAPIRestoreRoleARNs: apiRestorer, ctxAPIAllowSecrets: "true",
		ctxDRObjectLockDays: "40", ctxDRRetentionDays: "400",
		ctxDRKeyBreakGlassARN: breakGlass, ctxDRAlarmEmail: "dr-ops@example.com",
		ctxNotifyURL:           "https://hooks.example.com/edgevault",
		ctxRepositoryKMSKeyARN: repoKey, ctxRepositoryPrefix: "vault/", ctxRetention: "last=3,daily=10", ctxPruneGrace: "72h",
	}),
	"direct": {
		ctxEdgeBaseURL: "http://edgebase.internal:8787", ctxAllowInsecureEdgeBaseURL: "true",
		ctxInstances: "workspace:ws-1, workspace:ws-2", ctxSkipInstances: "true",
		ctxDRAccount: drAccount, ctxDRRegion: drRegion, ctxDRBucket: drBucket, ctxDRKMSKeyARN: drKey,
		ctxSchedule: "off", ctxAPICloudWatchRole: "false",
		ctxRetentionDays: "0", ctxArchiveTransitionDays: "0",
		ctxBackupMode: "archive",
	},
	"dronly": withDR(map[string]any{ctxDROnly: "true", ctxDRObjectLockMode: "none"}),
	// base with a restore drill (drill_test.go).
	"drill": {ctxEdgeBaseURL: edgebaseURL, ctxDrillURL: drillURL, ctxDrillMaxAgeDays: "9"},
}

func withDR(ctx map[string]any) map[string]any {
	out := maps.Clone(drDestinationContext)
	maps.Copy(out, ctx)
	return out
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
	for _, fn := range slices.Concat(lambdaenv.Functions, lambdaenv.Optional) {
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
	if name == "dronly" {
		ctx[ctxAssetDir] = filepath.Join(outDir, "no-assets") // never created
	}
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
		if backup != nil {
			v.tmpl = assertions.Template_FromStack(backup.Stack, nil)
			v.json = *v.tmpl.ToJSON()
			v.nagError = errorsOf(backup.Stack)
		}
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

func warningsOf(stack awscdk.Stack) []string {
	var out []string
	for _, m := range *assertions.Annotations_FromStack(stack).FindWarning(jsii.String("*"), assertions.Match_AnyValue()) {
		out = append(out, fmt.Sprint(m.Entry.Data))
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
	for _, name := range []string{"base", "full", "direct", "dronly", "drill"} {
		v := get(t, name)
		for _, e := range v.nagError {
			t.Errorf("%s: %s", name, e)
		}
	}
}

func TestResourceCounts(t *testing.T) {
	base, full, direct := get(t, "base"), get(t, "full"), get(t, "direct")
	for typ, n := range map[string][3]int{
		"AWS::KMS::Key":                       {3, 2, 2}, // archives; secrets, logs, alarms (+ repository, unless brought)
		"AWS::S3::Bucket":                     {2, 2, 2}, // backups + access logs
		"AWS::S3::BucketPolicy":               {2, 2, 2},
		"AWS::SQS::Queue":                     {5, 5, 5}, // task, control, their DLQs, invoke DLQ
		"AWS::SQS::QueuePolicy":               {5, 5, 5},
		"AWS::SecretsManager::Secret":         {5, 5, 5}, // service key, Cloudflare token, EdgeBase secrets, notification signing, R2 credentials
		"AWS::SecretsManager::ResourcePolicy": {5, 5, 5},
		"AWS::Lambda::Function":               {6, 7, 6}, // (+ maintain in repository mode) + CDK's bucket-notification handler with DR
		"AWS::Lambda::EventSourceMapping":     {2, 2, 2},
		"AWS::Lambda::EventInvokeConfig":      {3, 3, 2},  // scheduler, drcopy (+ maintain)
		"AWS::Logs::LogGroup":                 {7, 7, 6},  // five functions (+ maintain) + API access logs
		"AWS::Logs::MetricFilter":             {2, 2, 2},  // finished backups, started restores
		"AWS::IAM::Role":                      {9, 10, 8}, // five functions (+ maintain), two API roles + API GW logging (+ notification handler)
		"AWS::Events::Rule":                   {4, 5, 2},  // schedule, watchdog, DR reconcile (+ maintain's daily and weekly)
		"AWS::ApiGateway::RestApi":            {1, 1, 1},
		"AWS::ApiGateway::Method":             {2, 2, 2}, // ANY / and ANY /{proxy+}
		"AWS::ApiGateway::Stage":              {1, 1, 1},
		"AWS::ApiGateway::Account":            {1, 1, 0},
		"AWS::SNS::Topic":                     {1, 1, 1},
		"AWS::SNS::TopicPolicy":               {1, 1, 1},
		"AWS::SNS::Subscription":              {0, 1, 0},
		// Freshness, three DLQs, worker errors, failed jobs, five
		// throttles, API 5XX, task age, restore started (+ DR copy
		// freshness) (+ maintain's throttles and errors).
		"AWS::CloudWatch::Alarm":        {16, 17, 15},
		"Custom::S3BucketNotifications": {0, 1, 1},
	} {
		count(t, base.tmpl, typ, n[0])
		count(t, full.tmpl, typ, n[1])
		count(t, direct.tmpl, typ, n[2])
	}
	for typ, n := range map[string]int{
		"AWS::KMS::Key": 2, "AWS::S3::Bucket": 2, "AWS::S3::BucketPolicy": 2, "AWS::IAM::Role": 1,
		"AWS::IAM::Policy": 1, "AWS::Lambda::Function": 0, "AWS::SNS::Topic": 1, "AWS::SNS::Subscription": 1,
		"AWS::CloudWatch::Alarm": 2,
	} {
		count(t, full.drTmpl, typ, n)
	}
	// The DR stack alone needs no function assets and defines no backup
	// stack.
	if dronly := get(t, "dronly"); dronly.backup != nil || dronly.dr == nil {
		t.Errorf("dronly: backup stack %v, DR stack %v", dronly.backup != nil, dronly.dr != nil)
	}
}

// Both stacks refuse to be deleted by accident.
func TestTerminationProtection(t *testing.T) {
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		stacks := []awscdk.Stack{v.backup.Stack}
		if v.dr != nil {
			stacks = append(stacks, v.dr.Stack)
		}
		for _, st := range stacks {
			if p := st.TerminationProtection(); p == nil || !*p {
				t.Errorf("%s: %s has no termination protection", name, *st.StackName())
			}
		}
	}
}

func TestKeyRotationAndPolicy(t *testing.T) {
	for _, tmpl := range []assertions.Template{get(t, "base").tmpl, get(t, "full").drTmpl} {
		has(t, tmpl, "AWS::KMS::Key", map[string]any{"EnableKeyRotation": true, "PendingWindowInDays": 30})
	}
	for _, v := range []*variant{get(t, "base"), get(t, "full")} {
		for id, r := range ofType(v.json, "AWS::KMS::Key") {
			if r["Properties"].(map[string]any)["EnableKeyRotation"] != true || r["DeletionPolicy"] != "Retain" {
				t.Errorf("%s: key %s: %v", v.name, id, r)
			}
		}
	}
	base := get(t, "base")
	keyPolicy := func(k constructs.IConstruct) string {
		return mustJSON(props(base.json, logicalID(k))["KeyPolicy"])
	}
	// CloudWatch Logs may use the ops key for this account's log groups
	// only; CloudWatch alarms of this account may publish with it.
	has(t, base.tmpl, "AWS::KMS::Key", map[string]any{"KeyPolicy": like(map[string]any{
		"Statement": arrayWith(like(map[string]any{
			"Sid": "CloudWatchLogsOfThisAccount",
			"Condition": map[string]any{"ArnLike": map[string]any{"kms:EncryptionContext:aws:logs:arn": map[string]any{"Fn::Join": []any{"", []any{
				"arn:", ref("AWS::Partition"), ":logs:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":log-group:*",
			}}}}},
		}), like(map[string]any{
			"Sid":       "CloudWatchAlarmsToEncryptedTopic",
			"Principal": map[string]any{"Service": "cloudwatch.amazonaws.com"},
			"Condition": like(map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": ref("AWS::AccountId")}}),
		})),
	})})
	// The archive key serves the bucket only: no service uses it as
	// itself.
	if p := keyPolicy(base.backup.ArchiveKey); strings.Contains(p, "logs.") || strings.Contains(p, "cloudwatch") {
		t.Errorf("archive key serves logs or alarms: %s", p)
	}
	if p := keyPolicy(base.backup.OpsKey); !strings.Contains(p, "CloudWatchLogsOfThisAccount") {
		t.Errorf("ops key policy lacks the logs statement: %s", p)
	}
	if logicalID(base.backup.ArchiveKey) == logicalID(base.backup.OpsKey) {
		t.Error("one key for archives and operations")
	}
	// "Key" stays the archive key, so existing archives stay readable.
	if id := logicalID(base.backup.ArchiveKey); !strings.HasPrefix(id, "Key") {
		t.Errorf("archive key logical id %s changed", id)
	}
	for _, k := range []constructs.IConstruct{base.backup.ArchiveKey, base.backup.OpsKey} {
		if strings.Contains(keyPolicy(k), "NoDeletionButBreakGlass") {
			t.Errorf("backup stack key %s denies deletion", logicalID(k))
		}
	}
}

func TestBackupBucket(t *testing.T) {
	base := get(t, "base")
	key := logicalID(base.backup.ArchiveKey)
	logs := logicalID(base.backup.AccessLogs)
	bucket := logicalID(base.backup.Bucket)
	has(t, base.tmpl, "AWS::S3::Bucket", map[string]any{
		"VersioningConfiguration": map[string]any{"Status": "Enabled"},
		"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{map[string]any{
			"BucketKeyEnabled":              true,
			"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": getAtt(key, "Arn")},
			"BlockedEncryptionTypes":        map[string]any{"EncryptionType": []any{"SSE-C"}},
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
	// The DR writer role (drRoleArn) reads archives, and only archives,
	// for the server-side copy: through the DR account, narrowed to the
	// role by ARN.
	readGrant := map[string]any{
		"Sid": "DRWriterRoleReadsArchives", "Effect": "Allow",
		"Principal": map[string]any{"AWS": map[string]any{"Fn::Join": []any{"", []any{"arn:", ref("AWS::Partition"), ":iam::" + drAccount + ":root"}}}},
		"Action":    []any{"s3:GetObject", "s3:GetObjectVersion"},
		"Resource":  map[string]any{"Fn::Join": []any{"", []any{getAtt(logicalID(full.backup.Bucket), "Arn"), "/backups/*"}}},
		"Condition": map[string]any{"ArnEquals": map[string]any{"aws:PrincipalArn": drRole}},
	}
	has(t, full.tmpl, "AWS::S3::BucketPolicy", map[string]any{
		"Bucket": ref(logicalID(full.backup.Bucket)), "PolicyDocument": like(map[string]any{"Statement": arrayWith(readGrant)}),
	})
	has(t, full.tmpl, "AWS::KMS::Key", map[string]any{"KeyPolicy": like(map[string]any{"Statement": arrayWith(map[string]any{
		"Sid": "DRWriterRoleDecryptsArchivesViaS3", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
		"Principal": readGrant["Principal"],
		"Condition": map[string]any{
			"ArnEquals":    map[string]any{"aws:PrincipalArn": drRole},
			"StringEquals": map[string]any{"kms:ViaService": []any{map[string]any{"Fn::Join": []any{"", []any{"s3.", ref("AWS::Region"), ".amazonaws.com"}}}, "s3." + drRegion + ".amazonaws.com"}},
		},
	})})})
	if p := mustJSON(props(full.json, logicalID(full.backup.OpsKey))); strings.Contains(p, drRole) {
		t.Errorf("the DR writer role may use the ops key: %s", p)
	}
	// Without a DR role, or without DR, nobody outside the account reads.
	for _, name := range []string{"base", "direct"} {
		if p := mustJSON(get(t, name).json); strings.Contains(p, "DRWriterRole") {
			t.Errorf("%s: read grant without drRoleArn", name)
		}
	}

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
	}{{"base", 600, 5}, {"full", 720, 6}} {
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
		"ScalingConfig":         map[string]any{"MaximumConcurrency": 2},
	})
	// The worker learns its attempts from the task queue's redrive policy
	// at cold start.
	if st := roleStatements(base.json, logicalID(base.backup.Roles[lambdaenv.Worker])); !grants(st, "sqs:GetQueueAttributes", "<"+logicalID(base.backup.TaskQueue)+".Arn>") {
		t.Errorf("worker cannot read the task queue's redrive policy: %+v", st)
	}
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
			if mustJSON(p["KmsKeyId"]) != mustJSON(getAtt(logicalID(v.backup.OpsKey), "Arn")) || p["RetentionInDays"] != 90.0 || r["DeletionPolicy"] != "Retain" {
				t.Errorf("%s: log group %s: %v", name, id, r)
			}
		}
	}
}

// TestFunctionEnvironmentMatchesLambdaenv is the contract check between
// infra and functions/: each function gets exactly the variables
// lambdaenv.Reads lists for it, with the stack's values.
func TestFunctionEnvironmentMatchesLambdaenv(t *testing.T) {
	archiveMode := DefaultConfig()
	archiveMode.Repository.Mode = backupModeArchive
	if got, want := len(fnSpecs(archiveMode)), len(lambdaenv.Functions); got != want {
		t.Errorf("%d function specs for %d functions", got, want)
	}
	for _, name := range []string{"base", "full", "direct", "drill"} {
		v := get(t, name)
		b := v.backup
		if got := ofType(v.json, "AWS::Lambda::Function"); len(got) < len(b.deployed()) {
			t.Fatalf("%s: %d functions", name, len(got))
		}
		signingKey := any("")
		if b.SigningKey != nil {
			signingKey = getAtt(logicalID(b.SigningKey), "Arn")
		}
		for _, fn := range b.deployed() {
			vars, _ := props(v.json, logicalID(b.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
			got := slices.Sorted(maps.Keys(vars))
			want := slices.Sorted(slices.Values(lambdaenv.Reads[fn]))
			if !b.Config.Repository.Enabled() {
				// Archive mode: the functions read "" for the repository.
				want = slices.DeleteFunc(want, func(k string) bool { return slices.Contains(repositoryEnvs, k) })
			}
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
				lambdaenv.KMSKeyARN:         getAtt(logicalID(b.ArchiveKey), "Arn"),
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
				lambdaenv.R2Endpoint:        c.R2EndpointURL(),
				lambdaenv.R2Bucket:          c.R2Bucket,
				lambdaenv.R2Secret:          ref(logicalID(b.Secrets[lambdaenv.R2Secret])),
				lambdaenv.Concurrency:       fmt.Sprint(c.Concurrency),
				lambdaenv.SpoolDir:          "/tmp",
				lambdaenv.SpoolBytes:        fmt.Sprint(workerSpoolBytes),
				lambdaenv.DRBucket:          c.DR.Bucket,
				lambdaenv.DRRoleARN:         c.DR.RoleARN,
				lambdaenv.DRKMSKeyARN:       c.DR.KMSKeyARN,
				lambdaenv.DRRegion:          c.DR.Region,
				lambdaenv.APIAllowSecrets:   strconv.FormatBool(c.APIAllowSecrets),
				lambdaenv.NotifyURL:         c.NotifyURL,
				lambdaenv.NotifySecret:      ref(logicalID(b.Secrets[lambdaenv.NotifySecret])),
				lambdaenv.MetricsNamespace:  c.MetricsNamespace + "/" + c.StackName,
				lambdaenv.Deployed:          "true",
				lambdaenv.SigningKeyARN:     signingKey,
				lambdaenv.DrillURL:          c.Drill.URL,
			}
			if b.DrillKeySecret != nil {
				expect[lambdaenv.DrillKeySecret] = ref(logicalID(b.DrillKeySecret))
			}
			if r := c.Repository; r.Enabled() {
				expect[lambdaenv.RepositoryPrefix], expect[lambdaenv.Retention], expect[lambdaenv.PruneGrace] = r.Prefix, r.Retention, r.PruneGrace.String()
				expect[lambdaenv.RepositoryKMSKey] = r.KMSKeyARN
				if b.RepositoryKey != nil {
					expect[lambdaenv.RepositoryKMSKey] = getAtt(logicalID(b.RepositoryKey), "Arn")
				}
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
	if vars[lambdaenv.DRBucket] != drBucket || vars[lambdaenv.DRRoleARN] != drRole || vars[lambdaenv.DRKMSKeyARN] != drKey || vars[lambdaenv.DRRegion] != drRegion {
		t.Errorf("full: drcopy DR settings %v", vars)
	}
	if v := props(full.json, logicalID(full.backup.Functions[lambdaenv.API]))["Environment"].(map[string]any)["Variables"].(map[string]any); v[lambdaenv.APIAllowSecrets] != "true" {
		t.Errorf("full: api %s = %v", lambdaenv.APIAllowSecrets, v[lambdaenv.APIAllowSecrets])
	}
	base := get(t, "base")
	if v := props(base.json, logicalID(base.backup.Functions[lambdaenv.API]))["Environment"].(map[string]any)["Variables"].(map[string]any); v[lambdaenv.APIAllowSecrets] != "false" {
		t.Errorf("base: api %s = %v", lambdaenv.APIAllowSecrets, v[lambdaenv.APIAllowSecrets])
	}
	direct := get(t, "direct")
	if v := props(direct.json, logicalID(direct.backup.Functions[lambdaenv.Scheduler]))["Environment"].(map[string]any)["Variables"].(map[string]any); v[lambdaenv.Instances] != "workspace:ws-1, workspace:ws-2" || v[lambdaenv.SkipInstances] != "true" || v[lambdaenv.CloudflareAccount] != "" {
		t.Errorf("direct: scheduler instance settings %v", v)
	}
	if v := props(full.json, logicalID(full.backup.Functions[lambdaenv.Worker]))["Environment"].(map[string]any)["Variables"].(map[string]any); v[lambdaenv.MetricsNamespace] != "EdgeVaultTest/EdgeVault" || v[lambdaenv.Concurrency] != "16" || v[lambdaenv.EdgeBaseURL] != edgebaseURL {
		t.Errorf("full: worker context values %v", v)
	}
	// R2 direct: the scheduler lists and the worker reads and writes the
	// bucket; nothing else gets the settings (the secret's readers are
	// checked with every secret).
	for _, fn := range lambdaenv.Functions {
		v := props(full.json, logicalID(full.backup.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
		want := fn == lambdaenv.Scheduler || fn == lambdaenv.Worker
		if _, ok := v[lambdaenv.R2Secret]; ok != want {
			t.Errorf("full: %s has %s: %v, want %v", fn, lambdaenv.R2Secret, ok, want)
		}
		if want && (v[lambdaenv.R2Endpoint] != "https://"+cfAccount+".r2.cloudflarestorage.com" || v[lambdaenv.R2Bucket] != "edgebase-storage") {
			t.Errorf("full: %s R2 settings %v %v", fn, v[lambdaenv.R2Endpoint], v[lambdaenv.R2Bucket])
		}
	}
	if v := props(base.json, logicalID(base.backup.Functions[lambdaenv.Worker]))["Environment"].(map[string]any)["Variables"].(map[string]any); v[lambdaenv.R2Bucket] != "" {
		t.Errorf("base: worker R2 bucket %v, want none (the admin API)", v[lambdaenv.R2Bucket])
	}
}

// TestFunctionsStartWithTheStackEnvironment feeds each function's
// environment, as every variant of the stack sets it (CloudFormation
// references resolved to placeholders), to the functions' own
// configuration reader: a deployed function must pass its cold start, and
// must refuse it when a test-only override is added to that environment.
// "full" and "direct" have a DR destination, one in Edge mode and one
// without ("base" has no DR: drcopy has no trigger).
func TestFunctionsStartWithTheStackEnvironment(t *testing.T) {
	for _, name := range []string{"full", "direct"} {
		v := get(t, name)
		for _, fn := range v.backup.deployed() {
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

// ruleTarget is the one target of a rule: its function and constant input.
func ruleTarget(t *testing.T, v *variant, rule constructs.IConstruct) (arn, input string, target map[string]any) {
	t.Helper()
	p := props(v.json, logicalID(rule))
	if p["State"] != "ENABLED" {
		t.Errorf("%s: rule %s: state %v", v.name, logicalID(rule), p["State"])
	}
	targets := p["Targets"].([]any)
	if len(targets) != 1 {
		t.Fatalf("%s: rule %s: targets %v", v.name, logicalID(rule), targets)
	}
	target = targets[0].(map[string]any)
	in, _ := target["Input"].(string)
	return mustJSON(target["Arn"]), in, target
}

// The watchdog runs the scheduler every five minutes with the watchdog
// input; with a DR destination, drcopy reconciles daily.
func TestWatchdogAndReconcile(t *testing.T) {
	jsonEq := func(a, b string) bool {
		var x, y any
		return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && mustJSON(x) == mustJSON(y)
	}
	for _, name := range []string{"base", "full", "direct"} {
		v := get(t, name)
		b := v.backup
		if b.Watchdog == nil {
			t.Fatalf("%s: no watchdog", name)
		}
		if p := props(v.json, logicalID(b.Watchdog)); p["ScheduleExpression"] != "rate(5 minutes)" {
			t.Errorf("%s: watchdog schedule %v", name, p["ScheduleExpression"])
		}
		arn, in, target := ruleTarget(t, v, b.Watchdog)
		if arn != mustJSON(getAtt(logicalID(b.Functions[lambdaenv.Scheduler]), "Arn")) || !jsonEq(in, lambdaenv.WatchdogInput) {
			t.Errorf("%s: watchdog target %v", name, target)
		}
		if rp := target["RetryPolicy"].(map[string]any); rp["MaximumEventAgeInSeconds"] != 300.0 {
			t.Errorf("%s: watchdog events outlive a run: %v", name, rp)
		}
		has(t, v.tmpl, "AWS::Lambda::Permission", map[string]any{
			"Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
			"FunctionName": getAtt(logicalID(b.Functions[lambdaenv.Scheduler]), "Arn"), "SourceArn": getAtt(logicalID(b.Watchdog), "Arn"),
		})
		if !b.Config.DR.Enabled() {
			if b.Reconcile != nil {
				t.Errorf("%s: DR reconcile without a DR destination", name)
			}
			continue
		}
		if p := props(v.json, logicalID(b.Reconcile)); p["ScheduleExpression"] != "rate(1 day)" {
			t.Errorf("%s: reconcile schedule %v", name, p["ScheduleExpression"])
		}
		arn, in, target = ruleTarget(t, v, b.Reconcile)
		if arn != mustJSON(getAtt(logicalID(b.Functions[lambdaenv.DRCopy]), "Arn")) || !jsonEq(in, lambdaenv.ReconcileInput) ||
			mustJSON(target["DeadLetterConfig"]) != mustJSON(map[string]any{"Arn": getAtt(logicalID(b.InvokeDLQ), "Arn")}) {
			t.Errorf("%s: reconcile target %v", name, target)
		}
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

// sids maps the Sid of each statement of a policy document to it.
func sids(doc any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, st := range doc.(map[string]any)["Statement"].([]any) {
		m := st.(map[string]any)
		sid, _ := m["Sid"].(string)
		out[sid] = m
	}
	return out
}

// TestAPIResourcePolicy: only the stack's two roles and the context's
// ARNs may call the API, and of them only the restore callers may start a
// restore, whatever IAM policies say elsewhere (explicit denies).
func TestAPIResourcePolicy(t *testing.T) {
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		b := v.backup
		api := props(v.json, logicalID(b.API))
		if api["Name"] != "EdgeVault-api" {
			t.Errorf("%s: API name %v (the ApiName dimension must be the stack's own)", name, api["Name"])
		}
		operator, restore := getAtt(logicalID(b.APIOperatorRole), "Arn"), getAtt(logicalID(b.APIRestoreRole), "Arn")
		restorers := []any{restore}
		callers := []any{operator, restore}
		if name == "full" {
			restorers = append(restorers, apiRestorer)
			callers = append(callers, apiRestorer, apiBackuper)
		}
		aws := func(arns []any) map[string]any {
			if len(arns) == 1 {
				return map[string]any{"AWS": arns[0]}
			}
			return map[string]any{"AWS": slices.Clone(arns)}
		}
		st := sids(api["Policy"])
		want := map[string]map[string]any{
			"NamedCallersReadAndBackUp": {"Effect": "Allow", "Action": "execute-api:Invoke", "Principal": aws(callers),
				"Resource": []any{"execute-api:/v1/GET/*", "execute-api:/v1/POST/backups"}},
			"RestoreCallersRestore": {"Effect": "Allow", "Action": "execute-api:Invoke", "Principal": aws(restorers),
				"Resource": "execute-api:/v1/POST/restores"},
			"NobodyElse": {"Effect": "Deny", "Action": "execute-api:Invoke", "Principal": map[string]any{"AWS": "*"},
				"Resource": "execute-api:/*", "Condition": map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": callers}}},
			"NoRestoresButRestoreCallers": {"Effect": "Deny", "Action": "execute-api:Invoke", "Principal": map[string]any{"AWS": "*"},
				"Resource": "execute-api:/*/POST/*restores*", "Condition": map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": restorers}}},
		}
		for sid, w := range want {
			w["Sid"] = sid
			got := st[sid]
			// Principal lists are sorted in the template.
			if p, ok := got["Principal"].(map[string]any); ok {
				if l, ok := p["AWS"].([]any); ok {
					want := w["Principal"].(map[string]any)["AWS"].([]any)
					sort.Slice(l, func(i, j int) bool { return mustJSON(l[i]) < mustJSON(l[j]) })
					sort.Slice(want, func(i, j int) bool { return mustJSON(want[i]) < mustJSON(want[j]) })
				}
			}
			if mustJSON(got) != mustJSON(w) {
				t.Errorf("%s: API policy %s\n got %s\nwant %s", name, sid, mustJSON(got), mustJSON(w))
			}
		}
		if len(st) != len(want) {
			t.Errorf("%s: API policy has %d statements: %v", name, len(st), mustJSON(api["Policy"]))
		}
		// The roles are assumed from this account (by IAM policy there).
		for _, r := range []constructs.IConstruct{b.APIOperatorRole, b.APIRestoreRole} {
			trust := mustJSON(props(v.json, logicalID(r))["AssumeRolePolicyDocument"])
			if !strings.Contains(trust, `":iam::",{"Ref":"AWS::AccountId"},":root"`) || !strings.Contains(trust, `"sts:AssumeRole"`) {
				t.Errorf("%s: role %s trust %s", name, logicalID(r), trust)
			}
		}
		outputs := v.json["Outputs"].(map[string]any)
		for _, o := range []string{"ApiOperatorRoleArn", "ApiRestoreRoleArn", "ArchiveKeyArn", "OpsKeyArn", "MetricsNamespace"} {
			if outputs[o] == nil {
				t.Errorf("%s: no output %s", name, o)
			}
		}
	}
}

func TestSecrets(t *testing.T) {
	v := get(t, "base")
	for env, s := range v.backup.Secrets {
		id := logicalID(s)
		r := resources(v.json)[id]
		p := r["Properties"].(map[string]any)
		if mustJSON(p["KmsKeyId"]) != mustJSON(getAtt(logicalID(v.backup.OpsKey), "Arn")) {
			t.Errorf("%s: KmsKeyId %v", env, p["KmsKeyId"])
		}
		// Only the roles of the functions that read the secret may get
		// its value.
		var readers []any
		for _, fn := range lambdaenv.Functions {
			if reads(fn, env) {
				readers = append(readers, getAtt(logicalID(v.backup.Roles[fn]), "Arn"))
			}
		}
		if len(readers) == 0 {
			t.Fatalf("%s: no function reads it", env)
		}
		cond := readers
		has(t, v.tmpl, "AWS::SecretsManager::ResourcePolicy", map[string]any{
			"SecretId":          ref(id),
			"BlockPublicPolicy": true,
			"ResourcePolicy": map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
				"Sid": "OnlyTheFunctionsThatUseItReadIt", "Effect": "Deny", "Principal": map[string]any{"AWS": "*"},
				"Action": "secretsmanager:GetSecretValue", "Resource": "*",
				"Condition": map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": cond}},
			}}},
		})
		// Created empty: operators put the real values.
		if p["SecretString"] != nil || p["GenerateSecretString"] != nil {
			t.Errorf("%s: the stack sets a value: %v", env, p)
		}
		if r["DeletionPolicy"] != "Retain" {
			t.Errorf("%s: DeletionPolicy %v", env, r["DeletionPolicy"])
		}
	}
	if len(v.backup.Secrets) != 5 { // service key, Cloudflare token, EdgeBase secrets, notification signing, R2 credentials
		t.Errorf("%d secrets", len(v.backup.Secrets))
	}
}

// alarmProps are the properties of the alarm with construct id.
func alarmProps(t *testing.T, v *variant, alarms map[string]awscloudwatch.Alarm, tmpl map[string]any, id string) map[string]any {
	t.Helper()
	a, ok := alarms[id]
	if !ok {
		t.Fatalf("%s: no alarm %s", v.name, id)
	}
	return props(tmpl, logicalID(a))
}

// checkAlarm compares the listed properties of an alarm.
func checkAlarm(t *testing.T, name, id string, p map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if mustJSON(p[k]) != mustJSON(w) {
			t.Errorf("%s: alarm %s: %s = %s, want %s", name, id, k, mustJSON(p[k]), mustJSON(w))
		}
	}
}

func TestAlarms(t *testing.T) {
	for _, name := range []string{"base", "full", "direct", "drill"} {
		v := get(t, name)
		b := v.backup
		c := b.Config
		topic := logicalID(b.AlarmTopic)
		ns := c.MetricsNamespace + "/" + c.StackName
		if len(b.Alarms) != len(ofType(v.json, "AWS::CloudWatch::Alarm")) {
			t.Errorf("%s: %d alarms in the template, %d in the stack", name, len(ofType(v.json, "AWS::CloudWatch::Alarm")), len(b.Alarms))
		}
		for id, a := range b.Alarms {
			p := props(v.json, logicalID(a))
			// Every alarm notifies when it fires and when it recovers.
			if mustJSON(p["AlarmActions"]) != mustJSON([]any{ref(topic)}) || mustJSON(p["OKActions"]) != mustJSON([]any{ref(topic)}) {
				t.Errorf("%s: alarm %s actions %v, OK actions %v", name, id, p["AlarmActions"], p["OKActions"])
			}
			// Every metric is the stack's own: its namespace, or an AWS
			// metric of one of its resources.
			if dims, _ := p["Dimensions"].([]any); p["Namespace"] != ns && len(dims) == 0 {
				t.Errorf("%s: alarm %s watches an account-wide metric %v/%v", name, id, p["Namespace"], p["MetricName"])
			}
			if strings.HasPrefix(p["Namespace"].(string), "EdgeVault") && p["Namespace"] != ns {
				t.Errorf("%s: alarm %s in namespace %v, not the stack's %s", name, id, p["Namespace"], ns)
			}
			// Only the freshness alarms count silence as a failure.
			if fresh := strings.HasSuffix(id, "FreshnessAlarm"); fresh != (p["TreatMissingData"] == "breaching") {
				t.Errorf("%s: alarm %s treats missing data as %v", name, id, p["TreatMissingData"])
			}
		}
		get := func(id string) map[string]any { return alarmProps(t, v, b.Alarms, v.json, id) }
		failure := map[string]any{"Threshold": 0, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching", "EvaluationPeriods": 1}
		for id, q := range map[string]string{"TaskDLQAlarm": logicalID(b.TaskDLQ), "ControlDLQAlarm": logicalID(b.ControlDLQ), "InvokeDLQAlarm": logicalID(b.InvokeDLQ)} {
			p := get(id)
			checkAlarm(t, name, id, p, failure)
			checkAlarm(t, name, id, p, map[string]any{
				"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Statistic": "Maximum",
				"Dimensions": []any{map[string]any{"Name": "QueueName", "Value": getAtt(q, "QueueName")}},
			})
		}
		p := get("WorkerErrorsAlarm")
		checkAlarm(t, name, "WorkerErrorsAlarm", p, failure)
		checkAlarm(t, name, "WorkerErrorsAlarm", p, map[string]any{"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum",
			"Dimensions": []any{map[string]any{"Name": "FunctionName", "Value": ref(logicalID(b.Functions[lambdaenv.Worker]))}}})
		p = get("JobsFailedAlarm")
		checkAlarm(t, name, "JobsFailedAlarm", p, failure)
		checkAlarm(t, name, "JobsFailedAlarm", p, map[string]any{"Namespace": ns, "MetricName": jobsFailedMetric, "Statistic": "Sum", "Dimensions": nil})
		for fn, spec := range fnSpecs(c) {
			id := spec.id + "ThrottlesAlarm"
			p := get(id)
			checkAlarm(t, name, id, p, failure)
			checkAlarm(t, name, id, p, map[string]any{"Namespace": "AWS/Lambda", "MetricName": "Throttles", "Statistic": "Sum",
				"Dimensions": []any{map[string]any{"Name": "FunctionName", "Value": ref(logicalID(b.Functions[fn]))}}})
		}
		p = get("Api5xxAlarm")
		checkAlarm(t, name, "Api5xxAlarm", p, failure)
		checkAlarm(t, name, "Api5xxAlarm", p, map[string]any{"Namespace": "AWS/ApiGateway", "MetricName": "5XXError", "Statistic": "Sum",
			"Dimensions": []any{map[string]any{"Name": "ApiName", "Value": "EdgeVault-api"}}})
		p = get("TaskQueueAgeAlarm")
		checkAlarm(t, name, "TaskQueueAgeAlarm", p, map[string]any{
			"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage", "Statistic": "Maximum",
			"Dimensions": []any{map[string]any{"Name": "QueueName", "Value": getAtt(logicalID(b.TaskQueue), "QueueName")}},
			"Threshold":  c.TaskAgeAlarmMinutes * 60, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
		})

		p = get("RestoreStartedAlarm")
		checkAlarm(t, name, "RestoreStartedAlarm", p, failure)
		checkAlarm(t, name, "RestoreStartedAlarm", p, map[string]any{"Namespace": ns, "MetricName": restoresStartedMetric, "Dimensions": nil})
		has(t, v.tmpl, "AWS::Logs::MetricFilter", map[string]any{
			"LogGroupName":  ref(logicalID(b.Functions[lambdaenv.Scheduler].LogGroup())),
			"FilterPattern": restoresStartedPattern,
			"MetricTransformations": []any{map[string]any{
				"MetricNamespace": ns, "MetricName": restoresStartedMetric, "MetricValue": "1",
			}},
		})

		// Freshness: the hourly count below one for every hour of the
		// window, silence included.
		fresh := func(hours int) map[string]any {
			return map[string]any{"Threshold": 1, "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching",
				"Period": 3600, "Statistic": "Sum", "EvaluationPeriods": hours, "DatapointsToAlarm": hours}
		}
		p = get("BackupFreshnessAlarm")
		checkAlarm(t, name, "BackupFreshnessAlarm", p, fresh(c.BackupMaxAgeHours))
		checkAlarm(t, name, "BackupFreshnessAlarm", p, map[string]any{"Namespace": ns, "MetricName": backupsDoneMetric, "Dimensions": nil})
		has(t, v.tmpl, "AWS::Logs::MetricFilter", map[string]any{
			"LogGroupName":  ref(logicalID(b.Functions[lambdaenv.Assembler].LogGroup())),
			"FilterPattern": backupsDonePattern,
			"MetricTransformations": []any{map[string]any{
				"MetricNamespace": ns, "MetricName": backupsDoneMetric, "MetricValue": "1",
			}},
		})
		if c.DR.Enabled() {
			p = get("DRCopyFreshnessAlarm")
			checkAlarm(t, name, "DRCopyFreshnessAlarm", p, fresh(c.DRCopyMaxAgeHours))
			checkAlarm(t, name, "DRCopyFreshnessAlarm", p, map[string]any{"Namespace": ns, "MetricName": drCopiesMetric, "Dimensions": nil})
		} else if _, ok := b.Alarms["DRCopyFreshnessAlarm"]; ok {
			t.Errorf("%s: DR freshness alarm without DR", name)
		}

		has(t, v.tmpl, "AWS::SNS::Topic", map[string]any{"KmsMasterKeyId": getAtt(logicalID(b.OpsKey), "Arn")})
		has(t, v.tmpl, "AWS::SNS::TopicPolicy", map[string]any{
			"Topics": []any{ref(topic)},
			"PolicyDocument": like(map[string]any{"Statement": arrayWith(
				like(map[string]any{"Effect": "Deny", "Action": "sns:Publish", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
				like(map[string]any{"Effect": "Allow", "Action": "sns:Publish", "Principal": map[string]any{"Service": "cloudwatch.amazonaws.com"},
					"Condition": like(map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": ref("AWS::AccountId")}})}),
			)}),
		})
	}
	full := get(t, "full")
	if c := full.backup.Config; c.BackupMaxAgeHours != 13 || c.DRCopyMaxAgeHours != 14 || c.TaskAgeAlarmMinutes != 30 {
		t.Errorf("full: alarm context not applied: %+v", c)
	}
	has(t, full.tmpl, "AWS::SNS::Subscription", map[string]any{"Protocol": "email", "Endpoint": "ops@example.com"})
	// Without alarmEmail the synth warns; strict refuses (TestStrict).
	if w := strings.Join(warningsOf(get(t, "base").backup.Stack), "\n"); !strings.Contains(w, ctxAlarmEmail) {
		t.Errorf("base: no warning about %s: %q", ctxAlarmEmail, w)
	}
	if w := strings.Join(warningsOf(full.backup.Stack), "\n"); strings.Contains(w, ctxAlarmEmail+" is not set") {
		t.Errorf("full: warns about %s although it is set: %q", ctxAlarmEmail, w)
	}
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
	if r := v.dr.Stack.Region(); r == nil || *r != drRegion {
		t.Errorf("DR stack region %v, want %s (drRegion)", r, drRegion)
	}
	key := logicalID(v.dr.Key)
	bucket := logicalID(v.dr.Bucket)
	has(t, v.drTmpl, "AWS::S3::Bucket", map[string]any{
		"VersioningConfiguration": map[string]any{"Status": "Enabled"},
		"ObjectLockEnabled":       true,
		"ObjectLockConfiguration": map[string]any{"ObjectLockEnabled": "Enabled",
			"Rule": map[string]any{"DefaultRetention": map[string]any{"Mode": "COMPLIANCE", "Days": 40}}},
		"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{map[string]any{
			"BucketKeyEnabled":              true,
			"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": getAtt(key, "Arn")},
			"BlockedEncryptionTypes":        map[string]any{"EncryptionType": []any{"SSE-C"}},
		}}},
		"PublicAccessBlockConfiguration": map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"LifecycleConfiguration": like(map[string]any{"Rules": arrayWith(like(map[string]any{"Prefix": "backups/", "ExpirationInDays": 400}))}),
		"MetricsConfigurations":  []any{map[string]any{"Id": "archives", "Prefix": "backups/"}},
		"LoggingConfiguration":   map[string]any{"DestinationBucketName": ref(logicalID(v.dr.AccessLogs)), "LogFilePrefix": "dr-bucket/"},
		"OwnershipControls":      map[string]any{"Rules": []any{map[string]any{"ObjectOwnership": "BucketOwnerEnforced"}}},
	})
	// Nothing written is ever replaced, and only under the DR key.
	objects := map[string]any{"Fn::Join": []any{"", []any{getAtt(bucket, "Arn"), "/*"}}}
	deny := func(sid string, cond map[string]any) map[string]any {
		return map[string]any{"Sid": sid, "Effect": "Deny", "Principal": map[string]any{"AWS": "*"}, "Action": "s3:PutObject",
			"Resource": objects, "Condition": cond}
	}
	has(t, v.drTmpl, "AWS::S3::BucketPolicy", map[string]any{
		"Bucket": ref(bucket),
		"PolicyDocument": like(map[string]any{"Statement": arrayWith(
			like(map[string]any{"Effect": "Deny", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
			deny("NoOverwrites", map[string]any{
				"Null": map[string]any{"s3:if-none-match": "true"},
				"Bool": map[string]any{"s3:ObjectCreationOperation": "true"},
			}),
			deny("OnlySSEKMS", map[string]any{"StringNotEqualsIfExists": map[string]any{"s3:x-amz-server-side-encryption": "aws:kms"}}),
			deny("OnlyTheDRKey", map[string]any{"StringNotEqualsIfExists": map[string]any{"s3:x-amz-server-side-encryption-aws-kms-key-id": getAtt(key, "Arn")}}),
			deny("NoSSEC", map[string]any{"Null": map[string]any{"s3:x-amz-server-side-encryption-customer-algorithm": "false"}}),
		)}),
	})
	// Key administrators cannot schedule the DR key's deletion; only the
	// break-glass principal can.
	has(t, v.drTmpl, "AWS::KMS::Key", map[string]any{"KeyPolicy": like(map[string]any{"Statement": arrayWith(map[string]any{
		"Sid": "NoDeletionButBreakGlass", "Effect": "Deny", "Principal": map[string]any{"AWS": "*"},
		"Action": "kms:ScheduleKeyDeletion", "Resource": "*",
		"Condition": map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": breakGlass}},
	})})})
	if p := mustJSON(props(v.drJSON, logicalID(v.dr.OpsKey))); strings.Contains(p, "NoDeletionButBreakGlass") {
		t.Errorf("the alarm key of the DR stack is deletion-protected: %s", p)
	}
	// Only the source drcopy role may assume the writer role.
	has(t, v.drTmpl, "AWS::IAM::Role", map[string]any{
		"AssumeRolePolicyDocument": like(map[string]any{"Statement": []any{map[string]any{
			"Action": "sts:AssumeRole", "Effect": "Allow",
			"Principal": map[string]any{"AWS": "arn:aws:iam::444455556666:root"}, // the stack's region is known: so is its partition
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
		if strings.HasPrefix(s.actions[0], "kms:") && !strings.Contains(mustJSON(s.condition), "s3."+drRegion+".amazonaws.com") {
			t.Errorf("DR writer role uses a key outside S3 of %s: %v", drRegion, s.raw)
		}
	}
	if !grants(st, "s3:PutObject", "<"+bucket+".Arn>/backups/*") || !grants(st, "kms:GenerateDataKey", "<"+key+".Arn>") {
		t.Errorf("DR writer role cannot write archives: %+v", st)
	}
	// It can resume a multipart copy cut short.
	if !grants(st, "s3:ListMultipartUploadParts", "<"+bucket+".Arn>/backups/*") || !grants(st, "s3:ListBucketMultipartUploads", "<"+bucket+".Arn>") {
		t.Errorf("DR writer role cannot find the parts of a copy cut short: %+v", st)
	}
	// It reads the source archives itself, for the server-side copy.
	source := "arn:<AWS::Partition>:s3:::" + srcBucket + "/backups/*"
	if !grants(st, "s3:GetObject", source) || !grants(st, "s3:GetObjectVersion", source) || !grants(st, "kms:Decrypt", srcKey) {
		t.Errorf("DR writer role cannot read the source archives: %+v", st)
	}
	for _, s := range st {
		if slices.Contains(s.resources, source) && !strings.Contains(mustJSON(s.condition), `"s3:ResourceAccount":"444455556666"`) {
			t.Errorf("DR writer role reads %s outside the source account: %v", source, s.raw)
		}
		if slices.Contains(s.resources, srcKey) && mustJSON(s.condition) != mustJSON(map[string]any{"StringEquals": map[string]any{
			"kms:ViaService": []any{"s3." + drRegion + ".amazonaws.com", "s3.us-east-1.amazonaws.com"}}}) {
			t.Errorf("DR writer role uses the source key: %v", s.raw)
		}
	}

	// Alarms of its own: copies that stop arriving, server errors.
	topic := ref(logicalID(v.dr.AlarmTopic))
	dims := []any{map[string]any{"Name": "BucketName", "Value": ref(bucket)}, map[string]any{"Name": "FilterId", "Value": "archives"}}
	for id, want := range map[string]map[string]any{
		"ArchivesFreshnessAlarm": {"Namespace": "AWS/S3", "MetricName": "PutRequests", "Statistic": "Sum", "Period": 3600,
			"Threshold": 1, "ComparisonOperator": "LessThanThreshold", "EvaluationPeriods": 14, "DatapointsToAlarm": 14, "TreatMissingData": "breaching"},
		"ServerErrorsAlarm": {"Namespace": "AWS/S3", "MetricName": "5xxErrors", "Statistic": "Sum",
			"Threshold": 0, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"},
	} {
		p := alarmProps(t, v, v.dr.Alarms, v.drJSON, id)
		want["AlarmActions"] = []any{topic}
		want["OKActions"] = []any{topic}
		checkAlarm(t, "full DR", id, p, want)
		if d, _ := p["Dimensions"].([]any); len(d) != 2 || !strings.Contains(mustJSON(d), `"FilterId"`) {
			t.Errorf("DR alarm %s dimensions %v, want %v", id, d, dims)
		}
	}
	has(t, v.drTmpl, "AWS::SNS::Topic", map[string]any{"KmsMasterKeyId": getAtt(logicalID(v.dr.OpsKey), "Arn")})
	has(t, v.drTmpl, "AWS::SNS::Subscription", map[string]any{"Protocol": "email", "Endpoint": "dr-ops@example.com"})

	outputs := v.drJSON["Outputs"].(map[string]any)
	for _, o := range []string{"DRBucketName", "DRRoleArn", "DRKmsKeyArn", "DRAccount", "DRRegion", "DRAlarmTopicArn"} {
		if outputs[o] == nil {
			t.Errorf("DR stack lacks output %s", o)
		}
	}
	// Compliance mode, e-mail set: nothing to warn about.
	if w := warningsOf(v.dr.Stack); len(w) > 0 {
		t.Errorf("DR stack warnings: %v", w)
	}
}

// A DR bucket without Object Lock is a choice made explicitly
// (drObjectLockMode=none), and warned about; without the choice, the DR
// stack does not synthesize.
func TestDRStackWithoutLock(t *testing.T) {
	v := get(t, "dronly")
	if p := props(v.drJSON, logicalID(v.dr.Bucket)); p["ObjectLockEnabled"] != nil || p["ObjectLockConfiguration"] != nil {
		t.Errorf("drObjectLockMode=none: bucket %v", p)
	}
	if w := strings.Join(warningsOf(v.dr.Stack), "\n"); !strings.Contains(w, ctxDRObjectLockMode+"=none") {
		t.Errorf("no warning about the unlocked DR bucket: %q", w)
	}
	for name, ctx := range map[string]map[string]any{
		"lock mode empty":      withDR(map[string]any{ctxDROnly: "true", ctxDRObjectLockMode: ""}),
		"lock mode off":        withDR(map[string]any{ctxDROnly: "true", ctxDRObjectLockMode: "off"}),
		"none with days":       withDR(map[string]any{ctxDROnly: "true", ctxDRObjectLockMode: "none", ctxDRObjectLockDays: "30"}),
		"none in strict mode":  withDR(map[string]any{ctxDROnly: "true", ctxDRObjectLockMode: "none", ctxDRAlarmEmail: "dr@example.com", ctxStrict: "true"}),
		"no days":              withDR(map[string]any{ctxDROnly: "true", ctxDRObjectLockDays: "0"}),
		"expires before lock":  withDR(map[string]any{ctxDROnly: "true", ctxDRRetentionDays: "30"}),
		"with the backup app":  withDR(map[string]any{ctxEdgeBaseURL: edgebaseURL, ctxAssetDir: assetDir, ctxDRObjectLockMode: ""}),
		"no region":            withDR(map[string]any{ctxDROnly: "true", ctxDRRegion: ""}),
		"no source bucket":     withDR(map[string]any{ctxDROnly: "true", ctxDRSourceBucket: ""}),
		"source key elsewhere": withDR(map[string]any{ctxDROnly: "true", ctxDRSourceKeyARN: drKey}),
	} {
		app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(t.TempDir())})
		if _, _, err := buildApp(app); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: want ErrConfig, got %v", name, err)
		}
	}
	// By default the DR bucket is locked in compliance mode.
	if d := DefaultDRDestinationConfig(); d.ObjectLockMode != "COMPLIANCE" || d.ObjectLockDays < 1 {
		t.Errorf("default DR lock %s %d", d.ObjectLockMode, d.ObjectLockDays)
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
	{"AWS::IAM::Policy", regexp.MustCompile(`^<Backups[0-9A-F]{8}\.Arn>/jobs/idempotency/\*$`), `^s3:PutObject$`, "the api's Idempotency-Key records: keys hashed from each key"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^<Backups[0-9A-F]{8}\.Arn>/backups/\*$`), "", "archives: names derived from each backup's start time"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^<Backups[0-9A-F]{8}\.Arn>/(repository|vault)/((keys|data|index|snapshots)/)?\*$`), "", "repository files (one part of the repository prefix per writer): named by the SHA-256 of their content"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^<Archives[0-9A-F]{8}\.Arn>/backups/\*$`), "", "DR copies of archives (destination stack)"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^arn:<AWS::Partition>:s3:::` + regexp.QuoteMeta(drBucket) + `/backups/\*$`), "", "DR copies in the destination bucket (bucket-policy mode), pinned to the DR account by s3:ResourceAccount"},
	{"AWS::IAM::Policy", regexp.MustCompile(`^arn:<AWS::Partition>:s3:::` + regexp.QuoteMeta(srcBucket) + `/backups/\*$`), `^s3:GetObject(Version)?$`, "the DR writer role reads source archives for the server-side copy, pinned to the source account by s3:ResourceAccount"},
	{"AWS::S3::BucketPolicy", regexp.MustCompile(`^<AccessLogs[0-9A-F]{8}\.Arn>/(backup|dr)-bucket/\*$`), "", "S3 log delivery names the log objects under the source bucket's prefix"},
	{"AWS::S3::BucketPolicy", regexp.MustCompile(`^<Backups[0-9A-F]{8}\.Arn>/backups/\*$`), `^s3:GetObject(Version)?$`, "the DR writer role reads archives for the server-side copy"},
	{"AWS::ApiGateway::RestApi", regexp.MustCompile(`^execute-api:/v1/GET/\*$`), `^execute-api:Invoke$`, "the named API callers read jobs; paths hold generated job ids"},
}

func TestNoWildcardPermissions(t *testing.T) {
	seen := map[string]bool{}
	var report []string
	for _, name := range []string{"base", "full", "direct", "dronly"} {
		v := get(t, name)
		var tmpls []map[string]any
		if v.json != nil {
			tmpls = append(tmpls, v.json)
		}
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
	for _, name := range []string{"base", "full", "direct", "drill"} {
		v := get(t, name)
		b := v.backup
		bucket := "<" + logicalID(b.Bucket) + ".Arn>"
		specs := fnSpecs(b.Config)
		signingKey := ""
		if b.SigningKey != nil {
			signingKey = "<" + logicalID(b.SigningKey) + ".Arn>"
		}
		for _, fn := range b.deployed() {
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
			// The api creates Idempotency-Key records and nothing else
			// in the staging area.
			if got := grants(st, "s3:PutObject", bucket+"/jobs/"+lambdaenv.IdempotencyDir+"*"); got != spec.idempotency || got != (fn == lambdaenv.API) {
				t.Errorf("%s: %s PutObject on jobs/%s* = %v", name, fn, lambdaenv.IdempotencyDir, got)
			}
			if !grants(st, "s3:ListBucket", bucket) || !grants(st, "kms:Decrypt", "<"+logicalID(b.ArchiveKey)+".Arn>") {
				t.Errorf("%s: %s cannot list the bucket or decrypt its objects", name, fn)
			}
			// The ops key only through Secrets Manager, the archive key
			// only through S3.
			for _, s := range st {
				cond := mustJSON(s.condition)
				switch {
				case slices.Contains(s.resources, "<"+logicalID(b.OpsKey)+".Arn>") && !strings.Contains(cond, "secretsmanager."):
					t.Errorf("%s: %s uses the ops key outside Secrets Manager: %v", name, fn, s.raw)
				case slices.Contains(s.resources, "<"+logicalID(b.ArchiveKey)+".Arn>") && (!strings.Contains(cond, `"s3.`) || strings.Contains(cond, "secretsmanager")):
					t.Errorf("%s: %s uses the archive key outside S3: %v", name, fn, s.raw)
				}
			}
			for _, s := range st {
				// The signing key is used directly (kms:Sign), by the
				// functions that read its ARN only (drill_test.go).
				// The repository key is used directly too, with the
				// repository's encryption context only (repository_test.go).
				if strings.HasPrefix(s.actions[0], "kms:") && (s.condition == nil || !strings.Contains(mustJSON(s.condition), "kms:ViaService")) &&
					!slices.Equal(s.resources, []string{signingKey}) && !(s.raw["Sid"] == "RepositoryKey" && mustJSON(s.condition) == mustJSON(repositoryKeyCondition())) {
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
		// The worker re-sends a task another delivery is running.
		if st := roleStatements(v.json, logicalID(b.Roles[lambdaenv.Worker])); !grants(st, "sqs:SendMessage", "<"+logicalID(b.TaskQueue)+".Arn>") {
			t.Errorf("%s: the worker cannot send to the task queue", name)
		}
		drcopy := roleStatements(v.json, logicalID(b.Roles[lambdaenv.DRCopy]))
		switch name {
		case "full":
			if !grants(drcopy, "sts:AssumeRole", drRole) {
				t.Errorf("full: drcopy cannot assume %s", drRole)
			}
		case "direct":
			if !grants(drcopy, "s3:PutObject", "arn:<AWS::Partition>:s3:::"+drBucket+"/backups/*") || !grants(drcopy, "kms:GenerateDataKey", drKey) ||
				!grants(drcopy, "s3:ListMultipartUploadParts", "arn:<AWS::Partition>:s3:::"+drBucket+"/backups/*") || !grants(drcopy, "s3:ListBucketMultipartUploads", "arn:<AWS::Partition>:s3:::"+drBucket) {
				t.Errorf("direct: drcopy cannot write the DR bucket: %+v", drcopy)
			}
			// The DR key is used through S3 of the DR region.
			for _, s := range drcopy {
				if slices.Contains(s.resources, drKey) && mustJSON(s.condition) != mustJSON(map[string]any{"StringEquals": map[string]any{"kms:ViaService": "s3." + drRegion + ".amazonaws.com"}}) {
					t.Errorf("direct: drcopy uses the DR key %v", s.raw)
				}
			}
		}
	}
}
