package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/cli"
	"github.com/edgevault/edgevault/internal/peer"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// target is a running peer.
type target struct {
	*peer.Peer
	pid int // process group leader recorded by start.sh: the root of the server's process tree
}

func (b *bench) startPeer(ctx context.Context, name string, opts peer.Options) (*target, error) {
	opts.StateDir = filepath.Join(b.cfg.work, name)
	opts.Key = "bench-" + name + "-key"
	if err := os.RemoveAll(opts.StateDir); err != nil {
		return nil, err
	}
	start := time.Now()
	p, err := peer.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	pidb, _ := os.ReadFile(filepath.Join(p.StateDir, "peer.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	b.logf("peer %s on %s in %s", name, p.URL, time.Since(start).Round(100*time.Millisecond))
	return &target{Peer: p, pid: pid}, nil
}

func (b *bench) stopPeer(t *target) {
	if t == nil {
		return
	}
	if err := t.Stop(); err != nil {
		b.logf("%v", err)
	}
}

// peerSuite runs every scenario on the real server and returns the
// profile summary (when -profile).
func (b *bench) peerSuite(ctx context.Context) (string, error) {
	if err := peer.Available(); err != nil {
		return "", err
	}
	var profile string
	// Scenarios with the same N share a source (M grows) and a target.
	var ns []int
	byN := map[int][]int{}
	for _, s := range b.cfg.scenarios {
		if _, ok := byN[s.n]; !ok {
			ns = append(ns, s.n)
		}
		byN[s.n] = append(byN[s.n], s.m)
	}
	for _, n := range ns {
		p, err := b.scenarioGroup(ctx, n, byN[n])
		if err != nil {
			return profile, err
		}
		if p != "" {
			profile = p
		}
	}
	if b.cfg.bigRows > 0 {
		if err := b.bigDO(ctx); err != nil {
			return profile, err
		}
	}
	return profile, nil
}

func (b *bench) scenarioGroup(ctx context.Context, n int, ms []int) (profile string, err error) {
	opts := peer.Options{Profile: peer.ProfileBench, BenchN: n}
	src, err := b.startPeer(ctx, fmt.Sprintf("src-%d", n), opts)
	if err != nil {
		return "", err
	}
	defer b.stopPeer(src)
	dst, err := b.startPeer(ctx, fmt.Sprintf("dst-%d", n), opts)
	if err != nil {
		return "", err
	}
	defer b.stopPeer(dst)
	if b.cfg.r2Direct {
		if b.r2, err = startR2Mirror(); err != nil {
			return "", err
		}
		defer func() { _ = b.r2.close(); b.r2 = nil }()
		if b.r2dst, err = startR2Mirror(); err != nil {
			return "", err
		}
		defer func() { _ = b.r2dst.close(); b.r2dst = nil }()
	}
	seeded := 0
	for _, m := range ms {
		if err := b.seedBench(ctx, src, n, m, seeded+1); err != nil {
			return profile, err
		}
		if b.r2 != nil {
			if err := b.r2.fill(seeded+1, m); err != nil {
				return profile, err
			}
		}
		seeded = m
		sc := scenario{n, m}
		if err := b.measureScenario(ctx, sc.String(), src, dst, true); err != nil {
			return profile, err
		}
		if b.cfg.profile && n == b.cfg.scenarios[len(b.cfg.scenarios)-1].n && m == ms[len(ms)-1] {
			if profile, err = b.profileRuns(ctx, sc.String(), src, dst); err != nil {
				b.logf("profiling failed: %v", err)
				err = nil
			}
		}
	}
	return profile, nil
}

// seedBench runs the peer's seed-bench.sh for objects from..m (from > 1
// grows an already seeded source).
func (b *bench) seedBench(ctx context.Context, t *target, n, m, from int) error {
	dir, err := peer.Dir()
	if err != nil {
		return err
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, "seed-bench.sh"), t.URL, t.Key, strconv.Itoa(n), strconv.Itoa(m), strconv.Itoa(from))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("seed-bench.sh %d %d %d: %w\n%s", n, m, from, err, out)
	}
	b.logf("seeded N=%d M=%d (objects %d..%d) in %s", n, m, from, m, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// toolRun is one timed tool run.
type toolRun struct {
	tool    string
	archive string // create: the archive written
	size    int64  // bytes to report when there is no archive (a repository)
	m       measure
	wall    float64
}

// measureScenario runs create (JSON, and with storage when storage) and
// restore for the three tools, -reps times each, interleaved.
func (b *bench) measureScenario(ctx context.Context, sc string, src, dst *target, storage bool) error {
	ops := []string{"create-json"}
	if storage {
		ops = append(ops, "create-storage")
	}
	latest := map[string]string{} // tool -> archive of the last create of the restore's kind
	for _, op := range ops {
		withStorage := op == "create-storage"
		tools := []string{"official", "edgevault", "floor"}
		if withStorage && b.r2 != nil {
			tools = append(tools, "edgevault-r2", "r2-floor")
		}
		for rep := 1; rep <= b.cfg.reps; rep++ {
			for _, tool := range tools {
				r, err := b.create(ctx, tool, src, withStorage)
				if err != nil {
					return err
				}
				b.record("peer", sc, op, tool, rep, r, "-")
				if r.archive != "" && withStorage == storage {
					if old := latest[tool]; old != "" && old != r.archive {
						os.RemoveAll(filepath.Dir(old))
					}
					latest[tool] = r.archive
				} else if r.archive != "" {
					os.RemoveAll(filepath.Dir(r.archive))
				}
			}
		}
	}
	if latest["official"] == "" || latest["edgevault"] == "" {
		return fmt.Errorf("%s: no archive to restore (official %q, edgevault %q)", sc, latest["official"], latest["edgevault"])
	}
	// Warm-up (untimed): the target then holds the data, so every timed
	// restore replaces the same state (and D1 tables exist, which the
	// official restore needs).
	if r, err := b.restore(ctx, "edgevault", src, dst, latest["edgevault"], storage); err != nil || r.m.rc != 0 {
		return fmt.Errorf("%s: warm-up restore: %v %s", sc, err, r.m.errOut)
	}
	want, err := b.fingerprint(ctx, src)
	if err != nil {
		return err
	}
	restoreTools := []string{"official", "edgevault", "floor"}
	if storage && b.r2dst != nil && latest["edgevault-r2"] != "" {
		restoreTools = append(restoreTools, "edgevault-r2")
	}
	for rep := 1; rep <= b.cfg.reps; rep++ {
		for _, tool := range restoreTools {
			if tool == "edgevault-r2" {
				r, err := b.restoreR2(ctx, dst, latest[tool])
				if err != nil {
					return err
				}
				verified := "-"
				if rep == b.cfg.reps && r.m.rc == 0 {
					if verified, err = b.verifyR2Restore(ctx, want, dst); err != nil {
						return err
					}
				}
				b.record("peer", sc, "restore", tool, rep, r, verified)
				continue
			}
			r, err := b.restore(ctx, tool, src, dst, latest[tool], storage)
			if err != nil {
				return err
			}
			verified := "-"
			if rep == b.cfg.reps && r.m.rc == 0 {
				got, err := b.fingerprint(ctx, dst)
				if err != nil {
					return err
				}
				verified = "yes"
				if d := edgebasetest.Diff(want, got); d != "" {
					verified = "no"
					b.logf("%s %s restore: target differs from source:\n%s", sc, tool, d)
				}
			}
			b.record("peer", sc, "restore", tool, rep, r, verified)
		}
	}
	for _, a := range latest {
		os.RemoveAll(filepath.Dir(a))
	}
	return nil
}

func (b *bench) record(suite, sc, op, tool string, rep int, r toolRun, verified string) {
	size := r.size
	if r.archive != "" {
		if fi, err := os.Stat(r.archive); err == nil {
			size = fi.Size()
		}
	}
	note := ""
	if r.m.rc != 0 {
		note = lastLine(r.m.errOut + "\n" + r.m.out)
	}
	row := row{Suite: suite, Scenario: sc, Op: op, Tool: tool, Rep: rep, RC: r.m.rc, Wall: r.wall, ProcWall: r.m.wall,
		RSSKiB: r.m.rssKiB, User: r.m.user, Sys: r.m.sys, ServerCPU: r.m.serverCPU, Load1: r.m.load, Bytes: size, Verified: verified, Note: note}
	b.tsv.add(row)
	b.logf("%-8s %-14s %-15s %-9s rep %d: rc %d, %.2f s, %d MiB, client CPU %.2f s, server CPU %.2f s, load %.2f %s",
		suite, sc, op, tool, rep, r.m.rc, r.wall, r.m.rssKiB>>10, r.m.user+r.m.sys, r.m.serverCPU, r.m.load, note)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := lines[len(lines)-1]
	if len(l) > 300 {
		l = l[:300]
	}
	return l
}

var floorResult = regexp.MustCompile(`RESULT op=\S+ wall_s=([0-9.]+)`)

// timedOn runs a command measuring the server's CPU around it.
func (b *bench) timedOn(ctx context.Context, server *target, dir string, env []string, name string, args ...string) (measure, error) {
	load := load1()
	before := treeCPU(server.pid)
	m, err := timed(ctx, dir, env, name, args...)
	m.serverCPU = treeCPU(server.pid) - before
	m.load = load
	return m, err
}

// create runs one backup of src with tool.
func (b *bench) create(ctx context.Context, tool string, src *target, storage bool) (toolRun, error) {
	out, err := os.MkdirTemp(b.cfg.work, "out-")
	if err != nil {
		return toolRun{}, err
	}
	r := toolRun{tool: tool}
	switch tool {
	case "official":
		proj := filepath.Join(src.StateDir, "project")
		args := []string{filepath.Join(proj, "node_modules/@edge-base/cli/dist/index.js"), "--json", "backup", "create", "--url", src.URL, "--service-key", src.Key, "--output", out}
		if storage {
			args = append(args, "--include-storage")
		}
		r.m, err = b.timedOn(ctx, src, proj, environ("EDGEBASE_TELEMETRY_DISABLED=1", "CI=true"), "node", args...)
	case "edgevault":
		args := []string{"--json", "backup", "create", "--url", src.URL, "--service-key", src.Key, "--output", out, "--concurrency", strconv.Itoa(b.cfg.concurrency)}
		if storage {
			args = append(args, "--include-storage")
		}
		r.m, err = b.timedOn(ctx, src, out, environ(), b.cfg.edgevault, args...)
	case "floor":
		args := []string{"create", "-url", src.URL, "-key", src.Key, "-c", strconv.Itoa(2 * b.cfg.concurrency)}
		if storage {
			args = append(args, "-storage")
		}
		r.m, err = b.timedOn(ctx, src, out, environ(), b.cfg.rawfloor, args...)
	case "edgevault-r2", "r2-floor":
		var rr toolRun
		rr, err = b.createR2(ctx, tool, src, out)
		r.m = rr.m
	}
	if err != nil {
		return r, err
	}
	r.wall = r.m.wall
	if tool == "floor" {
		if f := floorResult.FindStringSubmatch(r.m.out); f != nil {
			r.wall, _ = strconv.ParseFloat(f[1], 64)
		}
		os.RemoveAll(out)
		return r, nil
	}
	files, _ := filepath.Glob(filepath.Join(out, "edgebase-backup-*"))
	for _, f := range files {
		if !strings.HasSuffix(f, ".manifest.json") {
			r.archive = f
		}
	}
	if r.archive == "" {
		os.RemoveAll(out)
	}
	return r, nil
}

// restore runs one restore into dst with tool (the floor sends src's data).
func (b *bench) restore(ctx context.Context, tool string, src, dst *target, archive string, storage bool) (toolRun, error) {
	r := toolRun{tool: tool}
	var err error
	switch tool {
	case "official":
		proj := filepath.Join(dst.StateDir, "project")
		args := []string{filepath.Join(proj, "node_modules/@edge-base/cli/dist/index.js"), "--json", "backup", "restore", "--from", archive, "--yes", "--url", dst.URL, "--service-key", dst.Key}
		r.m, err = b.timedOn(ctx, dst, proj, environ("EDGEBASE_TELEMETRY_DISABLED=1", "CI=true"), "node", args...)
	case "edgevault":
		// Objects go up with as many requests in flight as the floor uses;
		// every object is uploaded, like the official CLI does (the target
		// already holds them: by default they would be kept).
		args := []string{"--json", "backup", "restore", "--from", archive, "--yes", "--url", dst.URL, "--service-key", dst.Key,
			"--concurrency", strconv.Itoa(b.cfg.concurrency), "--storage-concurrency", strconv.Itoa(2 * b.cfg.concurrency), "--full-storage-restore"}
		r.m, err = b.timedOn(ctx, dst, filepath.Dir(archive), environ(), b.cfg.edgevault, args...)
	case "floor":
		args := []string{"restore", "-url", dst.URL, "-key", dst.Key, "-source", src.URL, "-source-key", src.Key,
			"-c", strconv.Itoa(2 * b.cfg.concurrency), "-do-c", strconv.Itoa(b.cfg.concurrency)}
		if storage {
			args = append(args, "-storage")
		}
		r.m, err = b.timedOn(ctx, dst, b.cfg.work, environ(), b.cfg.rawfloor, args...)
	}
	if err != nil {
		return r, err
	}
	r.wall = r.m.wall
	if tool == "floor" {
		if f := floorResult.FindStringSubmatch(r.m.out); f != nil {
			r.wall, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return r, nil
}

func (b *bench) fingerprint(ctx context.Context, t *target) (*edgebasetest.Fingerprint, error) {
	fp, err := edgebasetest.TakeFingerprint(ctx, t.URL, edgebasetest.FingerprintOptions{ServiceKey: t.Key, Client: &http.Client{Timeout: 10 * time.Minute}})
	if err != nil {
		return nil, fmt.Errorf("fingerprint %s: %w", t.URL, err)
	}
	return fp, nil
}

// bigDO measures one DO holding bigRows rows (static profile, table
// ledger.entries): create (JSON) and restore.
func (b *bench) bigDO(ctx context.Context) error {
	opts := peer.Options{Profile: peer.ProfileStatic}
	src, err := b.startPeer(ctx, "src-big", opts)
	if err != nil {
		return err
	}
	defer b.stopPeer(src)
	dst, err := b.startPeer(ctx, "dst-big", opts)
	if err != nil {
		return err
	}
	defer b.stopPeer(dst)
	if err := b.seedRows(ctx, src, "/api/db/ledger/tables/entries/batch", b.cfg.bigRows); err != nil {
		return err
	}
	sc := fmt.Sprintf("1 DO, %d rows", b.cfg.bigRows)
	if err := b.measureScenario(ctx, sc, src, dst, false); err != nil {
		return err
	}
	return b.bigDORepo(ctx, sc, src, dst)
}

// seedRows inserts n rows through the batch API (500 per request, the
// server's maximum), 4 requests in flight.
func (b *bench) seedRows(ctx context.Context, t *target, path string, n int) error {
	const batch = 500
	start := time.Now()
	hc := &http.Client{Timeout: time.Minute}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for ctx.Err() == nil {
				i := int(next.Add(batch)) - batch
				if i >= n {
					return
				}
				buf.Reset()
				buf.WriteString(`{"inserts":[`)
				for j := i; j < min(i+batch, n); j++ {
					if j > i {
						buf.WriteByte(',')
					}
					fmt.Fprintf(&buf, `{"amount":%d.25,"memo":"entry %07d of the big ledger, with some text to make rows realistic"}`, j, j)
				}
				buf.WriteString(`]}`)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.URL+path, bytes.NewReader(buf.Bytes()))
				req.Header.Set("X-EdgeBase-Service-Key", t.Key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("seed %s: %w", path, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil {
		b.logf("seeded %d rows in %s", n, time.Since(start).Round(100*time.Millisecond))
	}
	return firstErr
}

// profileRuns runs edgevault create --include-storage and restore once
// more in this process under the CPU profiler and returns the top of each
// profile (go tool pprof -top).
func (b *bench) profileRuns(ctx context.Context, sc string, src, dst *target) (string, error) {
	dir := filepath.Join(b.cfg.work, "profile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var sb strings.Builder
	runOne := func(name string, args []string) (string, error) {
		path := filepath.Join(dir, name+".pprof")
		f, err := os.Create(path)
		if err != nil {
			return "", err
		}
		var out, errb bytes.Buffer
		env := cli.Env{Stdout: &out, Stderr: &errb, WorkDir: dir, Getenv: func(string) string { return "" }}
		before := treeCPU(src.pid) + treeCPU(dst.pid)
		start := time.Now()
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return "", err
		}
		code := cli.Run(ctx, args, env)
		pprof.StopCPUProfile()
		wall := time.Since(start)
		server := treeCPU(src.pid) + treeCPU(dst.pid) - before
		f.Close()
		if code != 0 {
			return "", fmt.Errorf("edgevault %s: exit %d: %s", name, code, lastLine(errb.String()+out.String()))
		}
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=20", path).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go tool pprof: %w: %s", err, top)
		}
		cum, _ := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=25", path).CombinedOutput()
		fmt.Fprintf(&sb, "### edgevault %s (%s), wall %.2f s, server CPU %.2f s\n\n-- flat --\n%s\n-- cumulative --\n%s\n",
			name, sc, wall.Seconds(), server, trimPprof(string(top)), trimPprof(string(cum)))
		return out.String(), nil
	}
	out, err := os.MkdirTemp(b.cfg.work, "profile-out-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(out)
	conc := strconv.Itoa(b.cfg.concurrency)
	doc, err := runOne("create-storage", []string{"--json", "backup", "create", "--url", src.URL, "--service-key", src.Key, "--output", out, "--include-storage", "--concurrency", conc})
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`"file":"([^"]+)"`).FindStringSubmatch(doc)
	if m == nil {
		return "", errors.New("profile: create printed no file")
	}
	if _, err := runOne("restore", []string{"--json", "backup", "restore", "--from", m[1], "--yes", "--url", dst.URL, "--service-key", dst.Key, "--concurrency", conc, "--storage-concurrency", strconv.Itoa(2 * b.cfg.concurrency)}); err != nil {
		return "", err
	}
	b.logf("profiles in %s", dir)
	return sb.String(), nil
}

// trimPprof drops pprof's header lines that name local files.
func trimPprof(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
