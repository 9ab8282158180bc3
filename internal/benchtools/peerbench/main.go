// Command peerbench measures edgevault against the official EdgeBase CLI
// and a raw floor on the real EdgeBase server (the peer in
// ../shared/peer), plus edgevault against the emulator at two data sizes
// and the archive format at 1 GiB, and writes bench/results.md and the raw
// bench/results.tsv. scripts/bench.sh (make bench) builds the binaries it
// runs and waits for a quiet machine first.
//
// Every timed run is a separate process under /usr/bin/time -v (wall time,
// peak RSS, user and system CPU); the CPU the server's processes use
// meanwhile is read from /proc. Runs of the three tools are interleaved and
// repeated (-reps), and the report takes medians. After the last restore of
// each tool the target's fingerprint is compared with the source's.
//
//	peerbench -edgevault build/bin/edgevault -rawfloor R -emulator E -archivebench A -out bench -work /tmp/w
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	edgevault, rawfloor, emulator, archivebench string
	out, work                                   string
	reps                                        int
	scenarios                                   []scenario
	bigRows                                     int
	emulatorSizes                               []scenario
	archiveSize                                 string
	skipPeer, skipEmulator, skipArchive         bool
	profile                                     bool
	r2Direct                                    bool
	repo                                        []scenario
	repoDays                                    int
	concurrency                                 int
	meta                                        []string
}

// scenario is a seed size: N DO blocks (bench-config.sh), M R2 objects.
type scenario struct{ n, m int }

func (s scenario) String() string { return fmt.Sprintf("N=%d M=%d", s.n, s.m) }

func parseScenarios(v string) ([]scenario, error) {
	var out []scenario
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, b, ok := strings.Cut(f, ":")
		n, err1 := strconv.Atoi(a)
		m, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || n < 1 || m < 0 {
			return nil, fmt.Errorf("scenario %q: want N:M", f)
		}
		out = append(out, scenario{n, m})
	}
	return out, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var c config
	fs := flag.NewFlagSet("peerbench", flag.ContinueOnError)
	fs.StringVar(&c.edgevault, "edgevault", "build/bin/edgevault", "edgevault binary")
	fs.StringVar(&c.rawfloor, "rawfloor", "", "rawfloor binary (internal/benchtools/rawfloor)")
	fs.StringVar(&c.emulator, "emulator", "build/bin/edgebase-emulator", "edgebase-emulator binary")
	fs.StringVar(&c.archivebench, "archivebench", "", "archivebench binary (internal/benchtools/archivebench)")
	fs.StringVar(&c.out, "out", "bench", "directory for results.md and results.tsv")
	fs.StringVar(&c.work, "work", "", "work directory (peer states, archives); required")
	fs.IntVar(&c.reps, "reps", 3, "repetitions of every timing")
	scen := fs.String("scenarios", "50:200,50:2000,500:200,500:2000", "peer seeds N:M (DO blocks : R2 objects)")
	fs.IntVar(&c.bigRows, "big-rows", 500_000, "rows of the one big DO (0: skip)")
	emu := fs.String("emulator-sizes", "50:200,500:2000", "emulator seeds N:M (small, 10x)")
	fs.StringVar(&c.archiveSize, "archive-size", "1GiB", "archivebench -size")
	fs.BoolVar(&c.skipPeer, "skip-peer", false, "skip the real-server benchmarks")
	fs.BoolVar(&c.skipEmulator, "skip-emulator", false, "skip the emulator benchmarks")
	fs.BoolVar(&c.skipArchive, "skip-archive", false, "skip the archive benchmark")
	fs.BoolVar(&c.profile, "profile", true, "CPU-profile edgevault in-process at the largest scenario")
	fs.BoolVar(&c.r2Direct, "r2-direct", true, "also time create --include-storage with storage through R2 direct (an in-process S3 server holding the peer's objects) and its raw floor, and restore with storage through R2 direct into a stand-in for the target's bucket")
	fs.IntVar(&c.concurrency, "concurrency", 10, "edgevault --concurrency (the floor keeps 2x this many requests in flight, like edgevault)")
	repo := fs.String("repo", "500:2000", "repository-mode benchmark at these N:M (empty: skip)")
	fs.IntVar(&c.repoDays, "repo-days", 30, "snapshots of the repository benchmark (the first full, then one a day after 1 % of objects and one DO changed)")
	loadBefore := fs.String("load-before", "", "load average noted by the caller before starting")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.work == "" {
		return errors.New("-work is required")
	}
	var err error
	if c.scenarios, err = parseScenarios(*scen); err != nil {
		return err
	}
	if c.emulatorSizes, err = parseScenarios(*emu); err != nil {
		return err
	}
	if c.repo, err = parseScenarios(*repo); err != nil {
		return err
	}
	for _, p := range []*string{&c.edgevault, &c.rawfloor, &c.emulator, &c.archivebench, &c.out, &c.work} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	t, err := openTSV(filepath.Join(c.out, "results.tsv"))
	if err != nil {
		return err
	}
	defer t.Close()
	c.meta = machine(*loadBefore, c)
	b := &bench{cfg: c, tsv: t, log: os.Stderr}
	start := time.Now()
	var profile string
	var errs []error
	if !c.skipPeer {
		if profile, err = b.peerSuite(ctx); err != nil {
			errs = append(errs, fmt.Errorf("peer benchmarks: %w", err))
		}
	}
	for _, sc := range c.repo {
		if c.skipPeer || ctx.Err() != nil {
			break
		}
		if err := b.repoSuite(ctx, sc); err != nil {
			errs = append(errs, fmt.Errorf("repository benchmark %s: %w", sc, err))
		}
	}
	if !c.skipEmulator && ctx.Err() == nil {
		if err := b.emulatorSuite(ctx); err != nil {
			errs = append(errs, fmt.Errorf("emulator benchmarks: %w", err))
		}
	}
	if !c.skipArchive && ctx.Err() == nil {
		if err := b.archiveSuite(ctx); err != nil {
			errs = append(errs, fmt.Errorf("archive benchmark: %w", err))
		}
	}
	b.cfg.meta = append(b.cfg.meta, fmt.Sprintf("load average after the run: %.2f; total benchmark time %s", load1(), time.Since(start).Round(time.Second)))
	for _, e := range errs {
		b.cfg.meta = append(b.cfg.meta, "**incomplete**: "+e.Error())
	}
	md, err := os.Create(filepath.Join(c.out, "results.md"))
	if err != nil {
		return err
	}
	writeMarkdown(md, t.rows, b.cfg.meta, profile)
	if err := md.Close(); err != nil {
		return err
	}
	b.logf("wrote %s and %s", filepath.Join(c.out, "results.md"), filepath.Join(c.out, "results.tsv"))
	return errors.Join(errs...)
}

// machine describes where the numbers come from.
func machine(loadBefore string, c config) []string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			mem = fmt.Sprintf(", %.0f GiB RAM", kb/(1<<20))
		}
	}
	out := []string{
		fmt.Sprintf("%s, %s: %d cores (%s)%s; %s", time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), model, mem, runtime.Version()),
		fmt.Sprintf("EdgeBase 0.2.8 peer (wrangler dev on workerd, loopback); official CLI 0.2.8 on node; %d repetitions, medians; edgevault --concurrency %d, floor %d requests in flight", c.reps, c.concurrency, 2*c.concurrency),
	}
	if loadBefore != "" {
		out = append(out, "load average before the run: "+loadBefore+" (the machine is shared; see the load column per row)")
	}
	return out
}

type bench struct {
	cfg config
	tsv *tsv
	log *os.File
	// r2 stands in for the source peer's R2 bucket (-r2-direct), r2dst
	// for the target's.
	r2, r2dst *r2Mirror
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(b.log, "%s peerbench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}
