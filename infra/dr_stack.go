package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// DRDestinationStackProps configures NewDRDestinationStack.
type DRDestinationStackProps struct {
	awscdk.StackProps
	Config DRDestinationConfig
}

// DRDestinationStack is what the disaster-recovery account needs: a
// bucket for archive copies and the role drcopy assumes to write them.
// Deploy it with credentials of the destination account.
type DRDestinationStack struct {
	awscdk.Stack
	Config     DRDestinationConfig
	Key        awskms.Key
	Bucket     awss3.Bucket
	AccessLogs awss3.Bucket
	// WriterRole is assumed by the source drcopy role only. It may add
	// and read archives, never delete them.
	WriterRole awsiam.Role
}

// NewDRDestinationStack defines the destination side of the cross-account
// copy.
func NewDRDestinationStack(scope constructs.Construct, id string, props *DRDestinationStackProps) (*DRDestinationStack, error) {
	c := props.Config
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sp := props.StackProps
	if sp.Description == nil {
		sp.Description = jsii.String("edgevault: disaster-recovery copies of backup archives (destination account)")
	}
	s := &DRDestinationStack{Stack: awscdk.NewStack(scope, jsii.String(id), &sp), Config: c}
	pinFeatureFlags(s.Stack)
	s.Key = newStackKey(s.Stack, "Key", "edgevault DR: archive copies", keyServices{})
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
	s.Bucket = awss3.NewBucket(s.Stack, jsii.String("Archives"),
		archiveBucketProps(s.Key, s.AccessLogs, "dr-bucket/", rules, c.ObjectLockMode, c.ObjectLockDays))

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
	add(statement("WriteArchives", []string{"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"},
		[]*string{s.Bucket.ArnForObjects(jsii.String(archivePrefix + "*"))}, nil))
	add(statement("ListArchiveBucket", []string{"s3:ListBucket"}, []*string{s.Bucket.BucketArn()}, nil))
	add(statement("ArchiveKeyViaS3", []string{"kms:GenerateDataKey", "kms:Decrypt"}, []*string{s.Key.KeyArn()}, viaService(s.Stack, "s3")))
	suppress(s.WriterRole, true, nag("AwsSolutions-IAM5",
		"Object-level permissions on the archive prefix (backups/) of the destination bucket only; archive names derive from each backup's start time, so they can only be named by prefix. No delete action is granted.", regexFinding(`/^Resource::<Archives[0-9A-F]{8}\.Arn>\/backups\/\*$/g`)))

	out := func(id, desc string, v *string) {
		awscdk.NewCfnOutput(s.Stack, jsii.String(id), &awscdk.CfnOutputProps{Value: v, Description: jsii.String(desc)})
	}
	out("DRBucketName", "context drBucket of the backup stack", s.Bucket.BucketName())
	out("DRRoleArn", "context drRoleArn of the backup stack", s.WriterRole.RoleArn())
	out("DRKmsKeyArn", "context drKmsKeyArn of the backup stack", s.Key.KeyArn())
	out("DRAccount", "context drAccount of the backup stack", s.Stack.Account())
	return s, nil
}
