package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// emulatorProc is one edgebase-emulator process, stopped by its PID.
type emulatorProc struct {
	cmd *exec.Cmd
	url string
	key string
}

func (b *bench) startEmulator(ctx context.Context, name string, args ...string) (*emulatorProc, error) {
	dir := filepath.Join(b.cfg.work, name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready")
	key := "bench-" + name + "-key"
	cmd := exec.Command(b.cfg.emulator, append([]string{"-key", key, "-state", filepath.Join(dir, "state"), "-ready-file", ready}, args...)...)
	logf, err := os.Create(filepath.Join(dir, "emulator.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e := &emulatorProc{cmd: cmd, key: key}
	// scripts/bench.sh stops what an interrupted run left behind by this PID.
	if err := os.WriteFile(filepath.Join(dir, "emulator.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		b.stopEmulator(e)
		return nil, err
	}
	for {
		if b, err := os.ReadFile(ready); err == nil {
			e.url = strings.TrimSpace(strings.TrimPrefix(string(b), "EDGEBASE_URL="))
			break
		}
		if cmd.ProcessState != nil || ctx.Err() != nil || time.Since(start) > 10*time.Minute {
			b.stopEmulator(e)
			return nil, fmt.Errorf("emulator %s did not become ready (see %s)", name, logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.logf("emulator %s on %s (seeded) in %s", name, e.url, time.Since(start).Round(100*time.Millisecond))
	return e, nil
}

func (b *bench) stopEmulator(e *emulatorProc) {
	if e == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = e.cmd.Process.Kill()
		<-done
	}
}

// emulatorSuite measures edgevault create --include-storage and restore
// against the emulator at each seed size (issues 4 and 5: peak RSS must
// not grow with the data).
func (b *bench) emulatorSuite(ctx context.Context) error {
	for i, s := range b.cfg.emulatorSizes {
		label := fmt.Sprintf("N=%d M=%d", s.n, s.m)
		if i == 0 {
			label += " (small)"
		} else if s.m > 0 && b.cfg.emulatorSizes[0].m > 0 {
			label += fmt.Sprintf(" (%dx)", s.m/b.cfg.emulatorSizes[0].m)
		}
		if err := b.emulatorSize(ctx, label, s); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) emulatorSize(ctx context.Context, label string, s scenario) error {
	src, err := b.startEmulator(ctx, fmt.Sprintf("emu-src-%d-%d", s.n, s.m), "-seed", "bench", "-bench-n", strconv.Itoa(s.n), "-bench-m", strconv.Itoa(s.m))
	if err != nil {
		return err
	}
	defer b.stopEmulator(src)
	// The target has the same (bench) config and DOs, no objects.
	dst, err := b.startEmulator(ctx, fmt.Sprintf("emu-dst-%d-%d", s.n, s.m), "-seed", "bench", "-bench-n", strconv.Itoa(s.n), "-bench-m", "0")
	if err != nil {
		return err
	}
	defer b.stopEmulator(dst)
	srcT := &target{pid: src.cmd.Process.Pid}
	dstT := &target{pid: dst.cmd.Process.Pid}
	var archive string
	for rep := 1; rep <= b.cfg.reps; rep++ {
		out, err := os.MkdirTemp(b.cfg.work, "emu-out-")
		if err != nil {
			return err
		}
		m, err := b.timedOn(ctx, srcT, out, environ(), b.cfg.edgevault, "--json", "backup", "create", "--url", src.url, "--service-key", src.key,
			"--output", out, "--include-storage", "--concurrency", strconv.Itoa(b.cfg.concurrency))
		if err != nil {
			return err
		}
		r := toolRun{tool: "edgevault", m: m, wall: m.wall}
		if f := regexp.MustCompile(`"file":"([^"]+)"`).FindStringSubmatch(m.out); f != nil {
			r.archive = f[1]
		}
		b.record("emulator", label, "create-storage", "edgevault", rep, r, "-")
		if archive != "" {
			os.RemoveAll(filepath.Dir(archive))
		}
		archive = r.archive
	}
	if archive == "" {
		return fmt.Errorf("emulator %s: no archive", label)
	}
	defer os.RemoveAll(filepath.Dir(archive))
	want, err := edgebasetest.TakeFingerprint(ctx, src.url, edgebasetest.FingerprintOptions{ServiceKey: src.key})
	if err != nil {
		return err
	}
	for rep := 1; rep <= b.cfg.reps; rep++ {
		m, err := b.timedOn(ctx, dstT, filepath.Dir(archive), environ(), b.cfg.edgevault, "--json", "backup", "restore", "--from", archive, "--yes",
			"--url", dst.url, "--service-key", dst.key, "--concurrency", strconv.Itoa(b.cfg.concurrency), "--full-storage-restore")
		if err != nil {
			return err
		}
		verified := "-"
		if rep == b.cfg.reps && m.rc == 0 {
			got, err := edgebasetest.TakeFingerprint(ctx, dst.url, edgebasetest.FingerprintOptions{ServiceKey: dst.key})
			if err != nil {
				return err
			}
			verified = "yes"
			if d := edgebasetest.Diff(want, got); d != "" {
				verified = "no"
				b.logf("emulator %s restore: target differs:\n%s", label, d)
			}
		}
		b.record("emulator", label, "restore", "edgevault", rep, toolRun{tool: "edgevault", m: m, wall: m.wall}, verified)
	}
	return nil
}

var archiveResult = regexp.MustCompile(`RESULT archive_bytes=(\d+) .*write_s=([0-9.]+) write_maxrss_kib=(\d+) verify_s=([0-9.]+) verify_maxrss_kib=(\d+)`)

// archiveSuite runs archivebench (issue 3: a 1 GiB archive written and
// verified with peak RSS under 64 MiB), once: it takes a minute or two and
// its phases are long enough that noise matters less.
func (b *bench) archiveSuite(ctx context.Context) error {
	if b.cfg.archivebench == "" {
		return errors.New("no -archivebench binary")
	}
	dir, err := os.MkdirTemp(b.cfg.work, "archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	load := load1()
	m, err := timed(ctx, dir, environ(), b.cfg.archivebench, "-size", b.cfg.archiveSize, "-dir", dir)
	if err != nil {
		return err
	}
	var res []string
	sc := bufio.NewScanner(strings.NewReader(m.out))
	for sc.Scan() {
		if f := archiveResult.FindStringSubmatch(sc.Text()); f != nil {
			res = f
		}
	}
	if res == nil {
		return fmt.Errorf("archivebench (exit %d) printed no RESULT: %s", m.rc, lastLine(m.errOut+m.out))
	}
	size, _ := strconv.ParseInt(res[1], 10, 64)
	ws, _ := strconv.ParseFloat(res[2], 64)
	wr, _ := strconv.ParseInt(res[3], 10, 64)
	vs, _ := strconv.ParseFloat(res[4], 64)
	vr, _ := strconv.ParseInt(res[5], 10, 64)
	for _, p := range []struct {
		op   string
		wall float64
		rss  int64
	}{{"write", ws, wr}, {"verify", vs, vr}} {
		b.tsv.add(row{Suite: "archive", Scenario: b.cfg.archiveSize, Op: p.op, Tool: "edgevault", Rep: 1, RC: m.rc, Wall: p.wall, ProcWall: m.wall,
			RSSKiB: p.rss, Load1: load, Bytes: size, Verified: "-"})
		b.logf("archive %s %s: %.1f s, %d MiB", b.cfg.archiveSize, p.op, p.wall, p.rss>>10)
	}
	return nil
}
