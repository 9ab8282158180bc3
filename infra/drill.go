package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
)

// This file is the restore drill of the stack: the drill function, its
// rules, the scratch deployment's key secret, the signing key of
// manifests and drill reports, and the drill alarms. None of it exists
// without context drillUrl.

const (
	ctxDrillURL        = "drillUrl"
	ctxDrillSchedule   = "drillSchedule"
	ctxDrillMaxAgeDays = "drillMaxAgeDays"
	// defaultDrillSchedule drills weekly, Sundays at 05:00 UTC (after the
	// default 03:00 backup).
	defaultDrillSchedule   = "cron(0 5 ? * SUN *)"
	defaultDrillMaxAgeDays = 8
	// drillAgeRate is how often the drill function reports the age of the
	// last proven archive between drills, so the age alarm has data.
	drillAgeRate = time.Hour
	// drillAgePeriods: the age alarm fires after this many hourly data
	// points over the threshold, or missing.
	drillAgePeriods = 3
	// drillReportSuffix ends the drill report beside an archive
	// (drill.ReportName), the only object the drill function writes.
	drillReportSuffix = ".drill.json"
	// The drill downloads the archive to /tmp and the restore unpacks it
	// there (serverless.DefaultDrillMaxBytes, 4 GiB): Lambda's maximum.
	drillEphemeralMB = 10240
)

// DrillConfig is the scheduled restore drill.
type DrillConfig struct {
	// URL is the scratch deployment the drill restores into; "" = no
	// drill (and no signing key).
	URL string
	// Schedule is the drill's EventBridge cron()/rate() expression.
	Schedule string
	// MaxAgeDays: the age alarm fires when the newest archive that passed
	// a drill is older.
	MaxAgeDays int
}

// Enabled reports whether the stack drills.
func (d DrillConfig) Enabled() bool { return d.URL != "" }

func (d DrillConfig) validate(c Config) []error {
	if !d.Enabled() {
		return nil
	}
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("%w: %s=%v: %s", ErrConfig, key, v, want))
	}
	u, err := url.Parse(d.URL)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		bad(ctxDrillURL, d.URL, "an https URL")
	case u.Scheme == "http" && !c.AllowInsecureEdgeBaseURL:
		bad(ctxDrillURL, d.URL, "https (the scratch service key travels with every request); "+ctxAllowInsecureEdgeBaseURL+"=true accepts http")
	case strings.EqualFold(strings.TrimSuffix(d.URL, "/"), strings.TrimSuffix(c.EdgeBaseURL, "/")):
		bad(ctxDrillURL, d.URL, "a scratch deployment, not the one backed up ("+ctxEdgeBaseURL+"): a drill replaces its data")
	}
	if !scheduleRE.MatchString(d.Schedule) {
		bad(ctxDrillSchedule, d.Schedule, "cron(...) or rate(...)")
	}
	if d.MaxAgeDays < 1 || d.MaxAgeDays > 365 {
		bad(ctxDrillMaxAgeDays, d.MaxAgeDays, "1..365 days")
	}
	return errs
}

// readDrillContext reads the drill's context keys.
func readDrillContext(r *contextReader, d *DrillConfig) {
	r.str(ctxDrillURL, &d.URL)
	r.str(ctxDrillSchedule, &d.Schedule)
	r.integer(ctxDrillMaxAgeDays, &d.MaxAgeDays)
}

// drillSpec is the drill function's deployment spec: it reads archives
// and writes only drill reports beside them.
func drillSpec() fnSpec {
	return fnSpec{
		id: "Drill", description: "edgevault drill: restores the newest archive into the scratch deployment and compares what it reads back",
		memoryMB: 2048, timeout: 15 * time.Minute, async: true, ephemeralMB: drillEphemeralMB,
		archive: s3Read, drillReports: true,
	}
}

// deployed lists the functions of this stack: every function, and the
// optional ones configured.
func (s *BackupStack) deployed() []string {
	fns := append([]string(nil), lambdaenv.Functions...)
	if s.Config.Drill.Enabled() {
		fns = append(fns, lambdaenv.Drill)
	}
	if s.Config.Repository.Enabled() {
		fns = append(fns, lambdaenv.Maintain)
	}
	return fns
}

// newDrillResources creates, with a drill, the signing key and the secret
// of the scratch deployment's service key; the functions' environments
// name them.
func (s *BackupStack) newDrillResources() {
	if !s.Config.Drill.Enabled() {
		return
	}
	doc := awsiam.NewPolicyDocument(nil)
	// The account's IAM policies may grant its use (the assembler's and
	// the drill's roles get kms:Sign); administration as for the other
	// keys, without the symmetric crypto calls.
	var admin []string
	for _, a := range kmsAccountActions {
		switch a {
		case "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo",
			"kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:RotateKeyOnDemand":
			continue
		}
		admin = append(admin, a)
	}
	doc.AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("AccountAdministrationAndIAMDelegation"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
		Actions:    jsii.Strings(append(admin, "kms:Sign", "kms:Verify", "kms:GetPublicKey")...),
		Resources:  jsii.Strings("*"),
	}))
	s.SigningKey = awskms.NewKey(s.Stack, jsii.String("SigningKey"), &awskms.KeyProps{
		Description:   jsii.String("edgevault: signs archive manifests (assembler) and drill reports (drill); verify with its public key"),
		KeySpec:       awskms.KeySpec_ECC_NIST_P256,
		KeyUsage:      awskms.KeyUsage_SIGN_VERIFY,
		Policy:        doc,
		PendingWindow: awscdk.Duration_Days(jsii.Number(30)),
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
	suppress(s.SigningKey, false, nag("AwsSolutions-KMS5",
		"An asymmetric ECC_NIST_P256 signing key: KMS rotates symmetric keys only. Signatures name the public key they verify against, so a new key can replace it without invalidating old manifests."))
	sec := awssecretsmanager.NewCfnSecret(s.Stack, jsii.String("DrillKeySecret"), &awssecretsmanager.CfnSecretProps{
		Description: jsii.String("edgevault: EdgeBase service key of the drill's scratch deployment"),
		KmsKeyId:    s.OpsKey.KeyArn(),
	})
	sec.ApplyRemovalPolicy(awscdk.RemovalPolicy_RETAIN, nil)
	suppress(sec, false, nag("AwsSolutions-SMG4",
		"The secret holds the scratch EdgeBase deployment's service key, issued by EdgeBase; it is rotated there and the new value is put here. A Secrets Manager rotation function cannot rotate it."))
	s.DrillKeySecret = sec
}

// drillEnvValues adds the drill's variables to the stack's values; the
// assembler's signing key is "" without a drill.
func (s *BackupStack) drillEnvValues(values map[string]*string) {
	values[lambdaenv.SigningKeyARN] = jsii.String("")
	if !s.Config.Drill.Enabled() {
		return
	}
	values[lambdaenv.SigningKeyARN] = s.SigningKey.KeyArn()
	values[lambdaenv.DrillURL] = jsii.String(s.Config.Drill.URL)
	values[lambdaenv.DrillKeySecret] = s.DrillKeySecret.Ref()
}

// grantDrill gives fn what the drill parts of its environment and spec
// say it uses: signing with the signing key, reading the scratch key
// secret, writing drill reports.
func (s *BackupStack) grantDrill(fn string, spec fnSpec, add func(awsiam.PolicyStatement)) {
	if reads(fn, lambdaenv.SigningKeyARN) && s.SigningKey != nil {
		add(statement("SignWithSigningKey", []string{"kms:Sign", "kms:GetPublicKey"}, []*string{s.SigningKey.KeyArn()}, nil))
	}
	if spec.drillReports {
		add(statement("DrillReports", []string{"s3:PutObject"},
			[]*string{s.Bucket.ArnForObjects(jsii.String(archivePrefix + "*" + drillReportSuffix))}, nil))
	}
	if reads(fn, lambdaenv.DrillKeySecret) && s.DrillKeySecret != nil {
		add(statement("ReadDrillKeySecret", []string{"secretsmanager:GetSecretValue"}, []*string{s.DrillKeySecret.Ref()}, nil))
		add(statement("DrillKeySecretViaSecretsManager", []string{"kms:Decrypt"}, []*string{s.OpsKey.KeyArn()}, viaService(s.Stack, "secretsmanager")))
	}
}

// drillFindings are the cdk-nag findings of the drill report grant.
func drillFindings(spec fnSpec) []any {
	if !spec.drillReports {
		return nil
	}
	return []any{regexFinding(`/^Resource::<Backups[0-9A-F]{8}\.Arn>\/backups\/\*\.drill\.json$/g`)}
}

// newDrillTriggers schedules the drill and the hourly age report, and
// lets only the drill's role read the scratch key secret.
func (s *BackupStack) newDrillTriggers() error {
	c := s.Config
	if !c.Drill.Enabled() {
		return nil
	}
	fn := s.Functions[lambdaenv.Drill]
	// A drill that could not run records that itself (DrillFailed); Lambda
	// retries only invocations that could record nothing.
	s.DrillRule = s.invokeRule("DrillSchedule", "edgevault: restore drill of the newest archive into the scratch deployment",
		awsevents.Schedule_Expression(jsii.String(c.Drill.Schedule)), fn, awsevents.RuleTargetInput_FromObject(map[string]any{}), 2, awscdk.Duration_Hours(jsii.Number(2)))
	age, err := constantInput(lambdaenv.DrillAgeInput)
	if err != nil {
		return err
	}
	every := awscdk.Duration_Minutes(jsii.Number(drillAgeRate.Minutes()))
	s.DrillAgeRule = s.invokeRule("DrillAge", "edgevault: the drill function reports the age of the last archive a drill proved",
		awsevents.Schedule_Rate(every), fn, age, 2, every)
	doc := awsiam.NewPolicyDocument(nil)
	doc.AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("OnlyTheFunctionsThatUseItReadIt"),
		Effect:     awsiam.Effect_DENY,
		Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
		Actions:    jsii.Strings("secretsmanager:GetSecretValue"),
		Resources:  jsii.Strings("*"),
		Conditions: &map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": []any{s.Roles[lambdaenv.Drill].RoleArn()}}},
	}))
	awssecretsmanager.NewCfnResourcePolicy(s.Stack, jsii.String("DrillKeySecretPolicy"), &awssecretsmanager.CfnResourcePolicyProps{
		SecretId:          s.DrillKeySecret.Ref(),
		ResourcePolicy:    doc,
		BlockPublicPolicy: jsii.Bool(true),
	})
	out := func(id, desc string, v *string) {
		awscdk.NewCfnOutput(s.Stack, jsii.String(id), &awscdk.CfnOutputProps{Value: v, Description: jsii.String(desc)})
	}
	out("DrillKeySecretArn", "Put the scratch deployment's EdgeBase service key here", s.DrillKeySecret.Ref())
	out("SigningKeyArn", "KMS key signing manifests and drill reports (aws kms get-public-key for verify --trust)", s.SigningKey.KeyArn())
	return nil
}

// drillAlarms: a drill failed (the alarm stays until a drill passes), and
// the newest archive a drill proved is older than drillMaxAgeDays, or the
// age stopped being reported (missing data breaches).
func (s *BackupStack) drillAlarms(add func(alarmSpec)) {
	c := s.Config
	if !c.Drill.Enabled() {
		return
	}
	metric := func(name string) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String(c.Namespace()), MetricName: jsii.String(name),
			Period: oneHour, Statistic: jsii.String("Maximum"),
		})
	}
	add(alarmSpec{
		id:          "DrillFailedAlarm",
		description: "edgevault: a restore drill failed: the newest archive did not restore into the scratch deployment as it was backed up, or the drill could not run (its " + drillReportSuffix + " says why)",
		metric:      metric(metrics.DrillFailed), threshold: 1,
		cmp: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		// Until the next drill reports: a failure is not forgotten after
		// an hour.
		missing: awscloudwatch.TreatMissingData_IGNORE,
	})
	add(alarmSpec{
		id: "DrillFreshnessAlarm",
		description: "edgevault: no archive younger than " + strconv.Itoa(c.Drill.MaxAgeDays) +
			" days has passed a restore drill (drills failing or not running, or the age no longer reported)",
		metric:    metric(metrics.LastProvenRestorableAge),
		threshold: float64(c.Drill.MaxAgeDays * 24 * 3600),
		cmp:       awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		periods:   drillAgePeriods,
		missing:   awscloudwatch.TreatMissingData_BREACHING,
	})
}

// checkDrillAsset is checkAssets for the drill function, with a drill.
func checkDrillAsset(c Config) error {
	if !c.Drill.Enabled() {
		return nil
	}
	p := filepath.Join(c.AssetDir, lambdaenv.Drill, "bootstrap")
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is missing (context %s): run `make lambdas`, or pass -c %s=DIR with DIR/<function>/bootstrap", ErrConfig, p, ctxDrillURL, ctxAssetDir)
	}
	return nil
}
