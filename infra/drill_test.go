package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/serverless"
)

const drillURL = "https://scratch.edgebase.example.com"

// The drill variant adds exactly the drill's resources to base; base has
// none of them.
func TestDrillResources(t *testing.T) {
	base, dr := get(t, "base"), get(t, "drill")
	if base.backup.SigningKey != nil || base.backup.DrillKeySecret != nil || base.backup.Functions[lambdaenv.Drill] != nil {
		t.Fatal("base: drill resources without drillUrl")
	}
	for typ, more := range map[string]int{
		"AWS::KMS::Key":                       1, // the signing key
		"AWS::SecretsManager::Secret":         1, // the scratch key
		"AWS::SecretsManager::ResourcePolicy": 1,
		"AWS::Lambda::Function":               1,
		"AWS::Lambda::EventInvokeConfig":      1,
		"AWS::Logs::LogGroup":                 1,
		"AWS::IAM::Role":                      1,
		"AWS::Events::Rule":                   2, // drill, hourly age
		"AWS::CloudWatch::Alarm":              3, // failed, freshness, throttles
		"AWS::SQS::Queue":                     0,
		"AWS::S3::Bucket":                     0,
	} {
		count(t, dr.tmpl, typ, len(ofType(base.json, typ))+more)
	}
	b := dr.backup
	key := logicalID(b.SigningKey)
	has(t, dr.tmpl, "AWS::KMS::Key", map[string]any{"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "PendingWindowInDays": 30})
	if r := resources(dr.json)[key]; r["DeletionPolicy"] != "Retain" {
		t.Errorf("signing key: %v", r)
	}
	if p := mustJSON(props(dr.json, key)["KeyPolicy"]); !strings.Contains(p, "kms:Sign") || strings.Contains(p, "kms:Decrypt") || strings.Contains(p, "kms:*") {
		t.Errorf("signing key policy: %s", p)
	}
	fn := logicalID(b.Functions[lambdaenv.Drill])
	has(t, dr.tmpl, "AWS::Lambda::Function", map[string]any{
		"Timeout": 900, "MemorySize": 2048, "EphemeralStorage": map[string]any{"Size": drillEphemeralMB},
		"DeadLetterConfig": map[string]any{"TargetArn": getAtt(logicalID(b.InvokeDLQ), "Arn")},
	})
	vars := props(dr.json, fn)["Environment"].(map[string]any)["Variables"].(map[string]any)
	if vars[lambdaenv.DrillURL] != drillURL || mustJSON(vars[lambdaenv.DrillKeySecret]) != mustJSON(ref(logicalID(b.DrillKeySecret))) ||
		mustJSON(vars[lambdaenv.SigningKeyARN]) != mustJSON(getAtt(key, "Arn")) || vars[lambdaenv.EdgeBaseURL] != nil {
		t.Errorf("drill environment %v", vars)
	}
	asm := props(dr.json, logicalID(b.Functions[lambdaenv.Assembler]))["Environment"].(map[string]any)["Variables"].(map[string]any)
	if mustJSON(asm[lambdaenv.SigningKeyARN]) != mustJSON(getAtt(key, "Arn")) {
		t.Errorf("assembler signs with %v", asm[lambdaenv.SigningKeyARN])
	}
	// The weekly drill and the hourly age report.
	has(t, dr.tmpl, "AWS::Events::Rule", map[string]any{"ScheduleExpression": defaultDrillSchedule,
		"Targets": []any{like(map[string]any{"Arn": getAtt(fn, "Arn"), "Input": "{}"})}})
	has(t, dr.tmpl, "AWS::Events::Rule", map[string]any{"ScheduleExpression": "rate(1 hour)",
		"Targets": []any{like(map[string]any{"Arn": getAtt(fn, "Arn"), "Input": lambdaenv.DrillAgeInput})}})
	// Only the drill's role reads the scratch key.
	has(t, dr.tmpl, "AWS::SecretsManager::ResourcePolicy", map[string]any{
		"SecretId": ref(logicalID(b.DrillKeySecret)),
		"ResourcePolicy": like(map[string]any{"Statement": []any{like(map[string]any{
			"Effect": "Deny", "Action": "secretsmanager:GetSecretValue",
			"Condition": map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": []any{getAtt(logicalID(b.Roles[lambdaenv.Drill]), "Arn")}}},
		})}}),
	})
}

// The drill role reads archives and the scratch key, signs with the
// signing key, writes only drill reports: nothing else. The assembler may
// sign too; no other function may.
func TestDrillGrants(t *testing.T) {
	v := get(t, "drill")
	b := v.backup
	bucket := "<" + logicalID(b.Bucket) + ".Arn>"
	key := "<" + logicalID(b.SigningKey) + ".Arn>"
	secret := "<" + logicalID(b.DrillKeySecret) + ">"
	st := roleStatements(v.json, logicalID(b.Roles[lambdaenv.Drill]))
	var got []string
	for _, s := range st {
		for _, a := range s.actions {
			for _, r := range s.resources {
				got = append(got, a+" "+r)
			}
		}
	}
	slices.Sort(got)
	archiveKey, opsKey := "<"+logicalID(b.ArchiveKey)+".Arn>", "<"+logicalID(b.OpsKey)+".Arn>"
	want := []string{
		"kms:Decrypt " + archiveKey, "kms:Decrypt " + opsKey, "kms:GenerateDataKey " + archiveKey,
		"kms:GetPublicKey " + key, "kms:Sign " + key,
		"logs:CreateLogStream <" + logicalID(b.Functions[lambdaenv.Drill].LogGroup()) + ".Arn>",
		"logs:PutLogEvents <" + logicalID(b.Functions[lambdaenv.Drill].LogGroup()) + ".Arn>",
		"s3:GetObject " + bucket + "/backups/*", "s3:ListBucket " + bucket, "s3:PutObject " + bucket + "/backups/*.drill.json",
		"secretsmanager:GetSecretValue " + secret,
		// Lambda's own delivery of failed asynchronous invocations.
		"sqs:SendMessage <" + logicalID(b.InvokeDLQ) + ".Arn>",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("drill role\n got %v\nwant %v", got, want)
	}
	for _, fn := range b.deployed() {
		signs := grants(roleStatements(v.json, logicalID(b.Roles[fn])), "kms:Sign", key)
		// The maintain function signs the manifests of its exports.
		if signs != (fn == lambdaenv.Assembler || fn == lambdaenv.Drill || fn == lambdaenv.Maintain) {
			t.Errorf("%s kms:Sign = %v", fn, signs)
		}
	}
	base := get(t, "base")
	for _, s := range roleStatements(base.json, logicalID(base.backup.Roles[lambdaenv.Assembler])) {
		if slices.Contains(s.actions, "kms:Sign") {
			t.Errorf("base: the assembler signs: %v", s.raw)
		}
	}
}

// The alarms watch what the drill function emits: the metric names of
// internal/metrics in the stack's namespace, without dimensions (EMF's
// rolled-up set).
func TestDrillAlarms(t *testing.T) {
	v := get(t, "drill")
	b := v.backup
	ns := b.Config.Namespace()
	p := alarmProps(t, v, b.Alarms, v.json, "DrillFailedAlarm")
	checkAlarm(t, "drill", "DrillFailedAlarm", p, map[string]any{
		"Namespace": ns, "MetricName": metrics.DrillFailed, "Statistic": "Maximum", "Period": 3600, "Dimensions": nil,
		"Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "ignore", "EvaluationPeriods": 1,
	})
	p = alarmProps(t, v, b.Alarms, v.json, "DrillFreshnessAlarm")
	checkAlarm(t, "drill", "DrillFreshnessAlarm", p, map[string]any{
		"Namespace": ns, "MetricName": metrics.LastProvenRestorableAge, "Statistic": "Maximum", "Period": 3600, "Dimensions": nil,
		"Threshold": 9 * 24 * 3600, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "breaching",
		"EvaluationPeriods": drillAgePeriods, "DatapointsToAlarm": drillAgePeriods,
	})
	if c := DefaultConfig().Drill; c.MaxAgeDays != 8 || c.Schedule != defaultDrillSchedule || c.Enabled() {
		t.Errorf("default drill config %+v", c)
	}
}

func TestDrillConfigValidation(t *testing.T) {
	for name, d := range map[string]DrillConfig{
		"source as scratch": {URL: edgebaseURL + "/", Schedule: defaultDrillSchedule, MaxAgeDays: 8},
		"http":              {URL: "http://scratch.internal", Schedule: defaultDrillSchedule, MaxAgeDays: 8},
		"not a url":         {URL: "scratch", Schedule: defaultDrillSchedule, MaxAgeDays: 8},
		"bad schedule":      {URL: drillURL, Schedule: "weekly", MaxAgeDays: 8},
		"zero age":          {URL: drillURL, Schedule: defaultDrillSchedule, MaxAgeDays: 0},
	} {
		c := DefaultConfig()
		c.EdgeBaseURL, c.Drill = edgebaseURL, d
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	c := DefaultConfig()
	c.EdgeBaseURL, c.Drill.URL = edgebaseURL, drillURL
	if err := c.Validate(); err != nil {
		t.Errorf("a valid drill: %v", err)
	}
}

// The drill function starts with the environment the stack gives it.
func TestDrillStartsWithTheStackEnvironment(t *testing.T) {
	v := get(t, "drill")
	for _, fn := range []string{lambdaenv.Drill, lambdaenv.Assembler} {
		vars := props(v.json, logicalID(v.backup.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
		env := func(k string) string {
			if s, ok := vars[k].(string); ok || vars[k] == nil {
				return s
			}
			return "resolved-" + strings.ToLower(k) // Ref, Fn::GetAtt
		}
		c, err := serverless.ConfigFromEnv(fn, env)
		if err != nil || c.SigningKeyARN != "resolved-"+strings.ToLower(lambdaenv.SigningKeyARN) {
			t.Errorf("%s would fail its cold start: %+v %v", fn, c, err)
		}
	}
}
