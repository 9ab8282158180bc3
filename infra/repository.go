package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/repository"
	repokms "github.com/edgevault/edgevault/pkg/repository/kms"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// This file is repository mode of the stack (docs/REPOSITORY.md): the KMS
// key wrapping the repository key, the repository's prefix of the backup
// bucket and each function's access to it, and the maintain function
// with its daily forget+prune and weekly export rules. In archive mode
// none of it exists and the functions get no repository variables.

const (
	backupModeRepository = "repository"
	backupModeArchive    = "archive"

	defaultRepositoryPrefix = "repository/"
	defaultRetention        = "last=7,daily=14,weekly=8,monthly=12"
	// maintainSchedule forgets and prunes daily at 04:00 UTC, after the
	// default 03:00 backup; exportSchedule exports the newest snapshot on
	// Sundays at 04:30 UTC, before the default 05:00 drill takes the
	// newest archive.
	maintainSchedule = "cron(0 4 * * ? *)"
	exportSchedule   = "cron(30 4 ? * SUN *)"
)

// repositoryEnvs are the variables set only in repository mode.
var repositoryEnvs = []string{lambdaenv.RepositoryPrefix, lambdaenv.RepositoryKMSKey, lambdaenv.Retention, lambdaenv.PruneGrace}

// RepositoryConfig is the backup mode and, in repository mode, where the
// repository lives and how long snapshots are kept.
type RepositoryConfig struct {
	// Mode is "repository" (snapshots, the default for new stacks) or
	// "archive" (one v1.1 archive per backup).
	Mode string
	// Prefix is the repository's key prefix in the backup bucket.
	Prefix string
	// KMSKeyARN brings a symmetric KMS key of one's own to wrap the
	// repository key; "" = the stack creates one.
	KMSKeyARN string
	// Retention is the maintain function's forget policy
	// (repository.ParsePolicy).
	Retention string
	// PruneGrace is how long prune leaves a pack marked before deleting
	// it; it must exceed the functions' job timeout.
	PruneGrace time.Duration
}

// Enabled reports whether the stack runs in repository mode.
func (r RepositoryConfig) Enabled() bool { return r.Mode == backupModeRepository }

func defaultRepositoryConfig() RepositoryConfig {
	return RepositoryConfig{Mode: backupModeRepository, Prefix: defaultRepositoryPrefix,
		Retention: defaultRetention, PruneGrace: serverless.DefaultPruneGrace}
}

var repositoryPrefixRE = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$`)

func (r RepositoryConfig) validate() []error {
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("%w: %s=%v: %s", ErrConfig, key, v, want))
	}
	switch r.Mode {
	case backupModeArchive:
		return nil
	case backupModeRepository:
	default:
		bad(ctxBackupMode, r.Mode, backupModeRepository+" or "+backupModeArchive)
		return errs
	}
	switch {
	case !repositoryPrefixRE.MatchString(r.Prefix):
		bad(ctxRepositoryPrefix, r.Prefix, "a key prefix ending in '/' (letters, digits, . _ -)")
	case strings.HasPrefix(r.Prefix, stagingPrefix) || strings.HasPrefix(stagingPrefix, r.Prefix) ||
		strings.HasPrefix(r.Prefix, archivePrefix) || strings.HasPrefix(archivePrefix, r.Prefix):
		// The staging prefix expires after a day, and archives have their
		// own retention: neither may reach the repository.
		bad(ctxRepositoryPrefix, r.Prefix, "a prefix apart from "+stagingPrefix+" and "+archivePrefix)
	}
	if r.KMSKeyARN != "" && !kmsKeyARNRE.MatchString(r.KMSKeyARN) {
		bad(ctxRepositoryKMSKeyARN, r.KMSKeyARN, "the ARN of a symmetric KMS key (arn:aws:kms:region:account:key/id)")
	}
	if p, err := repository.ParsePolicy(r.Retention); err != nil {
		bad(ctxRetention, r.Retention, err.Error())
	} else if p.Empty() {
		bad(ctxRetention, `""`, "a policy such as "+defaultRetention+" (the maintain function forgets by it)")
	}
	if r.PruneGrace <= serverless.DefaultJobTimeout {
		bad(ctxPruneGrace, r.PruneGrace, fmt.Sprintf("longer than the job timeout (%s): a running backup's packs must outlive it", serverless.DefaultJobTimeout))
	}
	return errs
}

// readRepositoryContext reads the repository mode's context keys.
func readRepositoryContext(r *contextReader, c *RepositoryConfig) {
	r.str(ctxBackupMode, &c.Mode)
	c.Mode = strings.ToLower(c.Mode)
	r.str(ctxRepositoryPrefix, &c.Prefix)
	r.str(ctxRepositoryKMSKeyARN, &c.KMSKeyARN)
	r.str(ctxRetention, &c.Retention)
	grace := c.PruneGrace.String()
	r.str(ctxPruneGrace, &grace)
	d, err := time.ParseDuration(grace)
	if err != nil {
		r.fail(ctxPruneGrace, grace, "a Go duration such as 48h")
		return
	}
	c.PruneGrace = d
}

// maintainSpec is the maintain function's deployment spec: it reads the
// archives (names, manifests, the chain) and writes the weekly export and
// its manifest there; its repository access is repositoryAccess's. One
// run at a time: a retried run or the export never overlaps a prune
// (Lambda holds a throttled asynchronous event and retries it).
func maintainSpec() fnSpec {
	return fnSpec{
		id: "Maintain", description: "edgevault maintain: forgets and prunes repository snapshots by the retention policy, and exports the newest as an archive weekly",
		memoryMB: 2048, timeout: 15 * time.Minute, async: true,
		archive: s3Read | s3Write, reserved: 1,
	}
}

// repositoryAccess is what fn may do in the repository (docs/REPOSITORY.md
// layout): everyone reads it; the scheduler creates it (config, keys/),
// the worker stores packs (data/), the assembler the index and the
// snapshot (index/, snapshots/); maintain forgets and prunes (writes and
// deletes anywhere in it). writes are key patterns under the prefix.
func repositoryAccess(fn string) (writes []string, deletes bool) {
	switch fn {
	case lambdaenv.Scheduler:
		return []string{"config", "keys/*"}, false
	case lambdaenv.Worker:
		return []string{"data/*"}, false
	case lambdaenv.Assembler:
		return []string{"index/*", "snapshots/*"}, false
	case lambdaenv.Maintain:
		return []string{"*"}, true
	}
	return nil, false
}

// newRepositoryKey creates, in repository mode without a key of one's
// own, the key that wraps the repository key: rotated yearly, retained
// when the stack is deleted (the repository cannot be opened without it
// or a break-glass passphrase). Its policy delegates use to IAM: the
// functions' roles get Encrypt/Decrypt with the repository's
// encryption context only.
func (s *BackupStack) newRepositoryKey() {
	r := s.Config.Repository
	if !r.Enabled() {
		return
	}
	if r.KMSKeyARN != "" {
		s.RepositoryKeyARN = jsii.String(r.KMSKeyARN)
		return
	}
	s.RepositoryKey = newStackKey(s.Stack, "RepositoryKey",
		"edgevault: wraps the repository key (envelope encryption, encryption context "+repokms.ContextKey+")", keyOptions{})
	s.RepositoryKeyARN = s.RepositoryKey.KeyArn()
}

// repositoryEnvValues adds the repository variables in repository mode;
// in archive mode they stay unset and functionEnv does not ask for them.
func (s *BackupStack) repositoryEnvValues(values map[string]*string) []string {
	r := s.Config.Repository
	if !r.Enabled() {
		return repositoryEnvs
	}
	values[lambdaenv.RepositoryPrefix] = jsii.String(r.Prefix)
	values[lambdaenv.RepositoryKMSKey] = s.RepositoryKeyARN
	values[lambdaenv.Retention] = jsii.String(r.Retention)
	values[lambdaenv.PruneGrace] = jsii.String(r.PruneGrace.String())
	return nil
}

// repositoryKeyCondition admits only requests that carry the repository's
// encryption context (its value, the repository id, is random, so only
// the key is named): the key cannot be used for anything else through
// these roles, and every Encrypt and Decrypt the wrapper makes passes.
func repositoryKeyCondition() map[string]any {
	return map[string]any{
		"ForAllValues:StringEquals": map[string]any{"kms:EncryptionContextKeys": []any{repokms.ContextKey}},
		"Null":                      map[string]any{"kms:EncryptionContext:" + repokms.ContextKey: "false"},
	}
}

// grantRepository gives fn, in repository mode, its access to the
// repository's objects and key, and reports whether it writes objects.
func (s *BackupStack) grantRepository(fn string, add func(awsiam.PolicyStatement)) bool {
	r := s.Config.Repository
	if !r.Enabled() || !reads(fn, lambdaenv.RepositoryPrefix) {
		return false
	}
	obj := func(pattern string) *string { return s.Bucket.ArnForObjects(jsii.String(r.Prefix + pattern)) }
	add(statement("RepositoryRead", s3Read.actions(), []*string{obj("*")}, nil))
	writes, deletes := repositoryAccess(fn)
	var res []*string
	for _, w := range writes {
		res = append(res, obj(w))
	}
	if len(res) > 0 {
		add(statement("RepositoryWrite", s3Write.actions(), res, nil))
	}
	if deletes {
		add(statement("RepositoryDelete", s3Delete.actions(), []*string{obj("*")}, nil))
	}
	if reads(fn, lambdaenv.RepositoryKMSKey) {
		// The scheduler creates the repository on first use: wrapping the
		// key needs Encrypt (and Decrypt, which checks the wrap).
		actions := []string{"kms:Decrypt"}
		if fn == lambdaenv.Scheduler {
			actions = []string{"kms:Encrypt", "kms:Decrypt"}
		}
		add(statement("RepositoryKey", actions, []*string{s.RepositoryKeyARN}, repositoryKeyCondition()))
	}
	return len(res) > 0
}

// repositoryFindings are the cdk-nag findings of fn's repository grants.
func (s *BackupStack) repositoryFindings(fn string) []any {
	r := s.Config.Repository
	if !r.Enabled() || !reads(fn, lambdaenv.RepositoryPrefix) {
		return nil
	}
	prefix := strings.ReplaceAll(regexp.QuoteMeta(r.Prefix), "/", `\/`)
	return []any{regexFinding(`/^Resource::<Backups[0-9A-F]{8}\.Arn>\/` + prefix + `([a-z]+\/)?\*$/g`)}
}

// newMaintainTriggers schedules the maintain function: daily forget and
// prune, weekly export. Failures are retried by Lambda, then land in the
// invoke dead-letter queue (InvokeDLQAlarm); MaintainErrorsAlarm reports
// each failed run.
func (s *BackupStack) newMaintainTriggers() error {
	if !s.Config.Repository.Enabled() {
		return nil
	}
	fn := s.Functions[lambdaenv.Maintain]
	// The next day's run replaces a lost one.
	s.MaintainRule = s.invokeRule("MaintainSchedule", "edgevault: the maintain function forgets repository snapshots by the retention policy and prunes",
		awsevents.Schedule_Expression(jsii.String(maintainSchedule)), fn, awsevents.RuleTargetInput_FromObject(map[string]any{}), 2, awscdk.Duration_Hours(jsii.Number(6)))
	export, err := constantInput(lambdaenv.ExportInput)
	if err != nil {
		return err
	}
	s.ExportRule = s.invokeRule("ExportSchedule", "edgevault: the maintain function exports the newest snapshot as a v1.1 archive",
		awsevents.Schedule_Expression(jsii.String(exportSchedule)), fn, export, 2, awscdk.Duration_Hours(jsii.Number(6)))
	out := func(id, desc string, v *string) {
		awscdk.NewCfnOutput(s.Stack, jsii.String(id), &awscdk.CfnOutputProps{Value: v, Description: jsii.String(desc)})
	}
	out("RepositoryKeyArn", "KMS key wrapping the repository key (edgevault --repo s3://<bucket>/"+s.Config.Repository.Prefix+" --kms-key-id <this>)", s.RepositoryKeyARN)
	return nil
}

// checkMaintainAsset is checkAssets for the maintain function, in
// repository mode.
func checkMaintainAsset(c Config) error {
	if !c.Repository.Enabled() {
		return nil
	}
	p := filepath.Join(c.AssetDir, lambdaenv.Maintain, "bootstrap")
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is missing (context %s=%s): run `make lambdas`, or pass -c %s=DIR with DIR/<function>/bootstrap", ErrConfig, p, ctxBackupMode, backupModeRepository, ctxAssetDir)
	}
	return nil
}

// maintainAlarms: a maintain run failed (forget, prune or export).
func (s *BackupStack) maintainAlarms(add func(alarmSpec)) {
	if !s.Config.Repository.Enabled() {
		return
	}
	add(anyAbove("MaintainErrorsAlarm", "edgevault: a maintain run (forget+prune or the weekly export) failed; its log says why",
		s.Functions[lambdaenv.Maintain].MetricErrors(sum(fiveMinutes))))
}
