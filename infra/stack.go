package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3notifications"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
)

// Metrics the alarms watch, in the stack's namespace (Config.Namespace).
// The functions emit JobsFailed and DRCopies (EMF, rolled up without
// dimensions; internal/metrics); BackupsDone is counted by a metric filter
// on the assembler's log group, from its JobsDone documents of backups
// (JobsDone alone also counts restores).
const (
	jobsFailedMetric  = "JobsFailed"
	drCopiesMetric    = "DRCopies"
	backupsDoneMetric = "BackupsDone"
	// backupsDonePattern matches the assembler's metric document of a
	// finished backup job (pkg/serverless Assembler.jobFinished).
	backupsDonePattern = `{ ($.JobsDone = 1) && ($.kind = "backup") }`
	// restoresStartedPattern matches the scheduler's metric document of a
	// restore it started (pkg/serverless Scheduler.Handle): the restore
	// started alarm tells the operators at once.
	restoresStartedMetric  = "RestoresStarted"
	restoresStartedPattern = `{ ($.JobsStarted = 1) && ($.kind = "restore") }`
)

// Schedules of the stack's maintenance rules.
const (
	watchdogRate  = 5 * time.Minute
	reconcileRate = 24 * time.Hour
)

// BackupStackProps configures NewBackupStack.
type BackupStackProps struct {
	awscdk.StackProps
	Config Config
}

// BackupStack is the serverless edgevault deployment in one account.
type BackupStack struct {
	awscdk.Stack
	Config Config
	// ArchiveKey encrypts the backup bucket (job records, staging parts,
	// archives); OpsKey the secrets, the log groups and the alarm topic.
	// A grant for one (the logs service, a secret reader) never reaches
	// the data of the other.
	ArchiveKey, OpsKey awskms.Key
	Bucket             awss3.Bucket
	AccessLogs         awss3.Bucket
	// TaskQueue feeds the worker, ControlQueue the assembler; InvokeDLQ
	// receives the events of asynchronous invocations (schedule, watchdog,
	// api -> scheduler, S3 notifications and reconcile -> drcopy) that
	// failed for good.
	TaskQueue, TaskDLQ, ControlQueue, ControlDLQ, InvokeDLQ awssqs.Queue
	// Secrets are keyed by the environment variable carrying their ARN;
	// SecretPolicies (same keys) let only the functions that use a
	// secret read it.
	Secrets        map[string]awssecretsmanager.CfnSecret
	SecretPolicies map[string]awssecretsmanager.CfnResourcePolicy
	Functions      map[string]awslambda.Function
	Roles          map[string]awsiam.Role
	API            awsapigateway.RestApi
	// APIOperatorRole may read jobs and start backups through the API,
	// APIRestoreRole may also start restores; the API's resource policy
	// refuses every other caller but those named by context.
	APIOperatorRole, APIRestoreRole awsiam.Role
	AlarmTopic                      awssns.Topic
	// Alarms by construct id.
	Alarms map[string]awscloudwatch.Alarm
	// BackupsDone counts finished backups for the freshness alarm.
	BackupsDone awslogs.MetricFilter
	// RestoresStarted counts restores started, for the notice sent when
	// one starts.
	RestoresStarted awslogs.MetricFilter
	Schedule        awsevents.Rule // nil when schedule=off
	// Watchdog has the scheduler look after unfinished jobs; Reconcile
	// (nil without a DR destination) has drcopy copy what the DR bucket
	// lacks.
	Watchdog, Reconcile awsevents.Rule
	// With a drill (context drillUrl; nil otherwise): the key signing
	// manifests and drill reports, the scratch key secret, the drill
	// rule and the hourly age rule.
	SigningKey              awskms.Key
	DrillKeySecret          awssecretsmanager.CfnSecret
	DrillRule, DrillAgeRule awsevents.Rule
	// In repository mode (nil otherwise): the key wrapping the repository
	// key (nil when context repositoryKmsKeyArn brings one) and the ARN
	// the functions use, and the maintain function's daily forget+prune
	// and weekly export rules.
	RepositoryKey            awskms.Key
	RepositoryKeyARN         *string
	MaintainRule, ExportRule awsevents.Rule
}

// NewBackupStack defines the bucket, queues, secrets, functions, triggers
// and alarms of one deployment, with termination protection. Invalid
// configuration or missing function assets are reported as errors before
// anything is defined.
func NewBackupStack(scope constructs.Construct, id string, props *BackupStackProps) (*BackupStack, error) {
	if props == nil {
		props = &BackupStackProps{Config: DefaultConfig()}
	}
	c := props.Config
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := checkAssets(c.AssetDir); err != nil {
		return nil, err
	}
	if err := checkDrillAsset(c); err != nil {
		return nil, err
	}
	if err := checkMaintainAsset(c); err != nil {
		return nil, err
	}
	sp := props.StackProps
	if sp.Description == nil {
		sp.Description = jsii.String("edgevault: scheduled and on-demand backups of an EdgeBase deployment")
	}
	if sp.TerminationProtection == nil {
		sp.TerminationProtection = jsii.Bool(true)
	}
	s := &BackupStack{
		Stack:          awscdk.NewStack(scope, jsii.String(id), &sp),
		Config:         c,
		Secrets:        map[string]awssecretsmanager.CfnSecret{},
		SecretPolicies: map[string]awssecretsmanager.CfnResourcePolicy{},
		Functions:      map[string]awslambda.Function{},
		Roles:          map[string]awsiam.Role{},
		Alarms:         map[string]awscloudwatch.Alarm{},
	}
	pinFeatureFlags(s.Stack)
	warn(s.Stack, c.Warnings())
	// "Key" is the construct id the stack's only key had before the keys
	// were split: it stays the archive key, so archives written before
	// remain readable.
	s.ArchiveKey = newStackKey(s.Stack, "Key", "edgevault: backup bucket (job records, staging parts, archives)", keyOptions{})
	s.OpsKey = newStackKey(s.Stack, "OpsKey", "edgevault: secrets, logs and alarm notifications",
		keyOptions{cloudWatchLogs: true, cloudWatchAlarms: true})
	s.AccessLogs = newAccessLogsBucket(s.Stack, "AccessLogs", c.LogRetentionDays)
	s.newBucket()
	s.newQueues()
	s.newSecrets()
	s.newDrillResources()
	s.newRepositoryKey()
	if err := s.newFunctions(); err != nil {
		return nil, err
	}
	s.newSecretPolicies()
	s.grantDRRoleRead()
	if err := s.newTriggers(); err != nil {
		return nil, err
	}
	if err := s.newDrillTriggers(); err != nil {
		return nil, err
	}
	if err := s.newMaintainTriggers(); err != nil {
		return nil, err
	}
	s.newAlarms()
	s.newOutputs()
	return s, nil
}

func days(n int) awscdk.Duration { return awscdk.Duration_Days(jsii.Number(float64(n))) }

func (s *BackupStack) newBucket() {
	c := s.Config
	rules := []*awss3.LifecycleRule{
		{
			Id:                          jsii.String("expire-staging"),
			Prefix:                      jsii.String(stagingPrefix),
			Expiration:                  days(stagingExpireDays),
			NoncurrentVersionExpiration: days(stagingExpireDays),
		},
		{
			Id:                                  jsii.String("clean-up-versions-and-uploads"),
			AbortIncompleteMultipartUploadAfter: days(1),
			NoncurrentVersionExpiration:         days(c.NoncurrentDays),
			ExpiredObjectDeleteMarker:           jsii.Bool(true),
		},
	}
	if c.RetentionDays > 0 || c.ArchiveTransitionDays > 0 {
		r := &awss3.LifecycleRule{Id: jsii.String("archive-retention"), Prefix: jsii.String(archivePrefix)}
		if c.ArchiveTransitionDays > 0 {
			// Instant Retrieval keeps archives readable by GetObject, so a
			// restore needs no thaw request.
			r.Transitions = &[]*awss3.Transition{{
				StorageClass:    awss3.StorageClass_GLACIER_INSTANT_RETRIEVAL(),
				TransitionAfter: days(c.ArchiveTransitionDays),
			}}
		}
		if c.RetentionDays > 0 {
			r.Expiration = days(c.RetentionDays)
		}
		rules = append(rules, r)
	}
	s.Bucket = awss3.NewBucket(s.Stack, jsii.String("Backups"),
		archiveBucketProps(s.ArchiveKey, s.AccessLogs, "backup-bucket/", rules, c.ObjectLockMode, c.ObjectLockDays))
}

// archiveBucketProps are the settings every bucket holding archives shares
// (the backup bucket and the DR bucket): versioned, KMS with a bucket key,
// SSE-C refused, no public access, TLS 1.2+ only, owner-enforced,
// access-logged under logPrefix, retained on stack deletion, Object Lock
// when lockMode is GOVERNANCE or COMPLIANCE.
func archiveBucketProps(key awskms.IKey, logs awss3.IBucket, logPrefix string, rules []*awss3.LifecycleRule, lockMode string, lockDays int) *awss3.BucketProps {
	p := &awss3.BucketProps{
		Versioned:        jsii.Bool(true),
		Encryption:       awss3.BucketEncryption_KMS,
		EncryptionKey:    key,
		BucketKeyEnabled: jsii.Bool(true),
		// An object written with a customer-provided key (SSE-C) could be
		// read by nobody else, and a write with an attacker's key would
		// replace an archive with one only the attacker can read.
		BlockedEncryptionTypes: &[]awss3.BlockedEncryptionType{awss3.BlockedEncryptionType_SSE_C()},
		BlockPublicAccess:      awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:             jsii.Bool(true),
		MinimumTLSVersion:      jsii.Number(1.2),
		ObjectOwnership:        awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		LifecycleRules:         &rules,
		ServerAccessLogsBucket: logs,
		ServerAccessLogsPrefix: jsii.String(logPrefix),
		RemovalPolicy:          awscdk.RemovalPolicy_RETAIN,
	}
	if lockMode == "GOVERNANCE" || lockMode == "COMPLIANCE" {
		p.ObjectLockEnabled = jsii.Bool(true)
		p.ObjectLockDefaultRetention = objectLockRetention(lockMode, lockDays)
	}
	return p
}

func objectLockRetention(mode string, n int) awss3.ObjectLockRetention {
	if mode == "COMPLIANCE" {
		return awss3.ObjectLockRetention_Compliance(days(n))
	}
	return awss3.ObjectLockRetention_Governance(days(n))
}

// newQueues uses SQS-managed encryption: messages hold task descriptors
// and job ids only (no backup data, no secrets), and it keeps the per
// message KMS calls, their cost and throttling out of the hot path. It
// also lets EventBridge deliver to the invoke DLQ without a key grant.
func (s *BackupStack) newQueues() {
	c := s.Config
	dlq := func(id string) awssqs.Queue {
		return awssqs.NewQueue(s.Stack, jsii.String(id), &awssqs.QueueProps{
			Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
			EnforceSSL:      jsii.Bool(true),
			RetentionPeriod: days(14),
		})
	}
	queue := func(id string, dlq awssqs.Queue, consumerTimeout float64) awssqs.Queue {
		return awssqs.NewQueue(s.Stack, jsii.String(id), &awssqs.QueueProps{
			Encryption: awssqs.QueueEncryption_SQS_MANAGED,
			EnforceSSL: jsii.Bool(true),
			// Six times the consumer's timeout, as Lambda advises, so a
			// batch being retried after throttling is not redelivered.
			VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(6 * consumerTimeout)),
			RetentionPeriod:   days(4),
			DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: dlq, MaxReceiveCount: jsii.Number(float64(c.MaxReceiveCount))},
		})
	}
	specs := fnSpecs(c)
	s.TaskDLQ = dlq("TaskDLQ")
	s.TaskQueue = queue("TaskQueue", s.TaskDLQ, specs[lambdaenv.Worker].timeout.Seconds())
	s.ControlDLQ = dlq("ControlDLQ")
	s.ControlQueue = queue("ControlQueue", s.ControlDLQ, specs[lambdaenv.Assembler].timeout.Seconds())
	s.InvokeDLQ = dlq("InvokeDLQ")
}

// newSecrets creates the secrets without a value (L1: the L2 construct
// always generates one, and widens the key policy with wildcard actions).
// Operators put the values after the first deploy; see docs/DEPLOY.md.
func (s *BackupStack) newSecrets() {
	for _, d := range []struct{ env, id, desc string }{
		{lambdaenv.ServiceKeySecret, "ServiceKeySecret", "edgevault: EdgeBase service key of the target deployment"},
		{lambdaenv.CloudflareSecret, "CloudflareTokenSecret", "edgevault: Cloudflare API token (Edge mode: Durable Object enumeration)"},
		{lambdaenv.EdgeBaseSecrets, "EdgeBaseSecrets", "edgevault: JSON object of the EdgeBase deployment's secrets (backed up with includeSecrets, written back by restores)"},
		{lambdaenv.NotifySecret, "NotifyWebhookSecret", "edgevault: HMAC-SHA256 secret that signs the job notifications to the notifyUrl webhook"},
		{lambdaenv.R2Secret, "R2CredentialsSecret", `edgevault: R2 direct: {"accessKeyId":…,"secretAccessKey":…} of an R2 API token (Object Read; Object Read & Write for restores)`},
	} {
		sec := awssecretsmanager.NewCfnSecret(s.Stack, jsii.String(d.id), &awssecretsmanager.CfnSecretProps{
			Description: jsii.String(d.desc),
			KmsKeyId:    s.OpsKey.KeyArn(),
		})
		sec.ApplyRemovalPolicy(awscdk.RemovalPolicy_RETAIN, nil)
		suppress(sec, false, nag("AwsSolutions-SMG4",
			"The secret holds a credential issued by another system (EdgeBase or Cloudflare) or that system's own secrets; it is rotated there and the new value is put here. A Secrets Manager rotation function cannot rotate it."))
		s.Secrets[d.env] = sec
	}
}

// secretEnvs are the variables naming the secrets, in a fixed order.
var secretEnvs = []string{lambdaenv.ServiceKeySecret, lambdaenv.CloudflareSecret, lambdaenv.EdgeBaseSecrets, lambdaenv.NotifySecret, lambdaenv.R2Secret}

// newSecretPolicies gives each secret a resource policy that refuses its
// value to every principal but the roles of the functions that read it,
// whatever their IAM policies allow (an administrator puts values, and
// may change the policy to read one). Writing values stays with IAM: the
// operators put them, and the worker writes a restored value back.
func (s *BackupStack) newSecretPolicies() {
	for _, env := range secretEnvs {
		var readers []any
		for _, fn := range lambdaenv.Functions {
			if reads(fn, env) {
				readers = append(readers, s.Roles[fn].RoleArn())
			}
		}
		doc := awsiam.NewPolicyDocument(nil)
		doc.AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("OnlyTheFunctionsThatUseItReadIt"),
			Effect:     awsiam.Effect_DENY,
			Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
			Actions:    jsii.Strings("secretsmanager:GetSecretValue"),
			Resources:  jsii.Strings("*"),
			Conditions: &map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": readers}},
		}))
		sec := s.Secrets[env]
		s.SecretPolicies[env] = awssecretsmanager.NewCfnResourcePolicy(s.Stack, jsii.String(*sec.Node().Id()+"Policy"), &awssecretsmanager.CfnResourcePolicyProps{
			SecretId:          sec.Ref(),
			ResourcePolicy:    doc,
			BlockPublicPolicy: jsii.Bool(true),
		})
	}
}

// envValues maps every variable of lambdaenv the stack sets to its value.
func (s *BackupStack) envValues() map[string]*string {
	c := s.Config
	return map[string]*string{
		lambdaenv.Bucket:            s.Bucket.BucketName(),
		lambdaenv.StagingPrefix:     jsii.String(stagingPrefix),
		lambdaenv.ArchivePrefix:     jsii.String(archivePrefix),
		lambdaenv.KMSKeyARN:         s.ArchiveKey.KeyArn(),
		lambdaenv.TaskQueueURL:      s.TaskQueue.QueueUrl(),
		lambdaenv.ControlQueueURL:   s.ControlQueue.QueueUrl(),
		lambdaenv.SchedulerFunction: s.Functions[lambdaenv.Scheduler].FunctionArn(),
		lambdaenv.EdgeBaseURL:       jsii.String(c.EdgeBaseURL),
		lambdaenv.ServiceKeySecret:  s.Secrets[lambdaenv.ServiceKeySecret].Ref(),
		lambdaenv.CloudflareAccount: jsii.String(c.CloudflareAccountID),
		lambdaenv.CloudflareSecret:  s.Secrets[lambdaenv.CloudflareSecret].Ref(),
		lambdaenv.Instances:         jsii.String(c.Instances),
		lambdaenv.SkipInstances:     jsii.String(strconv.FormatBool(c.SkipInstances)),
		lambdaenv.EdgeBaseSecrets:   s.Secrets[lambdaenv.EdgeBaseSecrets].Ref(),
		lambdaenv.R2Endpoint:        jsii.String(c.R2EndpointURL()),
		lambdaenv.R2Bucket:          jsii.String(c.R2Bucket),
		lambdaenv.R2Secret:          s.Secrets[lambdaenv.R2Secret].Ref(),
		lambdaenv.Concurrency:       jsii.String(strconv.Itoa(c.Concurrency)),
		lambdaenv.SpoolDir:          jsii.String(workerSpoolDir),
		lambdaenv.SpoolBytes:        jsii.String(strconv.FormatInt(workerSpoolBytes, 10)),
		lambdaenv.DRBucket:          jsii.String(c.DR.Bucket),
		lambdaenv.DRRoleARN:         jsii.String(c.DR.RoleARN),
		lambdaenv.DRKMSKeyARN:       jsii.String(c.DR.KMSKeyARN),
		lambdaenv.DRRegion:          jsii.String(c.DR.Region),
		lambdaenv.APIAllowSecrets:   jsii.String(strconv.FormatBool(c.APIAllowSecrets)),
		lambdaenv.NotifyURL:         jsii.String(c.NotifyURL),
		lambdaenv.NotifySecret:      s.Secrets[lambdaenv.NotifySecret].Ref(),
		lambdaenv.MetricsNamespace:  jsii.String(c.Namespace()),
		lambdaenv.Deployed:          jsii.String("true"),
	}
}

func (s *BackupStack) newFunctions() error {
	c := s.Config
	specs := fnSpecs(c)
	for _, fn := range s.deployed() {
		spec, ok := specs[fn]
		if !ok {
			return fmt.Errorf("infra: no deployment spec for function %q", fn)
		}
		logs := awslogs.NewLogGroup(s.Stack, jsii.String(spec.id+"Logs"), &awslogs.LogGroupProps{
			Retention:     retentionEnum[c.LogRetentionDays],
			EncryptionKey: s.OpsKey,
			RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
		})
		role := awsiam.NewRole(s.Stack, jsii.String(spec.id+"Role"), &awsiam.RoleProps{
			AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
			Description: jsii.String("Execution role of the edgevault " + fn + " function"),
		})
		role.AddToPrincipalPolicy(statement("WriteOwnLogs",
			[]string{"logs:CreateLogStream", "logs:PutLogEvents"}, []*string{logs.LogGroupArn()}, nil))
		p := &awslambda.FunctionProps{
			Description:           jsii.String(spec.description),
			Runtime:               awslambda.Runtime_PROVIDED_AL2023(),
			Architecture:          awslambda.Architecture_ARM_64(),
			Handler:               jsii.String("bootstrap"),
			Code:                  awslambda.Code_FromAsset(jsii.String(filepath.Join(c.AssetDir, fn)), nil),
			MemorySize:            jsii.Number(float64(spec.memoryMB)),
			Timeout:               awscdk.Duration_Seconds(jsii.Number(spec.timeout.Seconds())),
			Role:                  role,
			LogGroup:              logs,
			LoggingFormat:         awslambda.LoggingFormat_JSON,
			ApplicationLogLevelV2: awslambda.ApplicationLogLevel(c.LogLevel),
			SystemLogLevelV2:      awslambda.SystemLogLevel_INFO,
		}
		if c.Tracing {
			p.Tracing = awslambda.Tracing_ACTIVE
		}
		if spec.async {
			p.DeadLetterQueue = s.InvokeDLQ
			p.RetryAttempts = jsii.Number(2)
		}
		if spec.loops {
			p.RecursiveLoop = awslambda.RecursiveLoop_ALLOW
		}
		if spec.ephemeralMB > 0 {
			p.EphemeralStorageSize = awscdk.Size_Mebibytes(jsii.Number(float64(spec.ephemeralMB)))
		}
		if fn == lambdaenv.Worker && c.WorkerReservedConcurrency > 0 {
			p.ReservedConcurrentExecutions = jsii.Number(float64(c.WorkerReservedConcurrency))
		}
		if spec.reserved > 0 {
			p.ReservedConcurrentExecutions = jsii.Number(float64(spec.reserved))
		}
		s.Functions[fn] = awslambda.NewFunction(s.Stack, jsii.String(spec.id), p)
		s.Roles[fn] = role
	}
	// Environment last: the api's value names the scheduler function.
	values := s.envValues()
	s.drillEnvValues(values)
	unset := s.repositoryEnvValues(values)
	for _, fn := range s.deployed() {
		env, err := functionEnv(fn, values, unset...)
		if err != nil {
			return err
		}
		for k, v := range env {
			s.Functions[fn].AddEnvironment(jsii.String(k), v, nil)
		}
		s.grant(fn, specs[fn])
	}
	return nil
}

// grant gives fn's role what its spec and its environment say it uses,
// each statement on named resources only.
func (s *BackupStack) grant(fn string, spec fnSpec) {
	role := s.Roles[fn]
	add := func(st awsiam.PolicyStatement) { role.AddToPrincipalPolicy(st) }
	// ListBucket also makes S3 answer 404 (not 403) for a missing key,
	// which the adapter maps to blob.ErrNotExist.
	add(statement("ListBackupBucket", []string{"s3:ListBucket"}, []*string{s.Bucket.BucketArn()}, nil))
	writes := spec.drillReports
	for _, a := range []struct {
		sid    string
		prefix string
		access s3Access
	}{{"StagingObjects", stagingPrefix, spec.staging}, {"ArchiveObjects", archivePrefix, spec.archive}} {
		if a.access == 0 {
			continue
		}
		writes = writes || a.access&s3Write != 0
		add(statement(a.sid, a.access.actions(), []*string{s.Bucket.ArnForObjects(jsii.String(a.prefix + "*"))}, nil))
	}
	writes = s.grantRepository(fn, add) || writes
	if spec.idempotency {
		writes = true
		add(statement("IdempotencyRecords", []string{"s3:PutObject"},
			[]*string{s.Bucket.ArnForObjects(jsii.String(stagingPrefix + lambdaenv.IdempotencyDir + "*"))}, nil))
	}
	kmsS3 := []string{"kms:Decrypt"}
	if writes {
		kmsS3 = append(kmsS3, "kms:GenerateDataKey")
	}
	var regions []string
	if fn == lambdaenv.DRCopy && s.Config.DR.Enabled() {
		// A copy made server-side through the DR region's endpoint may
		// have S3 decrypt the source from there.
		regions = []string{*s.Stack.Region(), s.Config.DR.Region}
	}
	add(statement("BucketKeyViaS3", kmsS3, []*string{s.ArchiveKey.KeyArn()}, viaService(s.Stack, "s3", regions...)))

	var queues []*string
	if spec.sendsTasks {
		queues = append(queues, s.TaskQueue.QueueArn())
	}
	if spec.sendsControl {
		queues = append(queues, s.ControlQueue.QueueArn())
	}
	if len(queues) > 0 {
		add(statement("SendToQueues", []string{"sqs:SendMessage"}, queues, nil))
	}

	var secretsRead []*string
	for _, env := range secretEnvs {
		if reads(fn, env) {
			secretsRead = append(secretsRead, s.Secrets[env].Ref())
		}
	}
	if len(secretsRead) > 0 {
		add(statement("ReadSecrets", []string{"secretsmanager:GetSecretValue"}, secretsRead, nil))
		kmsSM := []string{"kms:Decrypt"}
		if reads(fn, lambdaenv.EdgeBaseSecrets) {
			// pkg/secrets tells "no value yet" from "no such secret" with
			// DescribeSecret.
			add(statement("DescribeEdgeBaseSecrets", []string{"secretsmanager:DescribeSecret"},
				[]*string{s.Secrets[lambdaenv.EdgeBaseSecrets].Ref()}, nil))
		}
		if fn == lambdaenv.Worker {
			// A restore writes the EdgeBase secrets back, last.
			add(statement("WriteBackEdgeBaseSecrets", []string{"secretsmanager:PutSecretValue"},
				[]*string{s.Secrets[lambdaenv.EdgeBaseSecrets].Ref()}, nil))
			kmsSM = append(kmsSM, "kms:GenerateDataKey")
		}
		add(statement("SecretsKeyViaSecretsManager", kmsSM, []*string{s.OpsKey.KeyArn()}, viaService(s.Stack, "secretsmanager")))
	}

	if reads(fn, lambdaenv.SchedulerFunction) {
		// The unqualified ARN only: no versions or aliases are invoked.
		add(statement("StartJobs", []string{"lambda:InvokeFunction"},
			[]*string{s.Functions[lambdaenv.Scheduler].FunctionArn()}, nil))
	}
	if fn == lambdaenv.DRCopy {
		s.grantDR(add)
	}
	s.grantDrill(fn, spec, add)
	s.suppressRoleFindings(fn, role)
}

// grantDR lets drcopy reach the destination: by assuming the destination
// role, or (without drRoleArn) by writing to the destination bucket
// directly, which its bucket policy (and key policy) must then allow. The
// destination's key is used through S3 of the destination's region.
func (s *BackupStack) grantDR(add func(awsiam.PolicyStatement)) {
	dr := s.Config.DR
	if !dr.Enabled() {
		return
	}
	if dr.RoleARN != "" {
		add(statement("AssumeDRRole", []string{"sts:AssumeRole"}, []*string{jsii.String(dr.RoleARN)}, nil))
		return
	}
	bucketARN := "arn:" + *s.Stack.Partition() + ":s3:::" + dr.Bucket
	// s3:ResourceAccount pins the bucket to the destination account, so a
	// same-named bucket elsewhere is never written.
	owner := map[string]any{"StringEquals": map[string]any{"s3:ResourceAccount": dr.Account}}
	add(statement("WriteDRArchives", drWriteActions, []*string{jsii.String(bucketARN + "/" + archivePrefix + "*")}, owner))
	add(statement("ListDRBucket", drListActions, []*string{jsii.String(bucketARN)}, owner))
	if dr.KMSKeyARN != "" {
		add(statement("DRKeyViaS3", []string{"kms:GenerateDataKey", "kms:Decrypt"},
			[]*string{jsii.String(dr.KMSKeyARN)}, viaService(s.Stack, "s3", dr.Region)))
	}
}

// grantDRRoleRead lets the destination's writer role (drRoleArn) read the
// archives it copies: the copy is made server-side (UploadPartCopy from
// this bucket into the DR bucket), and such a request is signed by one
// principal, which must be able to read the source and write the
// destination. Read only, archives only; the role's own policy in the DR
// account must allow the same (the DR stack's does). The principal is the
// DR account narrowed to the role by aws:PrincipalArn, so the grant does
// not break (or name a stranger) when the role is recreated.
func (s *BackupStack) grantDRRoleRead() {
	dr := s.Config.DR
	if !dr.Enabled() || dr.RoleARN == "" {
		return
	}
	principals := &[]awsiam.IPrincipal{awsiam.NewAccountPrincipal(jsii.String(dr.Account))}
	role := map[string]any{"aws:PrincipalArn": dr.RoleARN}
	s.Bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("DRWriterRoleReadsArchives"),
		Principals: principals,
		Actions:    jsii.Strings("s3:GetObject", "s3:GetObjectVersion"),
		Resources:  &[]*string{s.Bucket.ArnForObjects(jsii.String(archivePrefix + "*"))},
		Conditions: &map[string]any{"ArnEquals": role},
	}))
	via := viaService(s.Stack, "s3", *s.Stack.Region(), dr.Region)
	via["ArnEquals"] = role
	s.ArchiveKey.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("DRWriterRoleDecryptsArchivesViaS3"),
		Principals: principals,
		Actions:    jsii.Strings("kms:Decrypt"),
		Resources:  jsii.Strings("*"),
		Conditions: &via,
	}), nil)
}

func (s *BackupStack) suppressRoleFindings(fn string, role awsiam.Role) {
	var findings []any
	spec := fnSpecs(s.Config)[fn]
	if spec.staging != 0 {
		findings = append(findings, regexFinding(`/^Resource::<Backups[0-9A-F]{8}\.Arn>\/jobs\/\*$/g`))
	}
	if spec.archive != 0 {
		findings = append(findings, regexFinding(`/^Resource::<Backups[0-9A-F]{8}\.Arn>\/backups\/\*$/g`))
	}
	if spec.idempotency {
		findings = append(findings, regexFinding(`/^Resource::<Backups[0-9A-F]{8}\.Arn>\/jobs\/idempotency\/\*$/g`))
	}
	findings = append(findings, drillFindings(spec)...)
	findings = append(findings, s.repositoryFindings(fn)...)
	reason := "Object-level S3 permissions on one key prefix of the backup bucket (staging jobs/, the api's Idempotency-Key records jobs/idempotency/, archives backups/, or a part of the repository prefix); object keys are generated per job, task and backup, or are content hashes in the repository, so they can only be named by prefix. Actions are listed individually."
	if len(findings) > 0 {
		suppress(role, true, nag("AwsSolutions-IAM5", reason, findings...))
	}
	if fn == lambdaenv.DRCopy && s.Config.DR.Enabled() && s.Config.DR.RoleARN == "" {
		suppress(role, true, nag("AwsSolutions-IAM5",
			"Writes archive copies under the archive prefix (backups/) of the configured DR bucket only, and only while s3:ResourceAccount is the configured DR account; archive names derive from each backup's start time. No delete action.",
			"Resource::arn:<AWS::Partition>:s3:::"+s.Config.DR.Bucket+"/"+archivePrefix+"*"))
	}
	if s.Config.Tracing {
		suppress(role, true, nag("AwsSolutions-IAM5",
			"X-Ray tracing (opt-in via context tracing=true): xray:PutTraceSegments and xray:PutTelemetryRecords do not support resource-level permissions, so the resource must be *.", "Resource::*"))
	}
}

func (s *BackupStack) newTriggers() error {
	c := s.Config
	worker, assembler := s.Functions[lambdaenv.Worker], s.Functions[lambdaenv.Assembler]
	tasks := &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(float64(c.TaskBatchSize)),
		ReportBatchItemFailures: jsii.Bool(true),
	}
	if c.TaskBatchingWindow > 0 {
		tasks.MaxBatchingWindow = awscdk.Duration_Seconds(jsii.Number(c.TaskBatchingWindow.Seconds()))
	}
	if c.WorkerMaxConcurrency > 0 {
		tasks.MaxConcurrency = jsii.Number(float64(c.WorkerMaxConcurrency))
	}
	worker.AddEventSource(awslambdaeventsources.NewSqsEventSource(s.TaskQueue, tasks))
	// Checks are short and a job's assembly is fenced in the job record;
	// two concurrent assemblers (the least an SQS event source allows)
	// keep checks moving while one assembles.
	assembler.AddEventSource(awslambdaeventsources.NewSqsEventSource(s.ControlQueue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(1),
		ReportBatchItemFailures: jsii.Bool(true),
		MaxConcurrency:          jsii.Number(2),
	}))

	scheduler := s.Functions[lambdaenv.Scheduler]
	if c.Schedule != "off" {
		s.Schedule = s.invokeRule("Schedule", "edgevault: scheduled backup", awsevents.Schedule_Expression(jsii.String(c.Schedule)),
			scheduler, awsevents.RuleTargetInput_FromObject(scheduledStart(c)), 4, awscdk.Duration_Hours(jsii.Number(2)))
	}
	// The next run replaces a lost one, so events expire within a run.
	watchdog, err := constantInput(lambdaenv.WatchdogInput)
	if err != nil {
		return err
	}
	every := awscdk.Duration_Minutes(jsii.Number(watchdogRate.Minutes()))
	s.Watchdog = s.invokeRule("Watchdog", "edgevault: the scheduler re-queues stalled checks and fails jobs past their timeout",
		awsevents.Schedule_Rate(every), scheduler, watchdog, 2, every)

	s.newAPI()

	if c.DR.Enabled() {
		drcopy := s.Functions[lambdaenv.DRCopy]
		s.Bucket.AddEventNotification(awss3.EventType_OBJECT_CREATED,
			awss3notifications.NewLambdaDestination(drcopy),
			&awss3.NotificationKeyFilter{Prefix: jsii.String(archivePrefix), Suffix: jsii.String(manifestSuffix)})
		// CDK applies bucket notifications with its own singleton handler.
		suppress(s.Stack.Node().FindChild(jsii.String("BucketNotificationsHandler050a0587b7544547bf325f094a3db834")), true,
			nag("AwsSolutions-IAM4",
				"CDK's bucket-notification handler (a deploy-time custom resource, not part of the data path) always gets AWSLambdaBasicExecutionRole for its own logs; its inline policy is limited to s3:PutBucketNotification/GetBucketNotification on the backup bucket.", "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"))
		// S3 delivers events at least once, not always: the daily
		// reconcile copies whatever an event never triggered.
		reconcile, err := constantInput(lambdaenv.ReconcileInput)
		if err != nil {
			return err
		}
		s.Reconcile = s.invokeRule("DRReconcile", "edgevault: drcopy copies every archive the DR bucket lacks",
			awsevents.Schedule_Rate(awscdk.Duration_Hours(jsii.Number(reconcileRate.Hours()))), drcopy, reconcile, 4, awscdk.Duration_Hours(jsii.Number(2)))
	}
	return nil
}

// constantInput is the rule target input of a lambdaenv constant, which
// must be a JSON object.
func constantInput(v string) (awsevents.RuleTargetInput, error) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(v), &obj); err != nil {
		return nil, fmt.Errorf("infra: rule input %s: %w", v, err)
	}
	return awsevents.RuleTargetInput_FromObject(obj), nil
}

// scheduledStart is the scheduler's constant input for a scheduled run,
// in the shape of events.StartRequest (a test decodes it as one) so the
// scheduler handles one type whoever invokes it. Both options are spelled
// out, so the rule shows exactly what a scheduled backup includes.
func scheduledStart(c Config) map[string]any {
	return map[string]any{
		// One job per scheduled event, even when EventBridge delivers the
		// event twice (Lambda's own retries keep the request id).
		"jobId":   "backup-" + *awsevents.EventField_FromPath(jsii.String("$.id")),
		"kind":    string(events.KindBackup),
		"trigger": string(events.TriggerSchedule),
		"options": map[string]any{"includeStorage": c.IncludeStorage, "includeSecrets": c.IncludeSecrets},
	}
}

func (s *BackupStack) newOutputs() {
	out := func(id, desc string, v *string) {
		awscdk.NewCfnOutput(s.Stack, jsii.String(id), &awscdk.CfnOutputProps{Value: v, Description: jsii.String(desc)})
	}
	out("BucketName", "Backup bucket (archives under "+archivePrefix+", job state under "+stagingPrefix+"); context drSourceBucket of the DR stack", s.Bucket.BucketName())
	out("ApiUrl", "API base URL (SigV4, service execute-api)", s.API.Url())
	out("ApiOperatorRoleArn", "Role that may read jobs and start backups through the API", s.APIOperatorRole.RoleArn())
	out("ApiRestoreRoleArn", "Role that may also start restores through the API", s.APIRestoreRole.RoleArn())
	out("SchedulerFunctionName", "Scheduler function (direct invocation: aws lambda invoke)", s.Functions[lambdaenv.Scheduler].FunctionName())
	out("DRCopyRoleArn", "Execution role of drcopy: context drSourceRoleArn of the DR stack", s.Roles[lambdaenv.DRCopy].RoleArn())
	out("ArchiveKeyArn", "KMS key of the backup bucket: context drSourceKeyArn of the DR stack", s.ArchiveKey.KeyArn())
	out("OpsKeyArn", "KMS key of the secrets, logs and alarm topic (putting a secret value needs it)", s.OpsKey.KeyArn())
	out("ServiceKeySecretArn", "Put the EdgeBase service key here", s.Secrets[lambdaenv.ServiceKeySecret].Ref())
	out("CloudflareTokenSecretArn", "Put the Cloudflare API token here (Edge mode)", s.Secrets[lambdaenv.CloudflareSecret].Ref())
	out("EdgeBaseSecretsArn", "JSON object of the EdgeBase deployment's secrets", s.Secrets[lambdaenv.EdgeBaseSecrets].Ref())
	out("NotifyWebhookSecretArn", "Put the secret that signs job notifications here (with -c notifyUrl=https://...)", s.Secrets[lambdaenv.NotifySecret].Ref())
	out("R2CredentialsSecretArn", "Put the R2 token's S3 credentials here (R2 direct)", s.Secrets[lambdaenv.R2Secret].Ref())
	out("AlarmTopicArn", "SNS topic of the alarms", s.AlarmTopic.TopicArn())
	out("MetricsNamespace", "CloudWatch namespace of the stack's metrics", jsii.String(s.Config.Namespace()))
}

// invokeRule is an EventBridge rule that invokes fn with input on
// schedule; events still failing after retries go to the invoke
// dead-letter queue, and events older than maxAge are dropped (the next
// run replaces them).
func (s *BackupStack) invokeRule(id, description string, schedule awsevents.Schedule, fn awslambda.IFunction, input awsevents.RuleTargetInput, retries int, maxAge awscdk.Duration) awsevents.Rule {
	return awsevents.NewRule(s.Stack, jsii.String(id), &awsevents.RuleProps{
		Description: jsii.String(description),
		Schedule:    schedule,
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fn, &awseventstargets.LambdaFunctionProps{
			Event:           input,
			DeadLetterQueue: s.InvokeDLQ,
			RetryAttempts:   jsii.Number(retries),
			MaxEventAge:     maxAge,
		})},
	})
}
