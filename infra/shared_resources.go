package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
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

// keyServices are the AWS services that use the key as themselves (not
// on behalf of a role of this account) and so need key policy statements.
type keyServices struct {
	cloudWatchLogs   bool // encrypted log groups
	cloudWatchAlarms bool // alarms publishing to the encrypted SNS topic
}

// newStackKey is the customer managed key of a stack: rotation on,
// retained on stack deletion, and a key policy that delegates to IAM.
func newStackKey(stack awscdk.Stack, id, description string, svc keyServices) awskms.Key {
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
		// topic as itself; it cannot use an AWS managed key.
		doc.AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CloudWatchAlarmsToEncryptedTopic"),
			Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
			Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey"),
			Resources:  jsii.Strings("*"),
		}))
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
// ciphertext).
func viaService(stack awscdk.Stack, service string) map[string]any {
	return map[string]any{"StringEquals": map[string]any{"kms:ViaService": service + "." + *stack.Region() + ".amazonaws.com"}}
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
