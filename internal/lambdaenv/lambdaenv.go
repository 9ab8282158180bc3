package lambdaenv

import (
	"fmt"
	"strconv"
	"strings"
)

// Function names (also the directory names under functions/ and the asset
// directory names under build/lambda/).
const (
	Scheduler = "scheduler"
	Worker    = "worker"
	Assembler = "assembler"
	API       = "api"
	DRCopy    = "drcopy"
	Drill     = "drill"
	Maintain  = "maintain"
)

// Functions lists every function in deployment order.
var Functions = []string{Scheduler, Worker, Assembler, API, DRCopy}

// Optional lists the functions the stack deploys only when configured:
// the drill function needs a scratch deployment (stack context drillUrl).
// The maintain function (retention and the weekly v1.1 export) runs only in
// repository mode (stack context backupMode "repository").
var Optional = []string{Drill, Maintain}

// Environment variable names.
// IdempotencyDir is where, under the staging prefix, the api records the
// Idempotency-Key of each start request (the only staging objects it
// writes).
const IdempotencyDir = "idempotency/"

const (
	Bucket            = "EDGEVAULT_BUCKET"             // backup bucket: job records, staging parts, archives
	StagingPrefix     = "EDGEVAULT_STAGING_PREFIX"     // default "jobs/"
	ArchivePrefix     = "EDGEVAULT_ARCHIVE_PREFIX"     // default "backups/"
	KMSKeyARN         = "EDGEVAULT_KMS_KEY_ARN"        // SSE-KMS key for objects written to Bucket ("" = bucket default)
	TaskQueueURL      = "EDGEVAULT_TASK_QUEUE_URL"     // worker tasks
	ControlQueueURL   = "EDGEVAULT_CONTROL_QUEUE_URL"  // assembler check / advance messages
	SchedulerFunction = "EDGEVAULT_SCHEDULER_FUNCTION" // name or ARN the api invokes asynchronously
	EdgeBaseURL       = "EDGEBASE_URL"                 // target deployment
	ServiceKeySecret  = "EDGEVAULT_SERVICE_KEY_SECRET" // Secrets Manager id of the EdgeBase service key
	CloudflareAccount = "CLOUDFLARE_ACCOUNT_ID"        // Edge mode when set together with the token secret
	CloudflareSecret  = "EDGEVAULT_CLOUDFLARE_SECRET"  // Secrets Manager id of the Cloudflare API token
	Instances         = "EDGEVAULT_INSTANCES"          // dynamic DB instances to back up besides those Edge mode lists: "ns:id,ns:id"
	SkipInstances     = "EDGEVAULT_SKIP_INSTANCES"     // "true": back up although a dynamic DB block's instances cannot be listed
	EdgeBaseSecrets   = "EDGEVAULT_EDGEBASE_SECRETS"   // Secrets Manager id of the JSON map of EdgeBase secrets
	R2Endpoint        = "EDGEVAULT_R2_ENDPOINT"        // R2 direct: S3 API endpoint of the storage bucket ("" = storage through the admin API)
	R2Bucket          = "EDGEVAULT_R2_BUCKET"          // R2 direct: the R2 bucket bound as EdgeBase's storage
	R2Secret          = "EDGEVAULT_R2_SECRET"          // Secrets Manager id of the R2 token's S3 credentials: {"accessKeyId":…,"secretAccessKey":…}
	Concurrency       = "EDGEVAULT_CONCURRENCY"        // in-task fan-out (default 10)
	SpoolDir          = "EDGEVAULT_SPOOL_DIR"          // where the worker spools large objects (default: the system temp dir, /tmp on Lambda)
	SpoolBytes        = "EDGEVAULT_SPOOL_BYTES"        // disk budget of the spool directory, shared by every task of the process
	DRBucket          = "EDGEVAULT_DR_BUCKET"          // cross-account destination bucket
	DRRoleARN         = "EDGEVAULT_DR_ROLE_ARN"        // role in the destination account drcopy assumes ("" = bucket policy)
	DRKMSKeyARN       = "EDGEVAULT_DR_KMS_KEY_ARN"     // SSE-KMS key in the destination account ("" = bucket default)
	DRRegion          = "EDGEVAULT_DR_REGION"          // region of the destination bucket and key ("" = the function's own)
	APIAllowSecrets   = "EDGEVAULT_API_ALLOW_SECRETS"  // "true": API callers may ask for secrets (backups including them, restores writing them back)
	NotifyURL         = "EDGEVAULT_NOTIFY_URL"         // webhook told when a job ends ("" = none)
	NotifySecret      = "EDGEVAULT_NOTIFY_SECRET"      // Secrets Manager id of the webhook's HMAC-SHA256 signing secret
	DrillURL          = "EDGEVAULT_DRILL_URL"          // scratch deployment the drill function restores into
	DrillKeySecret    = "EDGEVAULT_DRILL_KEY_SECRET"   // Secrets Manager id of the scratch deployment's service key
	SigningKeyARN     = "EDGEVAULT_SIGNING_KEY_ARN"    // KMS ECC_NIST_P256 SIGN_VERIFY key signing manifests (assembler) and drill reports (drill); "" = unsigned
	RepositoryPrefix  = "EDGEVAULT_REPOSITORY_PREFIX"  // repository mode: the repository lives in Bucket under this prefix ("" = archive mode)
	RepositoryKMSKey  = "EDGEVAULT_REPOSITORY_KMS_KEY" // KMS key (ARN) that wraps the repository key (kms:Encrypt to create, kms:Decrypt to open)
	Retention         = "EDGEVAULT_RETENTION"          // maintain: forget policy, repository.ParsePolicy syntax ("last=7,daily=14,weekly=8,monthly=12")
	PruneGrace        = "EDGEVAULT_PRUNE_GRACE"        // maintain: how long a pack stays marked before prune deletes it (Go duration, > the job timeout)
	Deployed          = "EDGEVAULT_DEPLOYED"           // "true" in every deployed function: the test-only overrides below are refused
	MetricsNamespace  = "EDGEVAULT_METRICS_NAMESPACE"  // CloudWatch EMF namespace (default "EdgeVault")
	AWSEndpoint       = "EDGEVAULT_AWS_ENDPOINT"       // local/test override for S3, SQS, Secrets Manager, STS; never set by infra
	S3PathStyle       = "EDGEVAULT_S3_PATH_STYLE"      // "true" with AWSEndpoint
	LambdaEndpoint    = "EDGEVAULT_LAMBDA_ENDPOINT"    // local/test override for the api's Lambda Invoke; never set by infra
	CloudflareAPIURL  = "EDGEVAULT_CLOUDFLARE_API_URL" // local/test override of the Cloudflare API base URL; never set by infra
)

// TestOverrides are the test-only variables: they point a function at
// emulators. A deployed function refuses them (RefuseTestOverrides), so a
// variable set by hand on a function cannot send its traffic, and the
// credentials it signs with, to another endpoint.
var TestOverrides = []string{AWSEndpoint, S3PathStyle, LambdaEndpoint, CloudflareAPIURL}

// RefuseTestOverrides reports the test-only variables that are set while
// Deployed is true. getenv is usually os.Getenv.
func RefuseTestOverrides(getenv func(string) string) error {
	// Any value but "" and false counts: a mistyped value fails closed.
	v := strings.TrimSpace(getenv(Deployed))
	if off, err := strconv.ParseBool(v); v == "" || (err == nil && !off) {
		return nil
	}
	var set []string
	for _, name := range TestOverrides {
		if getenv(name) != "" {
			set = append(set, name)
		}
	}
	if len(set) > 0 {
		return fmt.Errorf("%s is set: test-only %s must not be", Deployed, strings.Join(set, ", "))
	}
	return nil
}

// WatchdogInput is the constant input of the scheduler's watchdog rule:
// instead of starting a job, the scheduler looks at every unfinished job,
// re-queues a check for any whose checks stopped and fails any that ran
// past the job timeout.
const WatchdogInput = `{"watchdog":true}`

// ExportInput is the constant input of the maintain function's weekly
// rule: instead of forget+prune, it exports the newest snapshot as a
// v1.1 .tar.gz archive under ArchivePrefix (what the official CLI
// restores, and what drcopy and the drill take).
const ExportInput = `{"export":true}`

// ReconcileInput is the constant input of drcopy's daily rule: instead of
// copying the archive of one S3 event, drcopy lists the archives of the
// backup bucket and copies every one the DR bucket lacks (an S3 event that
// was lost, or a copy that failed for good).
const ReconcileInput = `{"reconcile":true}`

// DrillAgeInput is the constant input of the drill function's hourly
// rule: instead of drilling, it only emits LastProvenRestorableAge, so the
// age alarm has a data point every hour between the weekly drills.
const DrillAgeInput = `{"ageOnly":true}`

// Reads lists, per function, every variable it reads that the deployment
// must set. TestOverrides are test-only and not listed. A function reads
// only what it uses (and Deployed), and
// the stack derives each role's permissions from this list:
//   - the scheduler and the worker read the R2-direct settings: the
//     scheduler lists the bucket, the worker reads and writes objects;
//   - the scheduler plans (EdgeBase, Cloudflare for Edge mode) and queues
//     tasks and the first check; it never reads the EdgeBase secrets;
//   - the worker runs tasks against EdgeBase and reads/writes the EdgeBase
//     secrets; it changes the visibility of the task messages it received
//     (to pace their retries) and re-sends a task another delivery is
//     running (so waiting does not use up its attempts);
//   - the assembler talks to S3 and the queues only (checks, and a
//     restore's next phase of tasks);
//   - the api starts jobs through the scheduler and decides whether a
//     request may include secrets;
//   - drcopy reaches the DR bucket in its own region;
//   - drill reads the archives, restores the newest into the scratch
//     deployment with its own key, and writes only <archive>.drill.json;
//   - in repository mode the scheduler reads the parent snapshot, the
//     worker writes packs and the assembler the index and snapshot (all
//     under RepositoryPrefix, unwrapping the key with RepositoryKMSKey);
//     maintain forgets and prunes there and writes the weekly export
//     under ArchivePrefix.
var Reads = map[string][]string{
	Scheduler: {Bucket, StagingPrefix, ArchivePrefix, KMSKeyARN, TaskQueueURL, ControlQueueURL, EdgeBaseURL, ServiceKeySecret, CloudflareAccount, CloudflareSecret, Instances, SkipInstances, R2Endpoint, R2Bucket, R2Secret, NotifyURL, NotifySecret, RepositoryPrefix, RepositoryKMSKey, MetricsNamespace, Deployed},
	Worker:    {Bucket, StagingPrefix, ArchivePrefix, KMSKeyARN, TaskQueueURL, EdgeBaseURL, ServiceKeySecret, EdgeBaseSecrets, Concurrency, SpoolDir, SpoolBytes, R2Endpoint, R2Bucket, R2Secret, RepositoryPrefix, RepositoryKMSKey, MetricsNamespace, Deployed},
	Assembler: {Bucket, StagingPrefix, ArchivePrefix, KMSKeyARN, TaskQueueURL, ControlQueueURL, NotifyURL, NotifySecret, SigningKeyARN, RepositoryPrefix, RepositoryKMSKey, MetricsNamespace, Deployed},
	API:       {Bucket, StagingPrefix, ArchivePrefix, SchedulerFunction, APIAllowSecrets, MetricsNamespace, Deployed},
	DRCopy:    {Bucket, ArchivePrefix, DRBucket, DRRoleARN, DRKMSKeyARN, DRRegion, MetricsNamespace, Deployed},
	Drill:     {Bucket, ArchivePrefix, KMSKeyARN, DrillURL, DrillKeySecret, SigningKeyARN, MetricsNamespace, Deployed},
	Maintain:  {Bucket, ArchivePrefix, KMSKeyARN, RepositoryPrefix, RepositoryKMSKey, Retention, PruneGrace, SigningKeyARN, MetricsNamespace, Deployed},
}

// ParseInstances reads the value of Instances: dynamic DB instance names
// "ns:id" separated by commas (blanks around them ignored). The stack
// checks its context value with it, the scheduler reads it with it.
func ParseInstances(v string) ([]string, error) {
	var out []string
	for _, in := range strings.Split(v, ",") {
		in = strings.TrimSpace(in)
		if in == "" {
			continue
		}
		if ns, id, ok := strings.Cut(in, ":"); !ok || ns == "" || id == "" {
			return nil, fmt.Errorf("%q is not a dynamic DB instance name (ns:id)", in)
		}
		out = append(out, in)
	}
	return out, nil
}
