package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/edgevault/edgevault/internal/lambdaenv"
)

// requiredFeatureFlags are the CDK feature flags the stacks depend on.
// cdk.json sets them (with every flag `cdk init` recommends); the stacks
// set them too, so they synthesize the same without cdk.json (`go run
// ./infra`, tests). Without the flag, server access logging would ask
// for ACLs, which BucketOwnerEnforced buckets refuse.
var requiredFeatureFlags = map[string]any{
	"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": true,
}

// pinFeatureFlags sets each required flag the context does not already
// set; call it on a new stack before adding anything to it.
func pinFeatureFlags(stack awscdk.Stack) {
	for k, v := range requiredFeatureFlags {
		if stack.Node().TryGetContext(jsii.String(k)) == nil {
			stack.Node().SetContext(jsii.String(k), v)
		}
	}
}

// kmsAccountActions is what the key policy lets the account's IAM
// policies grant: key administration plus the symmetric crypto calls.
// It is spelled out (instead of the usual "kms:*") so no policy in the
// stack allows a wildcard action; kms:PutKeyPolicy keeps the key
// manageable.
var kmsAccountActions = []string{
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt",
	"kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation",
	"kms:EnableKey", "kms:EnableKeyRotation", "kms:Encrypt", "kms:GenerateDataKey",
	"kms:GenerateDataKeyWithoutPlaintext", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
	"kms:ListGrants", "kms:ListKeyPolicies", "kms:ListKeyRotations", "kms:ListResourceTags",
	"kms:PutKeyPolicy", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:RetireGrant",
	"kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion",
	"kms:TagResource", "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
}

// keyOptions are the AWS services that use the key as themselves (not on
// behalf of a role of this account) and so need key policy statements,
// and whether the key is protected from deletion.
type keyOptions struct {
	cloudWatchLogs   bool // encrypted log groups
	cloudWatchAlarms bool // alarms publishing to the encrypted SNS topic
	// denyDeletion denies kms:ScheduleKeyDeletion to every principal but
	// breakGlass ("" = to every principal). Key administrators keep every
	// other right, kms:PutKeyPolicy included (the stack must be able to
	// update the policy), so this stops a mistake or a stolen admin
	// session that does not also rewrite the policy; an SCP on the
	// account closes that too (docs/DEPLOY.md).
	denyDeletion bool
	breakGlass   string
}

// newStackKey is a customer managed key of a stack: rotation on, retained
// on stack deletion, and a key policy that delegates to IAM.
func newStackKey(stack awscdk.Stack, id, description string, svc keyOptions) awskms.Key {
	doc := awsiam.NewPolicyDocument(nil)
	doc.AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("AccountAdministrationAndIAMDelegation"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
		Actions:    jsii.Strings(kmsAccountActions...),
		Resources:  jsii.Strings("*"),
	}))
	if svc.cloudWatchLogs {
		// As documented for CloudWatch Logs, limited by the encryption
		// context to log groups of this account and region.
		doc.AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CloudWatchLogsOfThisAccount"),
			Principals: &[]awsiam.IPrincipal{awsiam.ServicePrincipal_FromStaticServicePrincipleName(jsii.String("logs." + *stack.Region() + ".amazonaws.com"))},
			Actions: jsii.Strings("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
				"kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"),
			Resources: jsii.Strings("*"),
			Conditions: &map[string]any{
				"ArnLike": map[string]any{
					"kms:EncryptionContext:aws:logs:arn": stack.FormatArn(&awscdk.ArnComponents{
						Service: jsii.String("logs"), Resource: jsii.String("log-group"), ResourceName: jsii.String("*"),
						ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME,
					}),
				},
			},
		}))
	}
	if svc.cloudWatchAlarms {
		// CloudWatch publishes alarm notifications to the KMS-encrypted
		// topic as itself; it cannot use an AWS managed key. Only alarms
		// of this account (no confused deputy).
		doc.AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CloudWatchAlarmsToEncryptedTopic"),
			Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
			Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey"),
			Resources:  jsii.Strings("*"),
			Conditions: alarmsOfThisAccount(stack),
		}))
	}
	if svc.denyDeletion {
		st := &awsiam.PolicyStatementProps{
			Sid:        jsii.String("NoDeletionButBreakGlass"),
			Effect:     awsiam.Effect_DENY,
			Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
			Actions:    jsii.Strings("kms:ScheduleKeyDeletion"),
			Resources:  jsii.Strings("*"),
		}
		if svc.breakGlass != "" {
			st.Conditions = &map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": svc.breakGlass}}
		}
		doc.AddStatements(awsiam.NewPolicyStatement(st))
	}
	return awskms.NewKey(stack, jsii.String(id), &awskms.KeyProps{
		Description:       jsii.String(description),
		EnableKeyRotation: jsii.Bool(true),
		Policy:            doc,
		PendingWindow:     awscdk.Duration_Days(jsii.Number(30)),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
	})
}

// newAccessLogsBucket is the target of S3 server access logs. S3 cannot
// deliver access logs to an SSE-KMS bucket, hence SSE-S3.
func newAccessLogsBucket(stack awscdk.Stack, id string, days int) awss3.Bucket {
	b := awss3.NewBucket(stack, jsii.String(id), &awss3.BucketProps{
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		MinimumTLSVersion: jsii.Number(1.2),
		ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		LifecycleRules: &[]*awss3.LifecycleRule{{
			Id:                                  jsii.String("expire-access-logs"),
			Expiration:                          awscdk.Duration_Days(jsii.Number(float64(days))),
			AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1)),
		}},
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
	suppress(b, false, nag("AwsSolutions-S1",
		"This bucket is the server access log target of the stack's other buckets; logging its own accesses would need yet another bucket (and so on)."))
	return b
}

// statement is an Allow statement of an identity policy.
func statement(sid string, actions []string, resources []*string, conditions map[string]any) awsiam.PolicyStatement {
	p := &awsiam.PolicyStatementProps{
		Sid:       jsii.String(sid),
		Actions:   jsii.Strings(actions...),
		Resources: &resources,
	}
	if conditions != nil {
		p.Conditions = &conditions
	}
	return awsiam.NewPolicyStatement(p)
}

// viaService limits KMS use to requests a service makes on the caller's
// behalf (the key is then unusable directly, e.g. to decrypt a copied
// ciphertext) in one of regions (none: the stack's region).
func viaService(stack awscdk.Stack, service string, regions ...string) map[string]any {
	if len(regions) == 0 {
		regions = []string{*stack.Region()}
	}
	var v any
	if len(regions) == 1 {
		v = service + "." + regions[0] + ".amazonaws.com"
	} else {
		vs := make([]any, len(regions))
		for i, r := range regions {
			vs[i] = service + "." + r + ".amazonaws.com"
		}
		v = vs
	}
	return map[string]any{"StringEquals": map[string]any{"kms:ViaService": v}}
}

// alarmsOfThisAccount are the conditions that limit a service principal
// to CloudWatch alarms of the stack's account and region.
func alarmsOfThisAccount(stack awscdk.Stack) *map[string]any {
	return &map[string]any{
		"StringEquals": map[string]any{"aws:SourceAccount": stack.Account()},
		"ArnLike": map[string]any{"aws:SourceArn": stack.FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("cloudwatch"), Resource: jsii.String("alarm"), ResourceName: jsii.String("*"),
			ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME,
		})},
	}
}

// newAlarmTopic is the SNS topic a stack's alarms notify: encrypted with
// key, TLS only, open to this account's CloudWatch alarms, with an e-mail
// subscription when email is set.
func newAlarmTopic(stack awscdk.Stack, id string, key awskms.IKey, email string) awssns.Topic {
	t := awssns.NewTopic(stack, jsii.String(id), &awssns.TopicProps{
		DisplayName: jsii.String("edgevault alarms"),
		MasterKey:   key,
		EnforceSSL:  jsii.Bool(true),
	})
	// The topic policy (created for enforceSSL) replaces the default one,
	// so CloudWatch alarms of this account are allowed explicitly.
	t.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudWatchAlarmsOfThisAccount"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("sns:Publish"),
		Resources:  &[]*string{t.TopicArn()},
		Conditions: alarmsOfThisAccount(stack),
	}))
	if email != "" {
		t.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(email), nil))
	}
	return t
}

// alarmSpec is one alarm: it fires when metric compares to threshold by
// cmp in every one of periods consecutive periods (1 when 0); missing data
// counts as missing says. Every alarm notifies the topic both when it
// fires and when it recovers.
type alarmSpec struct {
	id, description string
	metric          awscloudwatch.IMetric
	threshold       float64
	cmp             awscloudwatch.ComparisonOperator
	periods         int
	missing         awscloudwatch.TreatMissingData
}

// anyAbove is the common alarm: the metric above zero in one period, no
// data meaning nothing happened.
func anyAbove(id, description string, m awscloudwatch.IMetric) alarmSpec {
	return alarmSpec{id: id, description: description, metric: m, threshold: 0,
		cmp: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD, missing: awscloudwatch.TreatMissingData_NOT_BREACHING}
}

// freshness fires when the hourly sum of m was below one for hours
// hours in a row. Missing data is breaching: a metric that stops (a
// disabled rule, a function that no longer runs, a lost subscription to
// the logs) fires it as surely as a failing one.
func freshness(id, description string, m awscloudwatch.IMetric, hours int) alarmSpec {
	return alarmSpec{id: id, description: description, metric: m, threshold: 1,
		cmp: awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD, periods: hours, missing: awscloudwatch.TreatMissingData_BREACHING}
}

func newAlarm(stack awscdk.Stack, topic awssns.ITopic, a alarmSpec) awscloudwatch.Alarm {
	periods := float64(max(a.periods, 1))
	al := awscloudwatch.NewAlarm(stack, jsii.String(a.id), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(a.description),
		Metric:             a.metric,
		Threshold:          jsii.Number(a.threshold),
		ComparisonOperator: a.cmp,
		EvaluationPeriods:  jsii.Number(periods),
		DatapointsToAlarm:  jsii.Number(periods),
		TreatMissingData:   a.missing,
	})
	action := awscloudwatchactions.NewSnsAction(topic)
	al.AddAlarmAction(action)
	al.AddOkAction(action)
	return al
}

var (
	fiveMinutes = awscdk.Duration_Minutes(jsii.Number(5))
	oneHour     = awscdk.Duration_Hours(jsii.Number(1))
)

// sum and maximum are metric options of the alarms.
func sum(period awscdk.Duration) *awscloudwatch.MetricOptions {
	return &awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("Sum")}
}

func maximum(period awscdk.Duration) *awscloudwatch.MetricOptions {
	return &awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("Maximum")}
}

// nagRule is a cdk-nag suppression: rule id, the reason a reviewer reads,
// and optionally the findings (e.g. "Resource::*") it covers.
type nagRule struct {
	id, reason string
	appliesTo  []any
}

func nag(id, reason string, appliesTo ...any) nagRule {
	return nagRule{id: id, reason: reason, appliesTo: appliesTo}
}

func suppress(c constructs.IConstruct, children bool, rules ...nagRule) {
	s := make([]*cdknag.NagPackSuppression, 0, len(rules))
	for _, r := range rules {
		ns := &cdknag.NagPackSuppression{Id: jsii.String(r.id), Reason: jsii.String(r.reason)}
		if len(r.appliesTo) > 0 {
			at := r.appliesTo
			ns.AppliesTo = &at
		}
		s = append(s, ns)
	}
	cdknag.NagSuppressions_AddResourceSuppressions(c, &s, jsii.Bool(children))
}

// regexFinding matches cdk-nag findings by regular expression (for
// logical ids CDK derives).
func regexFinding(re string) any { return &cdknag.RegexAppliesTo{Regex: jsii.String(re)} }

var retentionEnum = map[int]awslogs.RetentionDays{
	1: awslogs.RetentionDays_ONE_DAY, 3: awslogs.RetentionDays_THREE_DAYS, 5: awslogs.RetentionDays_FIVE_DAYS,
	7: awslogs.RetentionDays_ONE_WEEK, 14: awslogs.RetentionDays_TWO_WEEKS, 30: awslogs.RetentionDays_ONE_MONTH,
	60: awslogs.RetentionDays_TWO_MONTHS, 90: awslogs.RetentionDays_THREE_MONTHS, 120: awslogs.RetentionDays_FOUR_MONTHS,
	150: awslogs.RetentionDays_FIVE_MONTHS, 180: awslogs.RetentionDays_SIX_MONTHS, 365: awslogs.RetentionDays_ONE_YEAR,
	400: awslogs.RetentionDays_THIRTEEN_MONTHS, 545: awslogs.RetentionDays_EIGHTEEN_MONTHS, 731: awslogs.RetentionDays_TWO_YEARS,
	1096: awslogs.RetentionDays_THREE_YEARS, 1827: awslogs.RetentionDays_FIVE_YEARS, 2192: awslogs.RetentionDays_SIX_YEARS,
	2557: awslogs.RetentionDays_SEVEN_YEARS, 2922: awslogs.RetentionDays_EIGHT_YEARS, 3288: awslogs.RetentionDays_NINE_YEARS,
	3653: awslogs.RetentionDays_TEN_YEARS,
}

// checkAssets fails early, with the fix, when a bootstrap binary is
// missing (Code.fromAsset would abort the synth with a stack trace).
func checkAssets(dir string) error {
	for _, fn := range lambdaenv.Functions {
		p := filepath.Join(dir, fn, "bootstrap")
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: %s is missing: run `make lambdas`, or pass -c %s=DIR with DIR/<function>/bootstrap", ErrConfig, p, ctxAssetDir)
		}
	}
	return nil
}
