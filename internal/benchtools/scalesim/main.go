// Command scalesim extrapolates one backup to a deployment too large to
// run on a laptop — by default 100,000 DOs and 1,000,000 objects — on
// the serverless stack (scheduler, worker and assembler Lambdas, SQS, S3),
// and prints its time budget per stage, the limit that binds, what would
// bring it under the target (30 minutes) and what it costs.
//
// The model is arithmetic, not a discrete-event simulation: each stage is
// a count of requests times a latency, divided by what runs at once. The
// per-request latencies of the EdgeBase admin API and of R2's S3 API
// default to what make scale measured (bench/scale.md), plus a WAN round
// trip; AWS-side latencies, limits and prices are flags whose defaults and
// sources docs/SCALE.md lists.
//
//	scalesim [-dos 100000] [-objects 1000000] [-assembler-prefetch 32] [-worker-max-concurrency 10] ...
package main

import (
	"flag"
	"io"
	"log"
	"os"
	"time"

	"github.com/edgevault/edgevault/pkg/backup"
)

// DefaultParams are the model's defaults: the deployment of issue 13,
// the server times and sizes make scale measured (bench/scale.md of
// 2026-12-03: dump-do 6.6 ms and 840 bytes, list-dos 0.2 ms, GetObject
// 6.5 ms for 767 bytes, ListObjectsV2 44 ms a page), the stack's defaults (infra/config.go,
// infra/contract.go, pkg/serverless/config.go) and the documented AWS and
// Cloudflare limits and us-east-1 prices.
func DefaultParams() Params {
	return Params{
		DOs: 100000, Objects: 1000000, Namespaces: 1,
		ObjectBytes: 767, DODumpBytes: 840, ObjectEntryBytes: 230,
		WANRTT: 0.030, AdminDumpDO: 0.0066, AdminListDOs: 0.0002, R2List: 0.0441, R2Get: 0.0065,
		S3Get: 0.020, S3Put: 0.035, S3List: 0.040, SQSSend: 0.015, CFPage: 0.5, S3Throughput: 80 << 20,
		AssemblerPrefetch: backup.ReadAhead, DispatchBatches: 8, Concurrency: 20, RangeKeys: 1000, ResolveChunk: 100,
		RecheckDelay: 20, ComposeAbove: 1 << 30,
		WorkerBatch: 5, WorkerMaxConc: 10, WorkerMemoryGB: 1, AssemblerMemoryGB: 1, SchedulerMemoryGB: 1,
		SchedulerTimeout: 600, AssemblerTimeout: 900,
		AccountConcurrency: 1000, ESMStart: 5, ESMRampPerMin: 300, ESMMax: 1000,
		CFRequests: 1200, CFWindow: 300, MaxParts: 10000, MinPartSize: 5 << 20,
		LambdaGBs: 0.0000133334, LambdaRequest: 0.20 / 1e6, S3PutPer1k: 0.005, S3GetPer1k: 0.0004,
		S3GBMonth: 0.023, SQSPerMillion: 0.40, RetentionMonths: 1, TargetSeconds: 30 * 60,
	}
}

func parseFlags(args []string, stderr io.Writer) (Params, error) {
	p := DefaultParams()
	f := flag.NewFlagSet("scalesim", flag.ContinueOnError)
	f.SetOutput(stderr)
	f.IntVar(&p.DOs, "dos", p.DOs, "DB Durable Objects (dynamic instances)")
	f.IntVar(&p.Objects, "objects", p.Objects, "R2 objects")
	f.IntVar(&p.Namespaces, "namespaces", p.Namespaces, "DatabaseDO namespaces Edge mode lists")
	f.Float64Var(&p.ObjectBytes, "object-bytes", p.ObjectBytes, "mean object size (make scale: 256..1279 bytes)")
	f.Float64Var(&p.DODumpBytes, "do-dump-bytes", p.DODumpBytes, "mean DO dump in backup.json (make scale)")
	f.Float64Var(&p.ObjectEntryBytes, "object-entry-bytes", p.ObjectEntryBytes, "one storage.objects entry in backup.json")
	f.Float64Var(&p.WANRTT, "wan-rtt", p.WANRTT, "seconds added to every request from AWS to Cloudflare (admin API, R2)")
	f.Float64Var(&p.AdminDumpDO, "admin-dump-do", p.AdminDumpDO, "seconds the server takes for one dump-do (make scale, mean)")
	f.Float64Var(&p.AdminListDOs, "admin-list-dos", p.AdminListDOs, "seconds the server takes for one list-dos (config, hexIds)")
	f.Float64Var(&p.R2List, "r2-list", p.R2List, "seconds for one ListObjectsV2 page of 1,000 keys (make scale, mean)")
	f.Float64Var(&p.R2Get, "r2-get", p.R2Get, "seconds for one small GetObject (make scale, mean)")
	f.Float64Var(&p.S3Get, "s3-get", p.S3Get, "seconds for one small S3 GET from Lambda (staging)")
	f.Float64Var(&p.S3Put, "s3-put", p.S3Put, "seconds for one small S3 PUT from Lambda (staging)")
	f.Float64Var(&p.S3List, "s3-list", p.S3List, "seconds for one S3 LIST page of 1,000 keys")
	f.Float64Var(&p.SQSSend, "sqs-send", p.SQSSend, "seconds for one SendMessageBatch")
	f.Float64Var(&p.CFPage, "cf-page", p.CFPage, "seconds for one Cloudflare API page")
	f.Float64Var(&p.S3Throughput, "s3-throughput", p.S3Throughput, "bytes/s one Lambda streams to or from S3")
	f.IntVar(&p.AssemblerPrefetch, "assembler-prefetch", p.AssemblerPrefetch, "outcomes and parts the assembler prepares ahead of the one it writes (backup.ReadAhead)")
	f.IntVar(&p.WorkerMaxConc, "worker-max-concurrency", p.WorkerMaxConc, "the task event source's maximum concurrency (stack context workerMaxConcurrency; 0 = none)")
	f.IntVar(&p.WorkerBatch, "task-batch-size", p.WorkerBatch, "SQS batch size of the worker (stack context taskBatchSize)")
	f.IntVar(&p.Concurrency, "range-concurrency", p.Concurrency, "objects one storage range fetches at once")
	f.IntVar(&p.AccountConcurrency, "account-concurrency", p.AccountConcurrency, "Lambda concurrent executions of the account (default quota)")
	f.Float64Var(&p.RecheckDelay, "recheck-delay", p.RecheckDelay, "seconds between checks")
	f.Float64Var(&p.RetentionMonths, "retention-months", p.RetentionMonths, "months an archive is kept in S3 Standard (for the storage line)")
	target := f.Duration("target", time.Duration(p.TargetSeconds)*time.Second, "the time a backup must take at most")
	if err := f.Parse(args); err != nil {
		return p, err
	}
	p.TargetSeconds = target.Seconds()
	return p, p.validate()
}

func main() {
	p, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		log.Fatal(err)
	}
	r, err := Simulate(p)
	if err != nil {
		log.Fatal(err)
	}
	print(os.Stdout, p, r)
}
