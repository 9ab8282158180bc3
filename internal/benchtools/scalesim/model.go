package main

import (
	"fmt"
	"math"
)

// Params are the model's inputs: the deployment, per-request latencies
// (measured by make scale on loopback, plus a WAN round trip), the
// stack's settings, AWS and Cloudflare limits, and prices.
type Params struct {
	// Deployment.
	DOs, Objects     int
	Namespaces       int     // DatabaseDO namespaces Edge mode scans
	ObjectBytes      float64 // mean object size
	DODumpBytes      float64 // mean DO dump in backup.json
	ObjectEntryBytes float64 // one storage.objects entry in backup.json

	// Latencies in seconds. Admin and R2 ones are the server's time
	// measured by make scale; WANRTT is added to each request that
	// leaves AWS for Cloudflare.
	WANRTT                     float64
	AdminDumpDO, AdminListDOs  float64
	R2List, R2Get              float64 // one ListObjectsV2 page of 1,000 keys; one small object
	S3Get, S3Put, S3List       float64 // staging requests from Lambda (LIST: one page of 1,000)
	SQSSend                    float64 // one SendMessageBatch
	CFPage                     float64 // one Cloudflare API page
	S3Throughput               float64 // bytes/s one Lambda streams to or from S3
	AssemblerPrefetch          int     // outcomes and parts the assembler reads at once (1: sequential)
	DispatchBatches            int     // task batches sent at once (pipeline.DefaultSendBatches)
	Concurrency                int     // objects a storage range fetches at once (2 x --concurrency)
	RangeKeys                  int     // objects per storage range
	ResolveChunk               int     // hex ids per list-dos call (Edge mode)
	RecheckDelay               float64 // seconds between checks
	ComposeAbove               float64 // storage bytes above which the assembler composes server-side
	WorkerBatch, WorkerMaxConc int     // SQS batch size and the event source's maximum concurrency
	WorkerMemoryGB             float64
	AssemblerMemoryGB          float64
	SchedulerMemoryGB          float64
	SchedulerTimeout           float64 // seconds
	AssemblerTimeout           float64 // seconds (the Lambda maximum, 900)

	// Limits.
	AccountConcurrency int     // Lambda concurrent executions in the Region
	ESMStart           int     // concurrent batches an SQS event source starts with
	ESMRampPerMin      int     // instances it adds per minute
	ESMMax             int     // most concurrent batches of one event source
	CFRequests         int     // Cloudflare API requests ...
	CFWindow           float64 // ... per this many seconds
	MaxParts           int     // S3 multipart parts
	MinPartSize        float64 // bytes, every part but the last

	// Prices (USD).
	LambdaGBs, LambdaRequest float64 // per GB-second (arm64), per request
	S3PutPer1k, S3GetPer1k   float64 // PUT/COPY/POST/LIST, GET
	S3GBMonth                float64 // S3 Standard storage
	SQSPerMillion            float64
	RetentionMonths          float64
	TargetSeconds            float64
}

// Stage is one part of the backup's time budget.
type Stage struct {
	Name    string
	Seconds float64
	Note    string
}

// Result is the simulation's answer.
type Result struct {
	Stages         []Stage
	Total          float64
	Binding        string // the limit that decides the total
	Fails          []string
	Changes        []string // what would bring the total under the target
	Tasks          int
	Ranges         int
	CFCalls        int
	WorkerConc     int
	ArchiveBytes   float64
	Parts          int
	AssemblerSecs  float64
	Cost           Cost
	WorkerRampSecs float64
}

// Cost is one backup's bill.
type Cost struct {
	LambdaGBs, LambdaRequests float64
	S3Puts, S3Gets            float64
	SQSRequests               float64
	ArchiveGBMonths           float64
	Lambda, S3, SQS, Storage  float64
	Total                     float64
}

func ceilDiv(a, b int) int {
	if b <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

// cfSeconds is how long n Cloudflare API calls take at one in flight,
// paced to limit per window: the first limit go at once, each later one
// waits for the window to make room.
func cfSeconds(n int, page float64, limit int, window float64) float64 {
	t := float64(n) * page
	if n > limit && limit > 0 {
		t = math.Max(t, float64(n-limit)*window/float64(limit))
	}
	return t
}

// rampSeconds is how long an event source needs to run work
// slot-seconds of batches when it starts at start concurrent batches,
// adds perMin a minute and stops at cap. It returns the time and when
// the cap was reached.
func rampSeconds(work float64, start, perMin, cap int) (secs, capAt float64) {
	if cap <= 0 || work <= 0 {
		return 0, 0
	}
	c0 := float64(min(start, cap))
	rate := float64(perMin) / 60
	capAt = (float64(cap) - c0) / rate
	if rate <= 0 || capAt <= 0 {
		return work / c0, 0
	}
	// Work done while ramping: the area under c0 + rate·t up to capAt.
	ramp := c0*capAt + rate*capAt*capAt/2
	if work <= ramp {
		// c0·t + rate·t²/2 = work
		return (-c0 + math.Sqrt(c0*c0+2*rate*work)) / rate, capAt
	}
	return capAt + (work-ramp)/float64(cap), capAt
}

// composeParts counts the parts Compose makes of members of the given
// sizes: members of at least minPart become one part each (copied),
// smaller neighbours are merged into parts of at least minPart.
func composeParts(members []float64, minPart float64) int {
	parts, pending := 0, 0.0
	for _, m := range members {
		switch {
		case pending == 0 && m >= minPart:
			parts++
		case m-(minPart-pending) >= minPart:
			parts += 2 // topped-up merge, then the rest copied
			pending = 0
		default:
			pending += m
			if pending >= minPart {
				parts++
				pending = 0
			}
		}
	}
	if pending > 0 {
		parts++
	}
	return parts
}

func (p Params) validate() error {
	if p.DOs < 0 || p.Objects < 0 || p.WorkerBatch < 1 || p.WorkerMaxConc < 1 || p.Concurrency < 1 ||
		p.RangeKeys < 1 || p.ResolveChunk < 1 || p.AssemblerPrefetch < 1 || p.DispatchBatches < 1 || p.Namespaces < 1 {
		return fmt.Errorf("counts, batch sizes and concurrencies must be positive")
	}
	return nil
}
