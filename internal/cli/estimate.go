package cli

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// Assumptions of an estimate, stated in its output: list prices of
// us-east-1 (arm64 Lambda, S3 Standard, SQS standard) and the throughput
// range a transfer is expected within.
const (
	priceLambdaGBSecond = 0.0000133334
	priceLambdaRequest  = 0.20 / 1e6
	priceS3Put          = 0.005 / 1000
	priceS3Get          = 0.0004 / 1000
	priceS3GBMonth      = 0.023
	priceSQSRequest     = 0.40 / 1e6
	lowBytesPerSecond   = 10 << 20
	highBytesPerSecond  = 100 << 20
	workerMemoryGB      = 1.0
	taskBatch           = 5
)

// backupEstimate is what --estimate prints.
type backupEstimate struct {
	DOs            int     `json:"dos"`
	DataNamespaces int     `json:"dataNamespaces"`
	Objects        int64   `json:"objects"`
	Bytes          int64   `json:"storageBytes"`
	StorageRanges  int     `json:"storageRanges"`
	Tasks          int     `json:"tasks"`
	Requests       int64   `json:"requests"`
	LatencyMS      float64 `json:"measuredLatencyMs"`
	SecondsMin     float64 `json:"secondsMin"`
	SecondsMax     float64 `json:"secondsMax"`
	// Serverless cost of one backup and of a month of daily backups kept
	// RetentionDays, in USD.
	CostPerBackup  float64  `json:"costPerBackupUsd"`
	CostPerMonth   float64  `json:"costPerMonthUsd"`
	RetentionDays  int      `json:"retentionDays"`
	Assumptions    []string `json:"assumptions"`
	InstanceSource string   `json:"instanceSources"`
}

// estimateBackup lists what a backup would read (DOs, namespaces, objects
// and bytes) without downloading any of it, times the listing requests,
// and turns that into a time range and a serverless cost.
func (a *app) estimateBackup(ctx context.Context, d *deployment, o createOpts) error {
	t0 := time.Now()
	cfg, _, err := d.client.Config(ctx)
	if err != nil {
		return failure("backup_estimate_failed", err)
	}
	latency := time.Since(t0)
	dos, _, err := d.enum.DOs(ctx, cfg)
	if err != nil {
		return explain(failure("backup_estimate_failed", err), err)
	}
	e := backupEstimate{DOs: len(dos), RetentionDays: 90, InstanceSource: d.enum.Sources()}
	for _, b := range cfg.Databases {
		if b.DataNamespace() {
			e.DataNamespaces++
		}
	}
	if o.includeStorage {
		var rangeObjs, rangeBytes int64
		if _, err := d.client.ListStorage(ctx, func(obj edgebase.Object) error {
			e.Objects++
			e.Bytes += obj.Size
			rangeObjs++
			rangeBytes += obj.Size
			if rangeObjs >= int64(o.rangeKeys) || rangeBytes >= o.rangeBytes {
				e.StorageRanges++
				rangeObjs, rangeBytes = 0, 0
			}
			return nil
		}); err != nil {
			return failure("backup_estimate_failed", err)
		}
		if rangeObjs > 0 {
			e.StorageRanges++
		}
	}
	// Control D1, auth D1, config (+ secrets), each DO, each namespace,
	// each storage range.
	e.Tasks = 3 + e.DOs + e.DataNamespaces + e.StorageRanges
	e.Requests = int64(2 + e.DOs + e.DataNamespaces + 3)
	if o.includeStorage {
		e.Requests += 1 + e.Objects
	}
	e.LatencyMS = float64(latency.Microseconds()) / 1000
	conc := float64(max(o.concurrency, 1))
	reqSeconds := float64(e.Requests) * latency.Seconds() / conc
	e.SecondsMin = reqSeconds + float64(e.Bytes)/highBytesPerSecond
	e.SecondsMax = 3*reqSeconds + float64(e.Bytes)/lowBytesPerSecond

	// Serverless: worker GB-seconds over the slow end, one invocation per
	// batch, a PUT per part (8 MiB) twice (staging, archive), GETs to
	// assemble, about five SQS requests per task.
	gb := float64(e.Bytes) / (1 << 30)
	parts := math.Ceil(float64(e.Bytes)/(8<<20)) + float64(e.Tasks)
	lambda := e.SecondsMax*workerMemoryGB*priceLambdaGBSecond + math.Ceil(float64(e.Tasks)/taskBatch+10)*priceLambdaRequest
	s3 := 2*parts*priceS3Put + parts*priceS3Get
	sqs := float64(5*e.Tasks) * priceSQSRequest
	e.CostPerBackup = lambda + s3 + sqs
	e.CostPerMonth = 30*e.CostPerBackup + gb*float64(e.RetentionDays)*priceS3GBMonth
	e.Assumptions = []string{
		fmt.Sprintf("time: %d requests at the measured %.0f ms each, %d in parallel, plus the bytes at %s/s to %s/s",
			e.Requests, e.LatencyMS, int(conc), archive.HumanBytes(highBytesPerSecond), archive.HumanBytes(lowBytesPerSecond)),
		"cost: us-east-1 list prices (Lambda arm64 1 GB, S3 Standard, SQS); a month is 30 daily backups kept 90 days (the stack's defaults)",
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "estimate": e})
		return nil
	}
	a.say("Estimate for %s (nothing was downloaded)\n", d.client.BaseURL())
	a.say("  %d DOs, %d data namespaces", e.DOs, e.DataNamespaces)
	if o.includeStorage {
		a.say(", %d objects (%s) in %d ranges", e.Objects, archive.HumanBytes(e.Bytes), e.StorageRanges)
	}
	a.say("\n  %d tasks, about %d requests (measured latency %.0f ms)\n", e.Tasks, e.Requests, e.LatencyMS)
	a.say("  time: %s to %s\n", fmtDuration(time.Duration(e.SecondsMin*float64(time.Second))), fmtDuration(time.Duration(e.SecondsMax*float64(time.Second))))
	a.say("  serverless cost: $%.4f per backup, $%.2f per month (daily, kept %d days)\n", e.CostPerBackup, e.CostPerMonth, e.RetentionDays)
	for _, s := range e.Assumptions {
		a.say("  assumes %s\n", s)
	}
	return nil
}
