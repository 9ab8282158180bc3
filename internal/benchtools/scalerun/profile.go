package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/edgevault/edgevault/internal/cli"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// profileCreate runs the same backup once more inside this process
// (internal/cli.Run, as cmd/edgevault does) and writes, into dir, a CPU
// profile and the heap profile taken when the in-use heap was highest
// (looked at every interval). The emulator shares the process, so read
// the heap profile by edgevault's frames (internal/cli, pkg/...).
func profileCreate(ctx context.Context, e *env, c config, work, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cpu, err := os.Create(filepath.Join(dir, "create.cpu.pprof"))
	if err != nil {
		return err
	}
	defer cpu.Close()
	args := []string{"--progress", "none", "backup", "create", "--url", e.admin.url,
		"--service-key", e.emu.ServiceKey(), "--output", filepath.Join(work, "out-profile"), "--include-storage",
		"--concurrency", fmt.Sprint(c.concurrency), "--state-dir", e.emu.StateDir(), "--r2-endpoint", e.s3.url, "--r2-bucket", e.emu.S3Bucket()}
	vals := map[string]string{"R2_ACCESS_KEY_ID": edgebasetest.S3AccessKeyID, "R2_SECRET_ACCESS_KEY": edgebasetest.S3SecretAccessKey}
	var stdout, stderr bytes.Buffer
	env := cli.Env{Stdout: &stdout, Stderr: &stderr, WorkDir: work, Getenv: func(k string) string { return vals[k] }}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	var best bytes.Buffer
	var bestInuse uint64
	go func() {
		defer close(done)
		t := time.NewTicker(c.sample)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > bestInuse {
				bestInuse = ms.HeapInuse
				best.Reset()
				_ = pprof.Lookup("heap").WriteTo(&best, 0)
			}
		}
	}()
	if err := pprof.StartCPUProfile(cpu); err != nil {
		stop()
		return err
	}
	log.Printf("profiling edgevault backup create in-process into %s", dir)
	code := cli.Run(ctx, args, env)
	pprof.StopCPUProfile()
	stop()
	<-done
	if code != 0 {
		return fmt.Errorf("in-process create exited %d: %s", code, stderr.String())
	}
	log.Printf("profiled: highest in-use heap of the process %.1f MiB", float64(bestInuse)/(1<<20))
	return os.WriteFile(filepath.Join(dir, "create.heap.pprof"), best.Bytes(), 0o644)
}
