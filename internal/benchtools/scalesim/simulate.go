package main

import (
	"fmt"
	"math"
)

// partSize is pkg/blob/s3's DefaultPartSize (streamed uploads).
const partSize = 8 << 20

// stagingEntryBytes is one line of plan/tasks.ndjson, roughly.
const stagingEntryBytes = 300

// Simulate runs the model once.
func Simulate(p Params) (Result, error) {
	if err := p.validate(); err != nil {
		return Result{}, err
	}
	var r Result
	r.Ranges = ceilDiv(p.Objects, p.RangeKeys)
	r.Tasks = p.DOs + r.Ranges + 4 // + config, control D1, auth D1, a data namespace
	plan := p.plan(&r)
	work, workNote := p.workers(&r)
	check := p.checkSeconds(r.Tasks)
	detect := p.RecheckDelay + check
	asm, asmNote := p.assemble(&r)
	r.AssemblerSecs = asm
	r.Stages = []Stage{
		plan,
		{"workers: every task", work, workNote},
		{"last check sees the job complete", detect, fmt.Sprintf("≤ one recheck delay (%.0f s) + one check (%.1f s: %d LIST pages of outcomes)", p.RecheckDelay, check, ceilDiv(r.Tasks, 1000))},
		{"assembler: archive + manifest", asm, asmNote},
	}
	for _, s := range r.Stages {
		r.Total += s.Seconds
	}
	if plan.Seconds > p.SchedulerTimeout {
		r.Fails = append(r.Fails, fmt.Sprintf("planning takes %.0f s, longer than the scheduler's timeout (%.0f s)", plan.Seconds, p.SchedulerTimeout))
	}
	if asm > p.AssemblerTimeout-20 {
		r.Fails = append(r.Fails, fmt.Sprintf("assembly takes %.0f s, longer than one assembler invocation may run (%.0f s less the 20 s deadline margin): it never finishes", asm, p.AssemblerTimeout))
	}
	if r.Parts > p.MaxParts {
		r.Fails = append(r.Fails, fmt.Sprintf("the archive needs %d multipart parts, more than S3's %d", r.Parts, p.MaxParts))
	}
	r.Binding = binding(r)
	r.Cost = p.cost(r, plan.Seconds, check)
	return r, nil
}

func (p Params) admin(server float64) float64 { return server + p.WANRTT }

// plan is the scheduler's one invocation: config, DO enumeration (list-dos,
// Edge mode, list-dos hexIds), the R2 listing cut into ranges, the plan
// files and the first phase's messages.
func (p Params) plan(r *Result) Stage {
	perNS := ceilDiv(p.DOs, p.Namespaces)
	r.CFCalls = 1 + p.Namespaces*max(ceilDiv(perNS, 10000), 1)
	cf := cfSeconds(r.CFCalls, p.CFPage, p.CFRequests, p.CFWindow)
	resolve := float64(ceilDiv(p.DOs, p.ResolveChunk)) * p.admin(p.AdminListDOs)
	list := float64(ceilDiv(p.Objects, 1000)) * (p.R2List + p.WANRTT)
	files := float64(r.Ranges)*p.S3Put + float64(r.Tasks*stagingEntryBytes)/p.S3Throughput
	send := float64(ceilDiv(ceilDiv(r.Tasks, 10), p.DispatchBatches)) * p.SQSSend
	secs := 2*p.admin(p.AdminListDOs) + cf + resolve + list + files + send
	return Stage{"scheduler: plan + queue", secs, fmt.Sprintf(
		"Cloudflare API %d calls %.1f s (limit %d/%.0f s); list-dos hexIds %d calls %.0f s; R2 listing %d pages %.0f s; %d range files %.0f s; %d SendMessageBatch %.0f s",
		r.CFCalls, cf, p.CFRequests, p.CFWindow, ceilDiv(p.DOs, p.ResolveChunk), resolve, ceilDiv(p.Objects, 1000), list,
		r.Ranges, files, ceilDiv(r.Tasks, 10), send)}
}

// taskSeconds are one DO task's and one storage range task's times in a
// worker: the outcome/failure/job reads, the work, the part and outcome
// writes.
func (p Params) taskSeconds() (do, rng float64) {
	do = 3*p.S3Get + p.admin(p.AdminDumpDO) + p.DODumpBytes/p.S3Throughput + 2*p.S3Put
	keys := min(p.RangeKeys, max(p.Objects, 1))
	bytes := float64(keys) * p.ObjectBytes
	rng = 4*p.S3Get + p.R2List + p.WANRTT + float64(ceilDiv(keys, p.Concurrency))*(p.R2Get+p.WANRTT) + bytes/p.S3Throughput + 3*p.S3Put
	return do, rng
}

// workers: the task queue drained by the worker's event source, which
// ramps up from ESMStart concurrent batches by ESMRampPerMin a minute to
// its cap; a batch's records run at once, so an instance finishes
// WorkerBatch tasks per task time.
func (p Params) workers(r *Result) (float64, string) {
	do, rng := p.taskSeconds()
	work := (float64(p.DOs+4)*do + float64(r.Ranges)*rng) / float64(p.WorkerBatch)
	limit := p.ESMMax
	reason := fmt.Sprintf("the event source's maximum (%d)", p.ESMMax)
	if p.WorkerMaxConc > 0 && p.WorkerMaxConc < limit {
		limit, reason = p.WorkerMaxConc, fmt.Sprintf("the stack's workerMaxConcurrency (%d)", p.WorkerMaxConc)
	}
	if free := p.AccountConcurrency - 3; free < limit {
		limit, reason = free, fmt.Sprintf("the account's concurrency (%d, less scheduler and assemblers)", p.AccountConcurrency)
	}
	r.WorkerConc = limit
	secs, capAt := rampSeconds(work, p.ESMStart, p.ESMRampPerMin, limit)
	r.WorkerRampSecs = math.Min(capAt, secs)
	return secs, fmt.Sprintf("%d tasks (DO %.0f ms, storage range %.2f s each); %.0f instance-seconds at up to %d concurrent (%s), reached after %.0f s of ramp (+%d/min)",
		r.Tasks, do*1000, rng, work, limit, reason, r.WorkerRampSecs, p.ESMRampPerMin)
}

// checkSeconds is one check: the job record, the failures listing and
// one LIST page per 1,000 outcomes.
func (p Params) checkSeconds(tasks int) float64 {
	return 2*p.S3Get + float64(ceilDiv(tasks, 1000))*p.S3List
}

// assemble is the assembler's finishing invocation (backup.Assembler):
// pass 1 over the storage outcomes and indexes, backup.json streamed from
// every task's outcome and part in plan order, then the archive streamed
// or composed, and the manifest.
func (p Params) assemble(r *Result) (float64, string) {
	pf := float64(p.AssemblerPrefetch)
	pass1 := float64(2*(r.Ranges+1)) * p.S3Get / pf
	docBytes := float64(p.DOs)*p.DODumpBytes + float64(p.Objects)*p.ObjectEntryBytes
	reads := float64(2*r.Tasks) * p.S3Get / pf
	doc := reads + docBytes/p.S3Throughput
	storage := float64(p.Objects) * p.ObjectBytes * 1.0 // members are gzip of incompressible bytes: about their size
	r.ArchiveBytes = storage + docBytes
	var archive float64
	how := ""
	if storage > p.ComposeAbove {
		members := make([]float64, r.Ranges)
		for i := range members {
			members[i] = storage / float64(max(r.Ranges, 1))
		}
		r.Parts = composeParts(members, p.MinPartSize)
		copied := 0.0
		if storage/float64(max(r.Ranges, 1)) < p.MinPartSize {
			copied = storage // small members are downloaded and uploaded again
		}
		archive = float64(ceilDiv(r.Ranges, 16))*p.S3Get + 2*copied/p.S3Throughput + float64(r.Parts)*p.S3Put/4
		how = fmt.Sprintf("composed server-side (%d parts)", r.Parts)
	} else {
		r.Parts = max(int(math.Ceil(r.ArchiveBytes/partSize)), 1)
		archive = float64(r.Ranges+2)*p.S3Get + r.ArchiveBytes/p.S3Throughput
		how = fmt.Sprintf("streamed (%d parts of 8 MiB)", r.Parts)
	}
	secs := pass1 + doc + archive + 6*p.S3Put
	return secs, fmt.Sprintf("%.0f S3 GETs for outcomes and parts, %d at a time: %.0f s; backup.json %.0f MiB; archive %.0f MiB %s: %.0f s",
		float64(2*(r.Tasks+r.Ranges+1)), p.AssemblerPrefetch, pass1+reads, docBytes/(1<<20), r.ArchiveBytes/(1<<20), how, archive)
}

// binding names the stage that decides the total and why.
func binding(r Result) string {
	if len(r.Fails) > 0 {
		return r.Fails[0]
	}
	best := r.Stages[0]
	for _, s := range r.Stages[1:] {
		if s.Seconds > best.Seconds {
			best = s
		}
	}
	return fmt.Sprintf("%s (%.0f%% of the total): %s", best.Name, 100*best.Seconds/r.Total, best.Note)
}

// cost is one backup's Lambda, S3 and SQS bill and a month of storing
// its archive.
func (p Params) cost(r Result, plan, check float64) Cost {
	var c Cost
	checks := math.Ceil(r.Total / p.RecheckDelay)
	workerInv := float64(ceilDiv(r.Tasks, p.WorkerBatch))
	doT, rngT := p.taskSeconds()
	workerGBs := (float64(p.DOs+4)*doT + float64(r.Ranges)*rngT) / float64(p.WorkerBatch) * p.WorkerMemoryGB
	c.LambdaGBs = workerGBs + plan*p.SchedulerMemoryGB + (checks*check+r.AssemblerSecs)*p.AssemblerMemoryGB
	c.LambdaRequests = workerInv + 1 + checks
	stagingObjects := 2*r.Tasks + r.Ranges + 10
	docParts := math.Ceil((r.ArchiveBytes - float64(p.Objects)*p.ObjectBytes) / partSize)
	c.S3Puts = float64(2*(p.DOs+4)+3*r.Ranges) + float64(r.Ranges) + 20 + // task parts, outcomes, range files, job record
		checks*float64(ceilDiv(r.Tasks, 1000)) + docParts + float64(r.Parts) + 10 + // checks' LISTs, backup.json, archive parts
		float64(ceilDiv(stagingObjects, 1000)) // listing the staging area to delete it
	c.S3Gets = float64(3*(p.DOs+4)+4*r.Ranges) + 2*float64(r.Tasks+r.Ranges+1) + float64(r.Ranges+2) + checks*2
	c.SQSRequests = float64(ceilDiv(r.Tasks, 10)) + 2*workerInv + 3*checks
	c.ArchiveGBMonths = r.ArchiveBytes / 1e9 * p.RetentionMonths
	c.Lambda = c.LambdaGBs*p.LambdaGBs + c.LambdaRequests*p.LambdaRequest
	c.S3 = c.S3Puts/1000*p.S3PutPer1k + c.S3Gets/1000*p.S3GetPer1k
	c.SQS = c.SQSRequests / 1e6 * p.SQSPerMillion
	c.Storage = c.ArchiveGBMonths * p.S3GBMonth
	c.Total = c.Lambda + c.S3 + c.SQS + c.Storage
	return c
}
