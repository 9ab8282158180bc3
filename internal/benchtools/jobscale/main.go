// Command jobscale measures the engine's bookkeeping for a job with many
// tasks (default 100,000): planning, queuing the phase, recording every
// task's outcome, and above all the cost of one check (Engine.Advance),
// which a serverless job pays every recheck delay inside one Lambda
// invocation. The tasks do nothing, so what is measured is the engine and
// its store alone: a directory store (the embedded runtime's) and the
// in-process queue. make bench runs it and adds its rows to
// bench/results.md.
//
//	jobscale [-tasks 100000] [-workers 8] [-checks 5] [-dir DIR]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
)

const noop events.TaskKind = "noop"

// planner writes n tasks in one phase.
type planner struct {
	jobs *pipeline.Jobs
	n    int
}

func (p planner) Plan(ctx context.Context, job *events.Job) error {
	n, err := p.jobs.WritePlan(ctx, job.ID, func(emit func(events.Task) error) error {
		for i := range p.n {
			if err := emit(events.Task{ID: pipeline.TaskID(i, noop), Kind: noop, Unit: fmt.Sprintf("unit %d", i)}); err != nil {
				return err
			}
		}
		return nil
	})
	job.Tasks = n
	return err
}

func main() {
	tasks := flag.Int("tasks", 100_000, "tasks in the job")
	workers := flag.Int("workers", 8, "goroutines running tasks")
	checks := flag.Int("checks", 5, "checks timed at each point")
	dir := flag.String("dir", "", "store directory (default: a temporary one, removed after)")
	flag.Parse()
	if err := run(*tasks, *workers, *checks, *dir); err != nil {
		log.Fatal(err)
	}
}

type result struct {
	name  string
	value time.Duration
	note  string
}

func run(n, workers, checks int, dir string) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "edgevault-jobscale-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	store, err := fs.NewWithOptions(dir, fs.Options{NoSync: func(string) bool { return true }})
	if err != nil {
		return err
	}
	defer store.Close()
	jobs, err := pipeline.NewJobs(store, "jobs/", "backups/", time.Now)
	if err != nil {
		return err
	}
	q := mem.New(mem.Options{VisibilityTimeout: time.Hour})
	eng, err := pipeline.New(pipeline.Config{Jobs: jobs, Tasks: q, Options: pipeline.Options{SendBatches: 8},
		Domains: map[events.JobKind]pipeline.Domain{events.KindBackup: {
			Planner:  planner{jobs: jobs, n: n},
			Handlers: map[events.TaskKind]pipeline.Handler{noop: func(context.Context, pipeline.Unit) (pipeline.Result, error) { return pipeline.Result{}, nil }},
		}}})
	if err != nil {
		return err
	}
	var res []result
	start := time.Now()
	job, err := eng.Prepare(ctx, events.StartRequest{JobID: "scale", Kind: events.KindBackup})
	if err != nil {
		return err
	}
	res = append(res, result{"plan", time.Since(start), fmt.Sprintf("%d tasks written to the plan", job.Tasks)})
	start = time.Now()
	if _, err := eng.Launch(ctx, job.ID); err != nil {
		return err
	}
	res = append(res, result{"queue the phase", time.Since(start), fmt.Sprintf("%d messages sent", q.Len())})

	check := func(label string) error {
		var worst, total time.Duration
		for range checks {
			t := time.Now()
			if _, err := eng.Advance(ctx, job.ID); err != nil {
				return err
			}
			d := time.Since(t)
			total += d
			worst = max(worst, d)
		}
		res = append(res, result{"check, " + label, total / time.Duration(checks), fmt.Sprintf("mean of %d; slowest %s", checks, worst.Round(time.Microsecond))})
		return nil
	}
	if err := check("0 done"); err != nil {
		return err
	}
	start = time.Now()
	if err := drain(ctx, eng, q, workers, n/2); err != nil {
		return err
	}
	half := time.Since(start)
	if err := check(fmt.Sprintf("%d done", n/2)); err != nil {
		return err
	}
	start = time.Now()
	if err := drain(ctx, eng, q, workers, n-n/2-1); err != nil {
		return err
	}
	rest := time.Since(start)
	// The costliest check a running job has: every outcome but one to
	// list.
	if err := check(fmt.Sprintf("%d done", n-1)); err != nil {
		return err
	}
	start = time.Now()
	if err := drain(ctx, eng, q, workers, 1); err != nil {
		return err
	}
	all := half + rest + time.Since(start)
	res = append(res, result{"run and record every task", all, fmt.Sprintf("%d workers, %.0f tasks/s", workers, float64(n)/all.Seconds())})
	start = time.Now()
	if _, err := eng.Advance(ctx, job.ID); err != nil {
		return err
	}
	res = append(res, result{"the check that finishes the job", time.Since(start), "counts the last phase complete, records done, deletes the staging area"})
	final, err := jobs.ReadJob(ctx, job.ID)
	if err != nil {
		return err
	}
	if final.State != events.StateDone {
		return fmt.Errorf("the job ended %s, not done: %+v", final.State, final.Errors)
	}
	res = append(res, result{"peak RSS", 0, peakRSS()})
	report(n, res)
	return nil
}

// drain runs exactly count tasks from the queue with workers goroutines.
func drain(ctx context.Context, eng *pipeline.Engine, q *mem.Queue, workers, count int) error {
	var left atomic.Int64
	left.Store(int64(count))
	g, ctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			for left.Add(-1) >= 0 {
				ds, err := q.Receive(ctx, 1, time.Second)
				if err != nil {
					return err
				}
				if len(ds) == 0 {
					return fmt.Errorf("the queue ran dry with %d tasks to go", left.Load()+1)
				}
				env, err := events.Decode(ds[0].Body)
				if err != nil {
					return err
				}
				if err := eng.Worker.Process(ctx, *env.Task, ds[0].Attempt); err != nil {
					return err
				}
				if err := q.Ack(ctx, ds[0]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func report(n int, res []result) {
	fmt.Printf("### Bookkeeping of one job with %d tasks\n\n", n)
	fmt.Println("| step | time | note |")
	fmt.Println("|---|---|---|")
	for _, r := range res {
		v := "–"
		if r.value > 0 {
			v = r.value.Round(time.Microsecond).String()
		}
		fmt.Printf("| %s | %s | %s |\n", r.name, v, r.note)
	}
}

// peakRSS reads the process's high-water mark of resident memory.
func peakRSS() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	return scanHWM(f)
}

func scanHWM(r io.Reader) string {
	s := bufio.NewScanner(r)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v) + " (the in-process queue holds every message; SQS would)"
		}
	}
	return "unknown"
}
