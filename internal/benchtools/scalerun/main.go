// Command scalerun is make scale: one embedded backup of a large
// deployment by the real edgevault binary, measured. It starts the
// EdgeBase emulator in its own process with -dos dynamic DB instances
// (workspace:ws-NNNNNN, one row each) and -objects small R2 objects, and
// serves the emulator's admin API and its bucket's S3 view (gofakes3) on
// 127.0.0.1 through counters that time every request by endpoint and by
// S3 operation. It then
//
//  1. measures the raw floor of storage: list the bucket and GET every
//     object through pkg/r2 with 2 x -concurrency requests in flight,
//     bodies discarded, in this process;
//  2. runs `edgevault backup create --include-storage` with R2 direct
//     (--r2-endpoint/--r2-bucket, keys in R2_ACCESS_KEY_ID and
//     R2_SECRET_ACCESS_KEY) and --state-dir for the instances, sampling
//     the process's VmRSS every -sample, stamping its --progress json
//     events, and timing what a controller check reads (job record,
//     failures, the open phase's outcomes) against its staging
//     directory every -check-every;
//  3. runs `edgevault backup verify` on the archive and checks that it
//     holds every object and every DO.
//
// The report (markdown) goes to -out.
//
//	scalerun -edgevault PATH [-dos 10000] [-objects 200000] [-concurrency 10] [-out bench/scale.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"
)

type config struct {
	shape       shape
	concurrency int
	edgevault   string
	work        string
	out         string
	sample      time.Duration
	checkEvery  time.Duration
	keep        bool
	command     string
	maxRSSMiB   float64
	cpuProfile  string
	profileDir  string
	memLimit    string
}

func parseFlags(args []string) (config, error) {
	var c config
	f := flag.NewFlagSet("scalerun", flag.ContinueOnError)
	f.IntVar(&c.shape.DOs, "dos", 10000, "dynamic DB instances")
	f.IntVar(&c.shape.Objects, "objects", 200000, "R2 objects")
	f.Int64Var(&c.shape.MinSize, "object-min", 256, "smallest object, bytes")
	f.Int64Var(&c.shape.Spread, "object-spread", 1024, "object i has object-min + i % object-spread bytes")
	f.IntVar(&c.concurrency, "concurrency", 10, "edgevault --concurrency (the floor keeps twice as many GETs in flight)")
	f.StringVar(&c.edgevault, "edgevault", "", "the edgevault binary (required; make scale builds it fresh)")
	f.StringVar(&c.work, "work", "", "work directory (default: a temporary one, removed after)")
	f.StringVar(&c.out, "out", "", "write the markdown report here (default: stdout)")
	f.DurationVar(&c.sample, "sample", 250*time.Millisecond, "VmRSS sampling interval")
	f.DurationVar(&c.checkEvery, "check-every", 2*time.Second, "how often a check of the running job is timed")
	f.BoolVar(&c.keep, "keep", false, "keep the work directory")
	f.StringVar(&c.command, "command", "make scale", "the command line recorded in the report")
	f.Float64Var(&c.maxRSSMiB, "max-rss", 64, "fail when edgevault's peak RSS exceeds this many MiB")
	f.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of this process during the raw floor (the S3 server and the floor's client) here")
	f.StringVar(&c.memLimit, "gomemlimit", "", "run edgevault with this GOMEMLIMIT (\"\" = its own default soft limit)")
	f.StringVar(&c.profileDir, "profile", "", "also run the backup in-process once more and write its CPU and peak heap profiles into this directory")
	if err := f.Parse(args); err != nil {
		return c, err
	}
	if c.edgevault == "" {
		return c, fmt.Errorf("-edgevault is required")
	}
	if c.shape.DOs < 1 || c.shape.Objects < 1 || c.concurrency < 1 || c.shape.MinSize < 0 || c.shape.Spread < 1 {
		return c, fmt.Errorf("-dos, -objects, -concurrency and -object-spread must be positive, -object-min not negative")
	}
	return c, nil
}

func main() {
	log.SetFlags(log.Ltime)
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c config) error {
	work := c.work
	if work == "" {
		d, err := os.MkdirTemp("", "edgevault-scale-")
		if err != nil {
			return err
		}
		work = d
	}
	if !c.keep {
		defer os.RemoveAll(work)
	}
	rep := &report{cfg: c, started: time.Now().UTC(), loadBefore: loadAvg(), cores: runtime.NumCPU(), goVersion: runtime.Version()}
	e, err := startEnv(work + "/state")
	if err != nil {
		return err
	}
	defer func() {
		if err := e.close(); err != nil {
			log.Printf("closing the emulator: %v", err)
		}
	}()
	log.Printf("seeding %d DOs and %d objects", c.shape.DOs, c.shape.Objects)
	rep.seedDOs, rep.seedObjects, err = seed(ctx, e.emu, c.shape, log.Printf)
	if err != nil {
		return err
	}
	rep.bucketBytes = c.shape.bytes()
	if err := profiled(c.cpuProfile, func() error { return measureFloor(ctx, e, c, rep) }); err != nil {
		return err
	}
	if err := measureBackup(ctx, e, c, work, rep); err != nil {
		return err
	}
	rep.loadAfter = loadAvg()
	rep.total = time.Since(rep.started)
	if err := rep.write(); err != nil {
		return err
	}
	if c.profileDir != "" {
		if err := profileCreate(ctx, e, c, work, c.profileDir); err != nil {
			return err
		}
	}
	return rep.check()
}

// profiled runs fn under a CPU profile written to path ("" = none).
func profiled(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return fn()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "unknown"
	}
	var a, b1, c float64
	if _, err := fmt.Sscanf(string(b), "%f %f %f", &a, &b1, &c); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", a, b1, c)
}
