package main

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// drArchivesFilter is the id of the DR bucket's request metrics
// configuration for the archive prefix (the FilterId dimension).
const drArchivesFilter = "archives"

// DRDestinationStackProps configures NewDRDestinationStack.
type DRDestinationStackProps struct {
	awscdk.StackProps
	Config DRDestinationConfig
}

// DRDestinationStack is what the disaster-recovery account needs: a
// bucket for archive copies, the role drcopy assumes to write them, and
// alarms of its own. Deploy it with credentials of the destination
// account; it goes to the region drRegion names.
type DRDestinationStack struct {
	awscdk.Stack
	Config DRDestinationConfig
	// Key encrypts the archive copies; nobody but the break-glass
	// principal may schedule its deletion. OpsKey encrypts the alarm
	// topic.
	Key, OpsKey awskms.Key
	Bucket      awss3.Bucket
	AccessLogs  awss3.Bucket
	// WriterRole is assumed by the source drcopy role only. It may add
	// archives it reads from the source bucket, and read them back; it
	// can neither delete nor overwrite one.
	WriterRole awsiam.Role
	AlarmTopic awssns.Topic
	Alarms     map[string]awscloudwatch.Alarm
}

// NewDRDestinationStack defines the destination side of the cross-account
// copy, with termination protection.
func NewDRDestinationStack(scope constructs.Construct, id string, props *DRDestinationStackProps) (*DRDestinationStack, error) {
	c := props.Config
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sp := props.StackProps
	if sp.Description == nil {
		sp.Description = jsii.String("edgevault: disaster-recovery copies of backup archives (destination account)")
	}
	if sp.Env == nil {
		sp.Env = &awscdk.Environment{Region: jsii.String(c.Region)}
	}
	if sp.TerminationProtection == nil {
		sp.TerminationProtection = jsii.Bool(true)
	}
	s := &DRDestinationStack{Stack: awscdk.NewStack(scope, jsii.String(id), &sp), Config: c, Alarms: map[string]awscloudwatch.Alarm{}}
	pinFeatureFlags(s.Stack)
	warn(s.Stack, c.Warnings())
	s.Key = newStackKey(s.Stack, "Key", "edgevault DR: archive copies",
		keyOptions{denyDeletion: true, breakGlass: c.KeyBreakGlassARN})
	s.OpsKey = newStackKey(s.Stack, "OpsKey", "edgevault DR: alarm notifications", keyOptions{cloudWatchAlarms: true})
	s.AccessLogs = newAccessLogsBucket(s.Stack, "AccessLogs", c.LogRetentionDays)

	rules := []*awss3.LifecycleRule{{
		Id:                                  jsii.String("clean-up-versions-and-uploads"),
		AbortIncompleteMultipartUploadAfter: days(1),
		NoncurrentVersionExpiration:         days(c.NoncurrentDays),
		ExpiredObjectDeleteMarker:           jsii.Bool(true),
	}}
	if c.RetentionDays > 0 {
		rules = append(rules, &awss3.LifecycleRule{
			Id: jsii.String("archive-retention"), Prefix: jsii.String(archivePrefix), Expiration: days(c.RetentionDays),
		})
	}
	bp := archiveBucketProps(s.Key, s.AccessLogs, "dr-bucket/", rules, c.ObjectLockMode, c.ObjectLockDays)
	// Request metrics on the archive prefix: the DR account sees copies
	// arrive (or stop) on its own, whatever the source account reports.
	bp.Metrics = &[]*awss3.BucketMetrics{{Id: jsii.String(drArchivesFilter), Prefix: jsii.String(archivePrefix)}}
	s.Bucket = awss3.NewBucket(s.Stack, jsii.String("Archives"), bp)
	s.denyOverwritesAndForeignEncryption()

	// Trust the source account, narrowed to the one drcopy role by ARN
	// (a condition rather than the role as principal, so the trust
	// survives the role being replaced and can be deployed first).
	s.WriterRole = awsiam.NewRole(s.Stack, jsii.String("WriterRole"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewPrincipalWithConditions(awsiam.NewAccountPrincipal(jsii.String(c.SourceAccount())), &map[string]any{
			"ArnEquals": map[string]any{"aws:PrincipalArn": c.SourceRoleARN},
		}),
		Description:        jsii.String("Assumed by the edgevault drcopy function of account " + c.SourceAccount() + " to write archive copies"),
		MaxSessionDuration: awscdk.Duration_Hours(jsii.Number(1)),
	})
	add := func(st awsiam.PolicyStatement) { s.WriterRole.AddToPrincipalPolicy(st) }
	// The multipart listings let a copy cut short resume with the parts
	// already uploaded.
	add(statement("WriteArchives", drWriteActions, []*string{s.Bucket.ArnForObjects(jsii.String(archivePrefix + "*"))}, nil))
	add(statement("ListArchiveBucket", drListActions, []*string{s.Bucket.BucketArn()}, nil))
	add(statement("ArchiveKeyViaS3", []string{"kms:GenerateDataKey", "kms:Decrypt"}, []*string{s.Key.KeyArn()}, viaService(s.Stack, "s3")))
	// The copy is made server-side (UploadPartCopy): the role reads the
	// source archive itself. The source bucket and key policies grant the
	// same to this role (the backup stack's, with drRoleArn set).
	source := "arn:" + *awscdk.Aws_PARTITION() + ":s3:::" + c.SourceBucket
	add(statement("ReadSourceArchives", []string{"s3:GetObject", "s3:GetObjectVersion"},
		[]*string{jsii.String(source + "/" + archivePrefix + "*")},
		map[string]any{"StringEquals": map[string]any{"s3:ResourceAccount": c.SourceAccount()}}))
	add(statement("SourceKeyViaS3", []string{"kms:Decrypt"}, []*string{jsii.String(c.SourceKeyARN)},
		viaService(s.Stack, "s3", c.Region, c.SourceRegion())))
	suppress(s.WriterRole, true, nag("AwsSolutions-IAM5",
		"Object-level permissions on the archive prefix (backups/) of the destination bucket, and read-only on the same prefix of the source bucket (pinned to the source account by s3:ResourceAccount); archive names derive from each backup's start time, so they can only be named by prefix. No delete action is granted.",
		regexFinding(`/^Resource::<Archives[0-9A-F]{8}\.Arn>\/backups\/\*$/g`),
		"Resource::arn:<AWS::Partition>:s3:::"+c.SourceBucket+"/"+archivePrefix+"*"))

	s.newAlarms()

	out := func(id, desc string, v *string) {
		awscdk.NewCfnOutput(s.Stack, jsii.String(id), &awscdk.CfnOutputProps{Value: v, Description: jsii.String(desc)})
	}
	out("DRBucketName", "context drBucket of the backup stack", s.Bucket.BucketName())
	out("DRRoleArn", "context drRoleArn of the backup stack", s.WriterRole.RoleArn())
	out("DRKmsKeyArn", "context drKmsKeyArn of the backup stack", s.Key.KeyArn())
	out("DRAccount", "context drAccount of the backup stack", s.Stack.Account())
	out("DRRegion", "context drRegion of the backup stack", s.Stack.Region())
	out("DRAlarmTopicArn", "SNS topic of the DR alarms", s.AlarmTopic.TopicArn())
	return s, nil
}

// denyOverwritesAndForeignEncryption adds the bucket policy statements
// that keep a copy, once written, what it is, against any principal
// (the writer role, or whoever controls the source account, included):
//   - an object is only created where none exists: PutObject and
//     CompleteMultipartUpload need If-None-Match (S3 then answers 412 for
//     an existing key). CreateMultipartUpload, UploadPart and
//     UploadPartCopy take no conditional header and are exempt through
//     s3:ObjectCreationOperation; CopyObject into the bucket is refused;
//   - objects are encrypted with SSE-KMS under the DR key (or the bucket
//     default, which is the DR key): another key, another encryption type
//     and SSE-C are refused (SSE-C also by the bucket's blocked
//     encryption types).
//
// With Object Lock, an overwrite would only add a version; this keeps the
// current version of every key the copy drcopy verified.
func (s *DRDestinationStack) denyOverwritesAndForeignEncryption() {
	deny := func(sid string, cond map[string]any) {
		s.Bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String(sid),
			Effect:     awsiam.Effect_DENY,
			Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
			Actions:    jsii.Strings("s3:PutObject"),
			Resources:  &[]*string{s.Bucket.ArnForObjects(jsii.String("*"))},
			Conditions: &cond,
		}))
	}
	deny("NoOverwrites", map[string]any{
		"Null": map[string]any{"s3:if-none-match": "true"},
		"Bool": map[string]any{"s3:ObjectCreationOperation": "true"},
	})
	deny("OnlySSEKMS", map[string]any{"StringNotEqualsIfExists": map[string]any{"s3:x-amz-server-side-encryption": "aws:kms"}})
	deny("OnlyTheDRKey", map[string]any{"StringNotEqualsIfExists": map[string]any{"s3:x-amz-server-side-encryption-aws-kms-key-id": s.Key.KeyArn()}})
	deny("NoSSEC", map[string]any{"Null": map[string]any{"s3:x-amz-server-side-encryption-customer-algorithm": "false"}})
}

// newAlarms watches the DR bucket from the DR account: copies that stop
// arriving (the source account may be the one that failed, or been taken
// over), and server errors.
func (s *DRDestinationStack) newAlarms() {
	c := s.Config
	s.AlarmTopic = newAlarmTopic(s.Stack, "Alarms", s.OpsKey, c.AlarmEmail)
	add := func(a alarmSpec) { s.Alarms[a.id] = newAlarm(s.Stack, s.AlarmTopic, a) }
	requests := func(name string, opts *awscloudwatch.MetricOptions) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String("AWS/S3"), MetricName: jsii.String(name),
			DimensionsMap: &map[string]*string{"BucketName": s.Bucket.BucketName(), "FilterId": jsii.String(drArchivesFilter)},
			Period:        opts.Period, Statistic: opts.Statistic,
		})
	}
	add(freshness("ArchivesFreshnessAlarm",
		fmt.Sprintf("edgevault DR: no archive written to the DR bucket in the last %d hours", c.CopyMaxAgeHours),
		requests("PutRequests", sum(oneHour)), c.CopyMaxAgeHours))
	add(anyAbove("ServerErrorsAlarm", "edgevault DR: the DR bucket answered requests under backups/ with server errors (5xx)",
		requests("5xxErrors", sum(fiveMinutes))))
}
