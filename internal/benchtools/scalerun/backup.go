package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgevault/edgevault/internal/benchtools/r2floor"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// floorRun is the raw floor of storage against the same S3 server.
type floorRun struct {
	Wall     time.Duration
	Objects  int64
	Bytes    int64
	InFlight int
	Ops      []opStats
}

// measureFloor lists the bucket and GETs every object with 2 x
// concurrency requests in flight through pkg/r2, discarding the bodies.
func measureFloor(ctx context.Context, e *env, c config, rep *report) error {
	s, err := r2.New(r2.Config{Endpoint: e.s3.url, Bucket: e.emu.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
		SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey)})
	if err != nil {
		return err
	}
	inFlight := 2 * c.concurrency
	log.Printf("floor: list + GET %d objects, %d in flight", c.shape.Objects, inFlight)
	e.s3C.reset()
	start := time.Now()
	n, total, err := r2floor.Read(ctx, s, inFlight)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	rep.floor = floorRun{Wall: time.Since(start), Objects: n, Bytes: total, InFlight: inFlight, Ops: e.s3C.snapshot()}
	if rep.floor.Objects != int64(c.shape.Objects) {
		return fmt.Errorf("floor: %d objects read, want %d", rep.floor.Objects, c.shape.Objects)
	}
	return nil
}

// createResult is the part of `edgevault --json backup create` read here.
type createResult struct {
	Status  string `json:"status"`
	File    string `json:"file"`
	DOs     int    `json:"dos"`
	Objects int64  `json:"objects"`
	Bytes   int64  `json:"bytes"`
	Job     string `json:"job"`
}

// verifyResult is the part of `edgevault --json backup verify` read here.
type verifyResult struct {
	Status  string `json:"status"`
	Summary struct {
		Bytes           int64 `json:"bytes"`
		DOs             int   `json:"dos"`
		Objects         int64 `json:"objects"`
		Members         int64 `json:"members"`
		VerifiedObjects int64 `json:"verifiedObjects"`
		Manifest        string
	} `json:"summary"`
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureBackup runs create (sampled, checks timed) and verify.
func measureBackup(ctx context.Context, e *env, c config, work string, rep *report) error {
	out := filepath.Join(work, "out")
	e.adminC.reset()
	e.s3C.reset()
	e.emu.ResetRequests()
	args := []string{"--json", "--progress", "json", "backup", "create", "--url", e.admin.url,
		"--service-key", e.emu.ServiceKey(), "--output", out, "--include-storage", "--concurrency", fmt.Sprint(c.concurrency),
		"--state-dir", e.emu.StateDir(), "--r2-endpoint", e.s3.url, "--r2-bucket", e.emu.S3Bucket()}
	env := []string{"R2_ACCESS_KEY_ID=" + edgebasetest.S3AccessKeyID, "R2_SECRET_ACCESS_KEY=" + edgebasetest.S3SecretAccessKey,
		"EDGEBASE_URL=", "EDGEBASE_SERVICE_KEY=", "CLOUDFLARE_ACCOUNT_ID=", "CLOUDFLARE_API_TOKEN=", "GOMEMLIMIT=" + c.memLimit}
	log.Printf("edgevault backup create --include-storage (R2 direct), --concurrency %d", c.concurrency)
	cpu0 := selfCPU()
	var checkErr error
	rep.create = runSampled(ctx, c.edgevault, args, env, c.sample, func(dctx context.Context, start time.Time) {
		rep.checks, checkErr = checkTimer(dctx, out, start, c.checkEvery)
	})
	rep.serverCPU = selfCPU() - cpu0
	rep.adminOps, rep.s3Ops = e.adminC.snapshot(), e.s3C.snapshot()
	if rep.create.Err != nil {
		return rep.create.Err
	}
	if checkErr != nil {
		return checkErr
	}
	if err := json.Unmarshal(rep.create.Stdout, &rep.created); err != nil {
		return fmt.Errorf("create: %w: %s", err, rep.create.Stdout)
	}
	log.Printf("backup written: %s (%d DOs, %d objects) in %s", rep.created.File, rep.created.DOs, rep.created.Objects, rep.create.Wall.Round(time.Millisecond))
	rep.verify = runSampled(ctx, c.edgevault, []string{"--json", "backup", "verify", rep.created.File}, nil, c.sample, nil)
	if rep.verify.Err != nil {
		return rep.verify.Err
	}
	if err := json.Unmarshal(rep.verify.Stdout, &rep.verified); err != nil {
		return fmt.Errorf("verify: %w: %s", err, rep.verify.Stdout)
	}
	// The DOs: every instance plus one per single-instance block, which
	// list-dos's config scan names (shared and ledger).
	rep.wantDOs = c.shape.DOs
	cfg := e.emu.Config()
	for _, d := range cfg.Databases {
		if !d.Dynamic() {
			rep.wantDOs++
		}
	}
	return nil
}
