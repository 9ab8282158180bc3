package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// StackOptions are the stack settings that matter to the functions. The
// defaults are the CDK stack's (infra/config.go DefaultConfig).
type StackOptions struct {
	// Name prefixes every resource (stacks never hard-code names; tests
	// need unique ones on a shared moto).
	Name string
	// MaxReceiveCount is the dead-letter threshold of both queues
	// (context maxReceiveCount, default 3).
	MaxReceiveCount int
	// WorkerTimeout and AssemblerTimeout are the consumers' function
	// timeouts (default 10 and 15 minutes); each queue's visibility
	// timeout is six times its consumer's, as in the stack.
	WorkerTimeout, AssemblerTimeout time.Duration
	// EdgeBaseURL and CloudflareAccount are the deployment (context
	// edgebaseUrl, cloudflareAccountId).
	EdgeBaseURL, CloudflareAccount string
	// ServiceKey, CloudflareToken and EdgeBaseSecrets are the values an
	// operator puts into the stack's three secrets after deploying.
	ServiceKey, CloudflareToken string
	EdgeBaseSecrets             map[string]string
	// DR creates the cross-account destination bucket (the DR stack), in
	// DRRegion (context drRegion; "" = moto's default region).
	DR       bool
	DRRegion string
	// APIAllowSecrets lets API callers ask for the EdgeBase secrets
	// (context apiAllowSecrets, default false).
	APIAllowSecrets bool
	// MetricsNamespace (context metricsNamespace, default EdgeVault).
	MetricsNamespace string
	// R2Credentials is the value put into the R2 credentials secret
	// ({"accessKeyId":…,"secretAccessKey":…}; "" = none). R2 direct is
	// on only where a test also sets EDGEVAULT_R2_ENDPOINT/_BUCKET.
	R2Credentials string
}

func (o *StackOptions) defaults() {
	if o.MaxReceiveCount == 0 {
		o.MaxReceiveCount = 3
	}
	if o.WorkerTimeout == 0 {
		o.WorkerTimeout = 10 * time.Minute
	}
	if o.AssemblerTimeout == 0 {
		o.AssemblerTimeout = 15 * time.Minute
	}
	if o.MetricsNamespace == "" {
		o.MetricsNamespace = "EdgeVault"
	}
}

// Stack is what SetupStack created.
type Stack struct {
	Options                                                   StackOptions
	Bucket, DRBucket                                          string
	TaskQueueURL, TaskDLQURL, ControlQueueURL, ControlDLQURL  string
	ServiceKeySecret, CloudflareSecret, EdgeBaseSecretsSecret string
	R2Secret                                                  string
}

// SetupStack creates the resources of infra's NewBackupStack that the
// functions use, with its settings, on the endpoint of clients (moto):
//
//   - the backup bucket: versioned; archives under backups/, job state
//     under jobs/ (the stack adds KMS encryption, public access block, TLS
//     policy and lifecycle rules, which moto does not enforce);
//   - the task and control queues, each with a dead-letter queue
//     (redrive maxReceiveCount), visibility timeout 6x the consumer's
//     timeout, retention 4 days (DLQs 14 days);
//   - the four secrets, with the values an operator puts after deploying;
//   - with DR, the destination bucket of the DR stack (versioned).
//
// The stack's SQS-managed encryption, KMS keys, alarms, API Gateway and
// EventBridge rule have no counterpart here: the tests invoke the
// handlers the way those triggers do.
func SetupStack(ctx context.Context, c *awsconfig.Clients, o StackOptions) (*Stack, error) {
	o.defaults()
	st := &Stack{Options: o, Bucket: o.Name + "-backups"}
	s3c := c.S3()
	buckets := []string{st.Bucket}
	if o.DR {
		st.DRBucket = o.Name + "-dr"
		buckets = append(buckets, st.DRBucket)
	}
	for _, b := range buckets {
		if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return nil, fmt.Errorf("e2e: bucket %s: %w", b, err)
		}
		if _, err := s3c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
			return nil, fmt.Errorf("e2e: versioning of %s: %w", b, err)
		}
	}
	sq := c.SQS()
	queue := func(name string, attrs map[string]string) (url, arn string, err error) {
		out, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
		if err != nil {
			return "", "", fmt.Errorf("e2e: queue %s: %w", name, err)
		}
		a, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		if err != nil {
			return "", "", err
		}
		return aws.ToString(out.QueueUrl), a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], nil
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	withDLQ := func(name string, consumer time.Duration) (url, dlqURL string, err error) {
		dlqURL, dlqARN, err := queue(name+"-dlq", map[string]string{"MessageRetentionPeriod": secs(14 * 24 * time.Hour)})
		if err != nil {
			return "", "", err
		}
		redrive, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlqARN, "maxReceiveCount": o.MaxReceiveCount})
		url, _, err = queue(name, map[string]string{
			"VisibilityTimeout":      secs(6 * consumer),
			"MessageRetentionPeriod": secs(4 * 24 * time.Hour),
			"RedrivePolicy":          string(redrive),
		})
		return url, dlqURL, err
	}
	var err error
	if st.TaskQueueURL, st.TaskDLQURL, err = withDLQ(o.Name+"-tasks", o.WorkerTimeout); err != nil {
		return nil, err
	}
	if st.ControlQueueURL, st.ControlDLQURL, err = withDLQ(o.Name+"-control", o.AssemblerTimeout); err != nil {
		return nil, err
	}
	sm := c.SecretsManager()
	secret := func(name, value string) (string, error) {
		in := &secretsmanager.CreateSecretInput{Name: aws.String(name)}
		if value != "" {
			in.SecretString = aws.String(value)
		}
		out, err := sm.CreateSecret(ctx, in)
		if err != nil {
			return "", fmt.Errorf("e2e: secret %s: %w", name, err)
		}
		return aws.ToString(out.ARN), nil
	}
	if st.ServiceKeySecret, err = secret(o.Name+"-service-key", o.ServiceKey); err != nil {
		return nil, err
	}
	if st.CloudflareSecret, err = secret(o.Name+"-cloudflare-token", o.CloudflareToken); err != nil {
		return nil, err
	}
	vals, _ := json.Marshal(o.EdgeBaseSecrets)
	if o.EdgeBaseSecrets == nil {
		vals = nil
	}
	if st.EdgeBaseSecretsSecret, err = secret(o.Name+"-edgebase-secrets", string(vals)); err != nil {
		return nil, err
	}
	if st.R2Secret, err = secret(o.Name+"-r2-credentials", o.R2Credentials); err != nil {
		return nil, err
	}
	return st, nil
}

// Env is the environment the stack gives function fn: exactly the
// variables lambdaenv.Reads lists for it (EDGEVAULT_DEPLOYED=true among
// them), plus the test-only endpoint overrides in extra (which turn
// EDGEVAULT_DEPLOYED off: a deployed function refuses them).
func (s *Stack) Env(fn string, extra map[string]string) map[string]string {
	all := map[string]string{
		lambdaenv.Bucket:            s.Bucket,
		lambdaenv.StagingPrefix:     "jobs/",
		lambdaenv.ArchivePrefix:     "backups/",
		lambdaenv.KMSKeyARN:         "",
		lambdaenv.TaskQueueURL:      s.TaskQueueURL,
		lambdaenv.ControlQueueURL:   s.ControlQueueURL,
		lambdaenv.SchedulerFunction: "function", // the name the Runtime Interface Emulator serves
		lambdaenv.EdgeBaseURL:       s.Options.EdgeBaseURL,
		lambdaenv.ServiceKeySecret:  s.ServiceKeySecret,
		lambdaenv.CloudflareAccount: s.Options.CloudflareAccount,
		lambdaenv.CloudflareSecret:  s.CloudflareSecret,
		lambdaenv.Instances:         "",
		lambdaenv.SkipInstances:     "false",
		lambdaenv.EdgeBaseSecrets:   s.EdgeBaseSecretsSecret,
		lambdaenv.R2Endpoint:        "",
		lambdaenv.R2Bucket:          "",
		lambdaenv.R2Secret:          s.R2Secret,
		lambdaenv.Concurrency:       "10",
		lambdaenv.DRBucket:          s.DRBucket,
		lambdaenv.DRRoleARN:         "",
		lambdaenv.DRKMSKeyARN:       "",
		lambdaenv.DRRegion:          s.Options.DRRegion,
		lambdaenv.APIAllowSecrets:   strconv.FormatBool(s.Options.APIAllowSecrets),
		lambdaenv.MetricsNamespace:  s.Options.MetricsNamespace,
		lambdaenv.Deployed:          "true",
	}
	env := map[string]string{}
	for _, name := range lambdaenv.Reads[fn] {
		env[name] = all[name]
	}
	for k, v := range extra {
		env[k] = v
		if slices.Contains(lambdaenv.TestOverrides, k) && v != "" {
			// A function pointed at emulators is not a deployed one: the
			// stack never sets the overrides, and a deployed function
			// refuses them.
			env[lambdaenv.Deployed] = "false"
		}
	}
	return env
}

// Config is function fn's Config as ConfigFromEnv builds it from Env.
func (s *Stack) Config(fn string, extra map[string]string) (serverless.Config, error) {
	env := s.Env(fn, extra)
	return serverless.ConfigFromEnv(fn, func(k string) string { return env[k] })
}
