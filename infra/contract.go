package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/lambdaenv"
)

// This file is the deployment contract of the functions in one place: key
// layout, sizing, S3 access and environment. The IAM policies, lifecycle
// rules and environment variables of the stack are all derived from it.

// Key prefixes in the backup bucket (EDGEVAULT_STAGING_PREFIX and
// EDGEVAULT_ARCHIVE_PREFIX).
const (
	stagingPrefix = "jobs/"
	archivePrefix = "backups/"
	// manifestSuffix ends the manifest written beside every archive
	// (archive.ManifestName); its creation triggers drcopy.
	manifestSuffix = ".manifest.json"
	// stagingExpireDays bounds how long a job's records and parts live.
	stagingExpireDays = 1
)

// The worker spools downloaded objects that wait for their turn in a
// storage member to its /tmp, within a budget every task of one
// environment shares; objects larger than the budget are not prefetched
// but streamed straight into the member. The ephemeral storage leaves room
// beside the budget for the runtime's own use of /tmp.
const (
	workerSpoolDir    = "/tmp"
	workerSpoolBytes  = 2 << 30
	workerEphemeralMB = 2048 + 512
)

// s3Access is what a function may do with the objects under one prefix.
type s3Access uint8

const (
	// s3Read covers GetObject, HeadObject, ranged reads and being the
	// source of UploadPartCopy.
	s3Read s3Access = 1 << iota
	// s3Write covers PutObject (also conditional creates), the multipart
	// upload calls, and aborting them (the adapter aborts on failure).
	s3Write
	s3Delete
)

func (a s3Access) actions() []string {
	var out []string
	if a&s3Read != 0 {
		out = append(out, "s3:GetObject")
	}
	if a&s3Write != 0 {
		out = append(out, "s3:PutObject", "s3:AbortMultipartUpload")
	}
	if a&s3Delete != 0 {
		out = append(out, "s3:DeleteObject")
	}
	return out
}

// What the writer of DR copies (the DR stack's writer role, or drcopy's
// own role without one) may do in the DR bucket: create copies (the bucket
// policy admits only conditional creates), read them back to verify, and
// find, resume or abort a multipart copy cut short. Never delete.
var (
	drWriteActions = []string{"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
	drListActions  = []string{"s3:ListBucket", "s3:ListBucketMultipartUploads"}
)

// fnSpec is one function's sizing and data access.
type fnSpec struct {
	id          string // construct id
	description string
	memoryMB    int
	timeout     time.Duration
	// async functions are invoked asynchronously (EventBridge, the api
	// function, S3 notifications); events that still fail after Lambda's
	// retries go to the invoke dead-letter queue.
	async bool
	// loops marks functions that feed the queue that triggers them
	// (re-checks, follow-up tasks); Lambda's recursive loop detection
	// would otherwise drop those messages after 16 rounds.
	loops            bool
	staging, archive s3Access
	// idempotency: the function creates Idempotency-Key records (and
	// only those) in the staging area.
	idempotency bool
	// ephemeralMB sizes /tmp (0 = Lambda's default 512 MB).
	ephemeralMB int
	// sendsTasks and sendsControl: the function queues tasks (the first
	// phase, the next restore phase) or checks.
	sendsTasks, sendsControl bool
	// drillReports: the function writes <archive>.drill.json (and no
	// other object) under the archive prefix.
	drillReports bool
	// reserved caps the function's concurrent invocations (0 = none).
	reserved int
}

// fnSpecs gives every function in lambdaenv.Functions its spec.
func fnSpecs(c Config) map[string]fnSpec {
	specs := map[string]fnSpec{
		lambdaenv.Scheduler: {
			id: "Scheduler", description: "edgevault scheduler: plans a backup or restore job and enqueues its tasks",
			memoryMB: 1024, timeout: 10 * time.Minute, async: true,
			// Delete: an interrupted plan is removed before planning again.
			staging: s3Read | s3Write | s3Delete, archive: s3Read,
			sendsTasks: true, sendsControl: true,
		},
		lambdaenv.Worker: {
			id: "Worker", description: "edgevault worker: runs one task (a Durable Object, D1 database, R2 page range, ...)",
			memoryMB: c.WorkerMemoryMB, timeout: c.WorkerTimeout, loops: true, ephemeralMB: workerEphemeralMB,
			// Delete: a failed wipe task releases its lease for the retry.
			// It paces retries through the visibility of the messages it
			// received (event source grant), and re-sends a task another
			// delivery is running, so waiting uses up no attempts.
			staging:    s3Read | s3Write | s3Delete,
			sendsTasks: true,
		},
		lambdaenv.Assembler: {
			id: "Assembler", description: "edgevault assembler: advances jobs and assembles finished backups into archives",
			memoryMB: 1024, timeout: 15 * time.Minute, loops: true,
			staging: s3Read | s3Write | s3Delete, archive: s3Read | s3Write,
			sendsTasks: true, sendsControl: true,
		},
		lambdaenv.API: {
			id: "Api", description: "edgevault api: starts jobs and reports their state (behind API Gateway, IAM auth)",
			memoryMB: 256, timeout: 30 * time.Second,
			staging: s3Read, archive: s3Read, idempotency: true,
		},
		lambdaenv.DRCopy: {
			id: "DrCopy", description: "edgevault drcopy: copies each finished archive to the disaster-recovery account",
			memoryMB: 1024, timeout: 15 * time.Minute, async: true,
			archive: s3Read,
		},
	}
	if c.Drill.Enabled() {
		specs[lambdaenv.Drill] = drillSpec()
	}
	if c.Repository.Enabled() {
		specs[lambdaenv.Maintain] = maintainSpec()
	}
	return specs
}

// reads reports whether fn reads the environment variable name.
func reads(fn, name string) bool { return slices.Contains(lambdaenv.Reads[fn], name) }

// functionEnv picks from values exactly the variables fn reads. A variable
// without a value is an error, so a name added to lambdaenv fails the
// synth until the stack provides it; only those named in unset (the
// repository variables in archive mode, where a function reads "") are
// left out.
func functionEnv(fn string, values map[string]*string, unset ...string) (map[string]*string, error) {
	names, ok := lambdaenv.Reads[fn]
	if !ok {
		return nil, fmt.Errorf("infra: function %q is not in lambdaenv.Reads", fn)
	}
	env := make(map[string]*string, len(names))
	var missing []string
	for _, name := range names {
		v, ok := values[name]
		if (!ok || v == nil) && slices.Contains(unset, name) {
			continue
		}
		if !ok || v == nil {
			missing = append(missing, name)
			continue
		}
		env[name] = v
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("infra: no value for %s read by %s", strings.Join(missing, ", "), fn)
	}
	return env, nil
}
