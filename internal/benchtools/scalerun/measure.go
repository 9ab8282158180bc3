package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// rssSample is the process's resident set at an instant.
type rssSample struct {
	At  float64 // seconds since the process started
	KiB int64
	HWM int64 // VmHWM so far
}

// progressEvent is one line of edgevault's --progress json, stamped with
// when it arrived.
type progressEvent struct {
	At     float64 `json:"-"`
	Event  string  `json:"event"`
	Done   int64   `json:"done"`
	Total  int64   `json:"total"`
	Failed int64   `json:"failed"`
	Bytes  int64   `json:"bytes"`
}

// procRun is one measured edgevault process.
type procRun struct {
	Args      []string
	Wall      time.Duration
	User, Sys time.Duration
	HWMKiB    int64 // the kernel's high-water mark, VmHWM
	// RusageMaxKiB is wait4's ru_maxrss. It is not the peak: Go starts
	// the child with vfork semantics, so until exec the child's memory is
	// this process's, and exec records that memory's high-water mark.
	RusageMaxKiB int64
	Samples      []rssSample
	Progress     []progressEvent
	Stdout       []byte
	StderrTail   string
	Err          error
}

// runSampled runs bin, sampling VmRSS every interval and stamping its
// --progress json lines; during, if set, runs beside it until it exits.
func runSampled(ctx context.Context, bin string, args, env []string, interval time.Duration, during func(ctx context.Context, start time.Time)) procRun {
	r := procRun{Args: args}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	// Through an io.Pipe, so Wait returns only once stderr was copied.
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Err = err
		return r
	}
	dctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	var hwm int64
	go func() { defer wg.Done(); r.Samples, hwm = sampleRSS(dctx, cmd.Process.Pid, start, interval) }()
	var tail tailBuffer
	go func() { defer wg.Done(); r.Progress = readProgress(pr, start, &tail) }()
	if during != nil {
		wg.Add(1)
		go func() { defer wg.Done(); during(dctx, start) }()
	}
	r.Err = cmd.Wait()
	r.Wall = time.Since(start)
	_ = pw.Close()
	stop()
	wg.Wait()
	r.Stdout, r.StderrTail = stdout.Bytes(), tail.String()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.User = time.Duration(ru.Utime.Nano())
		r.Sys = time.Duration(ru.Stime.Nano())
		r.RusageMaxKiB = ru.Maxrss
	}
	r.HWMKiB = hwm
	if r.Err != nil {
		r.Err = fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), r.Err, r.StderrTail)
	}
	return r
}

// sampleRSS samples VmRSS until ctx ends and returns the samples and the
// last VmHWM (the kernel's high-water mark) it saw.
func sampleRSS(ctx context.Context, pid int, start time.Time, interval time.Duration) ([]rssSample, int64) {
	var out []rssSample
	var hwm int64
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if kib, peak, err := readStatus(pid); err == nil && kib > 0 {
			out = append(out, rssSample{At: time.Since(start).Seconds(), KiB: kib, HWM: peak})
			hwm = max(hwm, peak)
		}
		select {
		case <-ctx.Done():
			return out, hwm
		case <-t.C:
		}
	}
}

func readStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseStatus(f)
}

// parseStatus reads the VmRSS and VmHWM lines of /proc/<pid>/status (KiB).
func parseStatus(r io.Reader) (rss, hwm int64, err error) {
	kib := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return n
	}
	s := bufio.NewScanner(r)
	found := false
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			rss, found = kib(v), true
		} else if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			hwm = kib(v)
		}
	}
	if err := s.Err(); err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, errors.New("no VmRSS line")
	}
	return rss, hwm, nil
}

// readProgress stamps every JSON progress line and keeps the last lines
// of anything else (warnings, errors) for messages.
func readProgress(r io.Reader, start time.Time, tail *tailBuffer) []progressEvent {
	var out []progressEvent
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Bytes()
		var ev progressEvent
		if len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &ev) == nil && ev.Event != "" {
			ev.At = time.Since(start).Seconds()
			out = append(out, ev)
			continue
		}
		tail.add(string(line))
	}
	_, _ = io.Copy(io.Discard, r)
	return out
}

// tailBuffer keeps the last lines written.
type tailBuffer struct {
	lines []string
	n     int // lines seen
}

func (t *tailBuffer) add(line string) {
	t.n++
	t.lines = append(t.lines, line)
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

func (t *tailBuffer) String() string {
	return strings.Join(t.lines, "\n")
}

// checkSample is one timed check of the running job.
type checkSample struct {
	At         float64 // seconds since the process started
	Done       int     // outcomes of the open phase
	PhaseTasks int
	Took       time.Duration
}

// checkTimer times, every interval, what a controller check of the
// running job reads (pipeline.Engine.Advance while a phase is open:
// the job record, the failures listing, the count of the phase's
// outcomes), against the staging directory edgevault is writing. It only
// reads, so it never changes the job it measures.
func checkTimer(ctx context.Context, out string, start time.Time, interval time.Duration) ([]checkSample, error) {
	store, err := fs.New(out)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	jobs, err := pipeline.NewJobs(store, stagingPrefix, "", time.Now)
	if err != nil {
		return nil, err
	}
	var samples []checkSample
	id := ""
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return samples, nil
		case <-t.C:
		}
		if id == "" {
			id = findJob(filepath.Join(out, filepath.FromSlash(stagingPrefix)))
			if id == "" {
				continue
			}
		}
		s, ok := timeCheck(ctx, jobs, id)
		if ok {
			s.At = time.Since(start).Seconds()
			samples = append(samples, s)
		}
	}
}

// stagingPrefix is where the CLI keeps a job's staging area in --output.
const stagingPrefix = ".edgevault/jobs/"

func timeCheck(ctx context.Context, jobs *pipeline.Jobs, id string) (checkSample, bool) {
	t0 := time.Now()
	job, err := jobs.ReadJob(ctx, id)
	if err != nil || job.State != events.StateRunning || job.Phase >= len(job.PhaseTasks) {
		return checkSample{}, false
	}
	if _, _, err := jobs.Failures(ctx, id, 50); err != nil {
		return checkSample{}, false
	}
	done, err := jobs.CountDone(ctx, id, job.Phase)
	if err != nil {
		return checkSample{}, false
	}
	return checkSample{Done: done, PhaseTasks: job.PhaseTasks[job.Phase], Took: time.Since(t0)}, true
}

// findJob returns the one job directory under staging (a job.json in it).
func findJob(staging string) string {
	ents, err := os.ReadDir(staging)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(staging, e.Name(), "job.json")); err == nil {
			return e.Name()
		}
	}
	return ""
}

// stats summarises samples.
type stats struct {
	Min, Median, Max float64
}

func summarise(xs []float64) stats {
	if len(xs) == 0 {
		return stats{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{Min: s[0], Median: med, Max: s[len(s)-1]}
}

// slope is the least-squares slope of y over x (0 for fewer than two
// distinct x).
func slope(x, y []float64) float64 {
	n := float64(len(x))
	if len(x) < 2 || len(x) != len(y) {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}
