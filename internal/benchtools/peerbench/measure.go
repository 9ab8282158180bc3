package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// measure is what /usr/bin/time -v reports about one process.
type measure struct {
	rc     int
	wall   float64 // s
	rssKiB int64
	user   float64 // s
	sys    float64 // s
	out    string  // stdout
	errOut string  // stderr (tail)
	// Filled in by the caller: CPU the server used meanwhile, and the
	// 1-minute load average before the run.
	serverCPU float64
	load      float64
}

var timeField = regexp.MustCompile(`^\s*(User time \(seconds\)|System time \(seconds\)|Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)|Maximum resident set size \(kbytes\)): (\S+)`)

// timed runs name args under /usr/bin/time -v in dir. The child gets its
// own process group, and cancelling ctx sends SIGTERM to the whole group,
// so an interrupted benchmark leaves nothing running.
func timed(ctx context.Context, dir string, env []string, name string, args ...string) (measure, error) {
	tf, err := os.CreateTemp("", "peerbench-time-*")
	if err != nil {
		return measure{}, err
	}
	tf.Close()
	defer os.Remove(tf.Name())
	cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-v", "-o", tf.Name(), name}, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &tailWriter{max: 8 << 10, buf: &stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()
	m := measure{out: stdout.String(), errOut: stderr.String()}
	var exit *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &exit):
		m.rc = exit.ExitCode()
	default:
		return m, fmt.Errorf("run %s: %w", name, runErr)
	}
	if ctx.Err() != nil {
		return m, ctx.Err()
	}
	b, err := os.ReadFile(tf.Name())
	if err != nil {
		return m, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := timeField.FindStringSubmatch(sc.Text())
		if f == nil {
			continue
		}
		switch {
		case strings.HasPrefix(f[1], "User"):
			m.user, _ = strconv.ParseFloat(f[2], 64)
		case strings.HasPrefix(f[1], "System"):
			m.sys, _ = strconv.ParseFloat(f[2], 64)
		case strings.HasPrefix(f[1], "Elapsed"):
			m.wall = parseClock(f[2])
		case strings.HasPrefix(f[1], "Maximum"):
			m.rssKiB, _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	return m, nil
}

// parseClock reads time's h:mm:ss or m:ss.ss.
func parseClock(s string) float64 {
	var t float64
	for _, p := range strings.Split(s, ":") {
		v, _ := strconv.ParseFloat(p, 64)
		t = t*60 + v
	}
	return t
}

// tailWriter keeps the last max bytes written.
type tailWriter struct {
	max int
	buf *bytes.Buffer
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if over := w.buf.Len() - w.max; over > 0 {
		w.buf.Next(over)
	}
	return len(p), nil
}

var _ io.Writer = (*tailWriter)(nil)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// treeCPU is the CPU time (user+system, seconds) used so far by pid and
// every live descendant: the server's share of a benchmark run is the
// difference of two readings.
func treeCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	parent := map[int]int{}
	ticks := map[int]int64{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: fields start
		// after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		parent[p] = pp
		ticks[p] = ut + st
	}
	var total int64
	for p, t := range ticks {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				total += t
				break
			}
		}
	}
	return float64(total) / clockTicks
}

// load1 is the 1-minute load average.
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// environ is the process environment without the variables that would
// switch either CLI to Edge mode or to another deployment.
func environ(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "EDGEBASE_URL", "EDGEBASE_SERVICE_KEY":
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}
