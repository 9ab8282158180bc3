package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// Repository mode is the default: a key of its own wraps the repository
// key, rotated and retained; with repositoryKmsKeyArn no key is created
// and the functions name the one brought.
func TestRepositoryKey(t *testing.T) {
	base, full := get(t, "base"), get(t, "full")
	if c := DefaultConfig().Repository; c.Mode != backupModeRepository || c.Prefix != "repository/" || c.Retention != defaultRetention || c.PruneGrace != 48*time.Hour {
		t.Errorf("default repository config %+v", c)
	}
	b := base.backup
	if b.RepositoryKey == nil {
		t.Fatal("base: no repository key")
	}
	r := resources(base.json)[logicalID(b.RepositoryKey)]
	if p := r["Properties"].(map[string]any); p["EnableKeyRotation"] != true || r["DeletionPolicy"] != "Retain" || r["UpdateReplacePolicy"] != "Retain" {
		t.Errorf("base: repository key %v", r)
	}
	if logicalID(b.RepositoryKey) == logicalID(b.ArchiveKey) || logicalID(b.RepositoryKey) == logicalID(b.OpsKey) {
		t.Error("the repository key is another key of the stack")
	}
	if full.backup.RepositoryKey != nil || *full.backup.RepositoryKeyARN != repoKey {
		t.Errorf("full: a key was created beside %s", repoKey)
	}
	for _, v := range []*variant{base, full} {
		key := any(repoKey)
		if v.backup.RepositoryKey != nil {
			key = getAtt(logicalID(v.backup.RepositoryKey), "Arn")
		}
		outputs := v.json["Outputs"].(map[string]any)
		if o, ok := outputs["RepositoryKeyArn"].(map[string]any); !ok || mustJSON(o["Value"]) != mustJSON(key) {
			t.Errorf("%s: RepositoryKeyArn output %v", v.name, outputs["RepositoryKeyArn"])
		}
	}
}

// Each role uses the repository key only with the repository's
// encryption context: the scheduler (which creates the repository)
// encrypts and decrypts, the others only decrypt, the rest not at all.
func TestRepositoryKeyGrants(t *testing.T) {
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		b := v.backup
		key := repoKey
		if b.RepositoryKey != nil {
			key = "<" + logicalID(b.RepositoryKey) + ".Arn>"
		}
		want := map[string][]string{
			lambdaenv.Scheduler: {"kms:Decrypt", "kms:Encrypt"},
			lambdaenv.Worker:    {"kms:Decrypt"}, lambdaenv.Assembler: {"kms:Decrypt"}, lambdaenv.Maintain: {"kms:Decrypt"},
		}
		for _, fn := range b.deployed() {
			var got []string
			for _, s := range roleStatements(v.json, logicalID(b.Roles[fn])) {
				if !slices.Contains(s.resources, key) {
					continue
				}
				got = append(got, s.actions...)
				if s.raw["Sid"] != "RepositoryKey" || mustJSON(s.condition) != mustJSON(map[string]any{
					"ForAllValues:StringEquals": map[string]any{"kms:EncryptionContextKeys": []any{"edgevault-repository"}},
					"Null":                      map[string]any{"kms:EncryptionContext:edgevault-repository": "false"},
				}) {
					t.Errorf("%s: %s uses the repository key without its encryption context: %v", name, fn, s.raw)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want[fn]) {
				t.Errorf("%s: %s may %v with the repository key, want %v", name, fn, got, want[fn])
			}
		}
	}
}

// S3 access to the repository is scoped to its prefix and split by
// writer: everyone who reads the prefix may read it all, the scheduler
// writes config and keys/, the worker data/, the assembler index/ and
// snapshots/, maintain anything in it (and is the only one to delete);
// maintain also writes its exports under the archive prefix.
func TestRepositoryS3Grants(t *testing.T) {
	for _, name := range []string{"base", "full", "drill"} {
		v := get(t, name)
		b := v.backup
		prefix := b.Config.Repository.Prefix
		bucket := "<" + logicalID(b.Bucket) + ".Arn>/"
		want := map[string]map[string][]string{
			lambdaenv.Scheduler: {"s3:GetObject": {"*"}, "s3:PutObject": {"config", "keys/*"}},
			lambdaenv.Worker:    {"s3:GetObject": {"*"}, "s3:PutObject": {"data/*"}},
			lambdaenv.Assembler: {"s3:GetObject": {"*"}, "s3:PutObject": {"index/*", "snapshots/*"}},
			lambdaenv.Maintain:  {"s3:GetObject": {"*"}, "s3:PutObject": {"*"}, "s3:DeleteObject": {"*"}},
		}
		for _, fn := range b.deployed() {
			got := map[string][]string{}
			for _, s := range roleStatements(v.json, logicalID(b.Roles[fn])) {
				for _, r := range s.resources {
					rest, ok := strings.CutPrefix(r, bucket+prefix)
					if !ok {
						if strings.Contains(r, "/"+prefix) || strings.HasSuffix(r, ".Arn>/*") {
							t.Errorf("%s: %s has an unscoped object grant %s", name, fn, r)
						}
						continue
					}
					for _, a := range s.actions {
						if a == "s3:AbortMultipartUpload" {
							continue // with every PutObject
						}
						got[a] = append(got[a], rest)
					}
				}
			}
			for a := range got {
				slices.Sort(got[a])
			}
			if w := want[fn]; mustJSON(got) != mustJSON(orEmpty(w)) {
				t.Errorf("%s: %s in %s: %v, want %v", name, fn, prefix, got, w)
			}
		}
		st := roleStatements(v.json, logicalID(b.Roles[lambdaenv.Maintain]))
		for _, a := range []string{"s3:GetObject", "s3:PutObject"} {
			if !grants(st, a, bucket+"backups/*") {
				t.Errorf("%s: maintain cannot %s archives", name, a)
			}
		}
		if grants(st, "s3:DeleteObject", bucket+"backups/*") {
			t.Errorf("%s: maintain may delete archives", name)
		}
	}
}

func orEmpty(m map[string][]string) map[string][]string {
	if m == nil {
		return map[string][]string{}
	}
	return m
}

// The staging expiry and the archive retention never reach the
// repository: prune decides what goes there. Only the bucket-wide
// clean-up of old versions and abandoned uploads applies.
func TestLifecycleSparesTheRepository(t *testing.T) {
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		prefix := v.backup.Config.Repository.Prefix
		rules := props(v.json, logicalID(v.backup.Bucket))["LifecycleConfiguration"].(map[string]any)["Rules"].([]any)
		for _, r := range rules {
			rule := r.(map[string]any)
			p, _ := rule["Prefix"].(string)
			if _, expires := rule["ExpirationInDays"]; (expires || rule["Transitions"] != nil) && (p == "" || strings.HasPrefix(prefix, p) || strings.HasPrefix(p, prefix)) {
				t.Errorf("%s: lifecycle rule %v reaches %s", name, rule, prefix)
			}
		}
	}
}

// The maintain function: arm64 like the others, invoked asynchronously
// (invoke dead-letter queue) by a daily forget+prune rule and a weekly
// export rule, with the retention and the grace period of the context,
// and an alarm on its errors.
func TestMaintainFunction(t *testing.T) {
	jsonEq := func(a, b string) bool {
		var x, y any
		return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && mustJSON(x) == mustJSON(y)
	}
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		b := v.backup
		fn := b.Functions[lambdaenv.Maintain]
		if fn == nil || b.MaintainRule == nil || b.ExportRule == nil {
			t.Fatalf("%s: maintain %v, rules %v %v", name, fn, b.MaintainRule, b.ExportRule)
		}
		id := logicalID(fn)
		has(t, v.tmpl, "AWS::Lambda::Function", map[string]any{
			"Runtime": "provided.al2023", "Architectures": []any{"arm64"}, "Handler": "bootstrap", "Timeout": 900,
			"DeadLetterConfig":             map[string]any{"TargetArn": getAtt(logicalID(b.InvokeDLQ), "Arn")},
			"Role":                         getAtt(logicalID(b.Roles[lambdaenv.Maintain]), "Arn"),
			"ReservedConcurrentExecutions": 1,
		})
		has(t, v.tmpl, "AWS::Lambda::EventInvokeConfig", map[string]any{"FunctionName": ref(id), "MaximumRetryAttempts": 2})
		vars := props(v.json, id)["Environment"].(map[string]any)["Variables"].(map[string]any)
		r := b.Config.Repository
		if vars[lambdaenv.Retention] != r.Retention || vars[lambdaenv.PruneGrace] != r.PruneGrace.String() || vars[lambdaenv.RepositoryPrefix] != r.Prefix {
			t.Errorf("%s: maintain environment %v", name, vars)
		}
		if name == "full" && (vars[lambdaenv.Retention] != "last=3,daily=10" || vars[lambdaenv.PruneGrace] != "72h0m0s" || vars[lambdaenv.RepositoryPrefix] != "vault/") {
			t.Errorf("full: maintain environment ignores the context: %v", vars)
		}
		for _, rc := range []struct {
			rule  awsevents.Rule
			expr  string
			input string
		}{{b.MaintainRule, maintainSchedule, "{}"}, {b.ExportRule, exportSchedule, lambdaenv.ExportInput}} {
			if p := props(v.json, logicalID(rc.rule)); p["ScheduleExpression"] != rc.expr {
				t.Errorf("%s: rule %s schedule %v", name, logicalID(rc.rule), p["ScheduleExpression"])
			}
			arn, in, target := ruleTarget(t, v, rc.rule)
			if arn != mustJSON(getAtt(id, "Arn")) || !jsonEq(in, rc.input) {
				t.Errorf("%s: rule %s target %v", name, logicalID(rc.rule), target)
			}
			if mustJSON(target["DeadLetterConfig"]) != mustJSON(map[string]any{"Arn": getAtt(logicalID(b.InvokeDLQ), "Arn")}) {
				t.Errorf("%s: rule %s without the invoke DLQ: %v", name, logicalID(rc.rule), target)
			}
			has(t, v.tmpl, "AWS::Lambda::Permission", map[string]any{
				"Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
				"FunctionName": getAtt(id, "Arn"), "SourceArn": getAtt(logicalID(rc.rule), "Arn"),
			})
		}
		p := alarmProps(t, v, b.Alarms, v.json, "MaintainErrorsAlarm")
		checkAlarm(t, name, "MaintainErrorsAlarm", p, map[string]any{
			"Namespace": "AWS/Lambda", "MetricName": "Errors", "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold",
			"Dimensions": []any{map[string]any{"Name": "FunctionName", "Value": ref(id)}},
		})
		if _, ok := b.Alarms["MaintainThrottlesAlarm"]; !ok {
			t.Errorf("%s: no throttles alarm for maintain", name)
		}
	}
}

// The maintain function starts with the environment the stack gives it
// (its own configuration check: retention set, grace above the job
// timeout).
func TestMaintainStartsWithTheStackEnvironment(t *testing.T) {
	for _, name := range []string{"base", "full"} {
		v := get(t, name)
		vars := props(v.json, logicalID(v.backup.Functions[lambdaenv.Maintain]))["Environment"].(map[string]any)["Variables"].(map[string]any)
		env := func(k string) string {
			if s, ok := vars[k].(string); ok || vars[k] == nil {
				return s
			}
			return "resolved-" + strings.ToLower(k) // Ref, Fn::GetAtt
		}
		c, err := serverless.ConfigFromEnv(lambdaenv.Maintain, env)
		if err == nil {
			err = c.Validate()
		}
		if err != nil || c.Retention.Empty() || c.RepositoryKMSKey == "" {
			t.Errorf("%s: maintain would fail its cold start: %+v %v", name, c, err)
		}
	}
}

// Archive mode (direct): today's stack. No maintain function, no
// repository key, no repository variable, no grant on a repository.
func TestArchiveMode(t *testing.T) {
	v := get(t, "direct")
	b := v.backup
	if b.Config.Repository.Enabled() || b.Functions[lambdaenv.Maintain] != nil || b.RepositoryKey != nil || b.MaintainRule != nil || b.ExportRule != nil {
		t.Fatalf("direct: repository resources in archive mode")
	}
	for _, fn := range b.deployed() {
		vars := props(v.json, logicalID(b.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
		for _, k := range repositoryEnvs {
			if _, ok := vars[k]; ok {
				t.Errorf("direct: %s has %s", fn, k)
			}
		}
	}
	if s := mustJSON(v.json); strings.Contains(s, "/repository/") || strings.Contains(s, "edgevault-repository") || strings.Contains(s, "RepositoryKey") {
		t.Error("direct: the template names a repository")
	}
	if _, ok := v.json["Outputs"].(map[string]any)["RepositoryKeyArn"]; ok {
		t.Error("direct: RepositoryKeyArn output")
	}
}

// The context keys of repository mode are read as strings (-c) and
// checked at synth.
func TestRepositoryContext(t *testing.T) {
	app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]any{
		ctxEdgeBaseURL: edgebaseURL, ctxBackupMode: "Repository", ctxRepositoryPrefix: "vault/",
		ctxRepositoryKMSKeyARN: repoKey, ctxRetention: "last=3,monthly=-1", ctxPruneGrace: "100h",
	}})
	c, err := ConfigFromContext(app.Node())
	if err != nil {
		t.Fatal(err)
	}
	want := RepositoryConfig{Mode: backupModeRepository, Prefix: "vault/", KMSKeyARN: repoKey, Retention: "last=3,monthly=-1", PruneGrace: 100 * time.Hour}
	if c.Repository != want {
		t.Errorf("got %+v, want %+v", c.Repository, want)
	}
	for name, ctx := range map[string]map[string]any{
		"unknown mode":          {ctxBackupMode: "snapshots"},
		"bad retention":         {ctxRetention: "daily=0"},
		"unknown rule":          {ctxRetention: "dayly=3"},
		"empty retention":       {ctxRetention: " "},
		"grace not a duration":  {ctxPruneGrace: "2 days"},
		"grace below the job":   {ctxPruneGrace: "20h"},
		"prefix without slash":  {ctxRepositoryPrefix: "repo"},
		"prefix in staging":     {ctxRepositoryPrefix: "jobs/repo/"},
		"prefix above archives": {ctxRepositoryPrefix: "backups/"},
		"absolute prefix":       {ctxRepositoryPrefix: "/repo/"},
		"key not an arn":        {ctxRepositoryKMSKeyARN: "alias/mine"},
	} {
		ctx[ctxEdgeBaseURL] = edgebaseURL
		app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(t.TempDir())})
		_, _, err := buildApp(app)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: want ErrConfig, got %v", name, err)
		}
	}
	// Repository mode needs the maintain function's binary.
	noMaintain := t.TempDir()
	for _, fn := range lambdaenv.Functions {
		if err := os.MkdirAll(filepath.Join(noMaintain, fn), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(noMaintain, fn, "bootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	app = awscdk.NewApp(&awscdk.AppProps{Context: &map[string]any{ctxEdgeBaseURL: edgebaseURL, ctxAssetDir: noMaintain}, Outdir: jsii.String(t.TempDir())})
	if _, _, err := buildApp(app); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "maintain/bootstrap") {
		t.Errorf("repository mode without the maintain binary: %v", err)
	}
	// Archive mode ignores the repository's settings.
	c = DefaultConfig()
	c.EdgeBaseURL, c.Repository.Mode, c.Repository.Retention = edgebaseURL, backupModeArchive, ""
	if err := c.Validate(); err != nil {
		t.Errorf("archive mode: %v", err)
	}
}
