package main

// Repository mode on the real peer (issue 14): one source and one target
// peer seeded like the main suite. The official CLI's full create
// --include-storage and restore are the baselines; edgevault takes a first
// snapshot, then one a "day" after 1 % of the objects and one DO changed,
// then rolls the source back to its newest snapshot (with the undo
// snapshot), restores the undo snapshot, exports a snapshot for the
// official CLI to restore, and forgets + prunes. Every step that restores
// is checked by fingerprint.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/edgevault/edgevault/internal/peer"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

const repoSuite = "repo"

// repoBench is the state of one repository run.
type repoBench struct {
	*bench
	sc       string
	n, m     int
	src, dst *target
	repo     string
	env      []string
}

// ev runs edgevault with the repository's passphrase and returns its
// measure and JSON result.
func (r *repoBench) ev(ctx context.Context, on *target, args ...string) (toolRun, map[string]any, error) {
	m, err := r.timedOn(ctx, on, r.cfg.work, r.env, r.cfg.edgevault, append([]string{"--json"}, args...)...)
	run := toolRun{tool: "edgevault", m: m, wall: m.wall}
	if err != nil {
		return run, nil, err
	}
	var doc map[string]any
	if m.rc == 0 {
		if err := json.Unmarshal(bytes.TrimSpace([]byte(m.out)), &doc); err != nil {
			return run, nil, fmt.Errorf("edgevault %v: result is not JSON: %v\n%s", args, err, m.out)
		}
	} else {
		return run, nil, fmt.Errorf("edgevault %v failed (rc %d): %s %s", args, m.rc, lastLine(m.out), lastLine(m.errOut))
	}
	return run, doc, nil
}

func (r *repoBench) conn(t *target) []string {
	return []string{"--url", t.URL, "--service-key", t.Key, "--repo", r.repo, "--concurrency", strconv.Itoa(r.cfg.concurrency)}
}

// repoSuite runs the repository benchmarks at N:M.
func (b *bench) repoSuite(ctx context.Context, sc scenario) error {
	if err := peer.Available(); err != nil {
		return err
	}
	opts := peer.Options{Profile: peer.ProfileBench, BenchN: sc.n}
	src, err := b.startPeer(ctx, fmt.Sprintf("repo-src-%d", sc.n), opts)
	if err != nil {
		return err
	}
	defer b.stopPeer(src)
	dst, err := b.startPeer(ctx, fmt.Sprintf("repo-dst-%d", sc.n), opts)
	if err != nil {
		return err
	}
	defer b.stopPeer(dst)
	if err := b.seedBench(ctx, src, sc.n, sc.m, 1); err != nil {
		return err
	}
	work, err := os.MkdirTemp(b.cfg.work, "repo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r := &repoBench{bench: b, sc: sc.String(), n: sc.n, m: sc.m, src: src, dst: dst, repo: filepath.Join(work, "repository"),
		env: environ("EDGEVAULT_PASSWORD=bench-repository-passphrase")}
	official, err := r.baselines(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(official))
	if err := r.snapshots(ctx); err != nil {
		return err
	}
	if err := r.rollback(ctx); err != nil {
		return err
	}
	return r.exportAndRetention(ctx, work)
}

// baselines times the official CLI's full create with storage and its
// restore (after an untimed warm-up, so every timed restore replaces the
// same state), and edgevault's .tar.gz of the same data for its size.
func (r *repoBench) baselines(ctx context.Context) (string, error) {
	var archive string
	for rep := 1; rep <= r.cfg.reps; rep++ {
		run, err := r.create(ctx, "official", r.src, true)
		if err != nil {
			return "", err
		}
		r.record(repoSuite, r.sc, "full-create", "official", rep, run, "-")
		if archive != "" {
			os.RemoveAll(filepath.Dir(archive))
		}
		archive = run.archive
	}
	run, err := r.create(ctx, "edgevault", r.src, true)
	if err != nil {
		return "", err
	}
	r.record(repoSuite, r.sc, "full-create", "edgevault-tgz", 1, run, "-")
	defer os.RemoveAll(filepath.Dir(run.archive))
	if archive == "" {
		return "", fmt.Errorf("%s: the official CLI wrote no archive", r.sc)
	}
	// The warm-up gives the target the data and its D1 tables, which the
	// official restore needs (as in the main suite).
	if w, err := r.restore(ctx, "edgevault", r.src, r.dst, run.archive, true); err != nil || w.m.rc != 0 {
		return archive, fmt.Errorf("%s: warm-up restore: %v %s %s", r.sc, err, lastLine(w.m.out), w.m.errOut)
	}
	for rep := 1; rep <= r.cfg.reps; rep++ {
		run, err := r.restore(ctx, "official", r.src, r.dst, archive, true)
		if err != nil {
			return archive, err
		}
		r.record(repoSuite, r.sc, "restore", "official", rep, run, "-")
	}
	return archive, nil
}

// snapshots takes the first snapshot, then one a day after a change.
func (r *repoBench) snapshots(ctx context.Context) error {
	run, doc, err := r.ev(ctx, r.src, append([]string{"backup", "create", "--include-storage"}, r.conn(r.src)...)...)
	if err != nil {
		return err
	}
	run.size = dirSize(r.repo)
	r.record(repoSuite, r.sc, "snapshot-full", "edgevault", 1, run, "-")
	r.logf("full snapshot: %v objects fetched, repository %d bytes", doc["fetched"], run.size)
	changed := r.m / 100
	for day := 2; day <= r.cfg.repoDays; day++ {
		if err := r.change(ctx, r.src, day); err != nil {
			return err
		}
		run, doc, err := r.ev(ctx, r.src, append([]string{"backup", "create", "--include-storage"}, r.conn(r.src)...)...)
		if err != nil {
			return err
		}
		run.size = dirSize(r.repo)
		verified := "yes"
		if doc["fetched"] != float64(changed) {
			verified = "no"
			r.logf("day %d: %v objects fetched, %d changed", day, doc["fetched"], changed)
		}
		r.record(repoSuite, r.sc, "snapshot-incremental", "edgevault", day, run, verified)
	}
	return nil
}

// change rewrites 1 % of the objects (new bytes, same size and type) and
// adds a row to one DO, different ones each day.
func (r *repoBench) change(ctx context.Context, t *target, day int) error {
	c, err := edgebase.New(edgebase.Options{BaseURL: t.URL, ServiceKey: sensitive.String(t.Key)})
	if err != nil {
		return err
	}
	for k := range r.m / 100 {
		o := edgebasetest.BenchObject(1 + (day*37+k*101)%r.m)
		body := make([]byte, o.Size)
		_, _ = rand.Read(body)
		err := c.PutObject(ctx, o.Key, o.ContentType, o.Size, edgebase.BytesBody(body))
		if err != nil {
			return fmt.Errorf("changing %s: %w", o.Key, err)
		}
	}
	do := fmt.Sprintf("%03d", 1+day%r.n)
	row, _ := json.Marshal(map[string]any{"title": fmt.Sprintf("day %d", day), "n": day})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL+"/api/db/do"+do+"/tables/items"+do, bytes.NewReader(row))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-EdgeBase-Service-Key", t.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("adding a row to do%s: HTTP %d", do, resp.StatusCode)
	}
	return nil
}

// rollback restores the source's newest snapshot into the source after a
// change (undo snapshot included), then the undo snapshot.
func (r *repoBench) rollback(ctx context.Context) error {
	want, err := r.fingerprint(ctx, r.src)
	if err != nil {
		return err
	}
	if err := r.change(ctx, r.src, r.cfg.repoDays+1); err != nil {
		return err
	}
	damaged, err := r.fingerprint(ctx, r.src)
	if err != nil {
		return err
	}
	run, doc, err := r.ev(ctx, r.src, append([]string{"backup", "restore", "--from-snapshot", "latest", "--yes"}, r.conn(r.src)...)...)
	if err != nil {
		return err
	}
	r.record(repoSuite, r.sc, "restore-rollback", "edgevault", 1, run, r.same(ctx, r.src, want, "rollback"))
	r.logf("rollback: %v", doc)
	undo, _ := doc["undoSnapshot"].(string)
	if undo == "" {
		return fmt.Errorf("rollback named no undo snapshot: %v", doc)
	}
	run, _, err = r.ev(ctx, r.src, append([]string{"backup", "restore", "--from-snapshot", undo, "--yes", "--no-undo-snapshot"}, r.conn(r.src)...)...)
	if err != nil {
		return err
	}
	r.record(repoSuite, r.sc, "restore-undo", "edgevault", 1, run, r.same(ctx, r.src, damaged, "undo"))
	return nil
}

// same compares t's fingerprint with want.
func (r *repoBench) same(ctx context.Context, t *target, want *edgebasetest.Fingerprint, what string) string {
	got, err := r.fingerprint(ctx, t)
	if err != nil {
		r.logf("%s: %v", what, err)
		return "no"
	}
	if d := edgebasetest.Diff(want, got); d != "" {
		r.logf("%s: the target differs:\n%s", what, d)
		return "no"
	}
	return "yes"
}

// exportAndRetention exports the newest snapshot of the undamaged source
// (the one the rollback restored) for the official CLI to restore, then
// forgets all but the last 7 snapshots and prunes.
func (r *repoBench) exportAndRetention(ctx context.Context, work string) error {
	want, err := r.fingerprint(ctx, r.src)
	if err != nil {
		return err
	}
	// After the undo restore the source is "damaged"; snapshot it again so
	// the export and its fingerprint agree.
	if _, _, err := r.ev(ctx, r.src, append([]string{"backup", "create", "--include-storage"}, r.conn(r.src)...)...); err != nil {
		return err
	}
	file := filepath.Join(work, "export.tar.gz")
	run, _, err := r.ev(ctx, r.src, "backup", "export", "latest", "-o", file, "--repo", r.repo)
	if err != nil {
		return err
	}
	run.archive = file
	r.record(repoSuite, r.sc, "export", "edgevault", 1, run, "-")
	off, err := r.restore(ctx, "official", r.src, r.dst, file, true)
	if err != nil {
		return err
	}
	verified := "no"
	if off.m.rc == 0 {
		verified = r.same(ctx, r.dst, want, "official restore of the export")
	}
	r.record(repoSuite, r.sc, "restore-export", "official", 1, off, verified)
	for _, step := range []struct {
		op   string
		args []string
	}{
		{"forget", []string{"forget", "--keep-last", "7", "--apply", "--repo", r.repo}},
		{"prune", []string{"prune", "--grace", "0s", "--repo", r.repo}},
		{"check-read-data", []string{"backup", "verify", "--repo", r.repo, "--read-data"}},
	} {
		run, doc, err := r.ev(ctx, r.src, step.args...)
		if err != nil {
			return err
		}
		run.size = dirSize(r.repo)
		r.record(repoSuite, r.sc, step.op, "edgevault", 1, run, "-")
		r.logf("%s: %v", step.op, doc)
	}
	return nil
}

// dirSize is the bytes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// writeRepoTables renders the repository suite.
func writeRepoTables(p printer, st map[key]stat, order []key) {
	var scenarios []string
	seen := map[string]bool{}
	for _, k := range order {
		if k.suite == repoSuite && !seen[k.scenario] {
			seen[k.scenario] = true
			scenarios = append(scenarios, k.scenario)
		}
	}
	for _, sc := range scenarios {
		get := func(op, tool string) (stat, bool) { s, ok := st[key{repoSuite, sc, op, tool}]; return s, ok }
		if _, big := get("big-snapshot", "edgevault"); big {
			writeBigRepoTable(p, sc, get)
			continue
		}
		offCreate, _ := get("full-create", "official")
		offRestore, _ := get("restore", "official")
		tgz, _ := get("full-create", "edgevault-tgz")
		full, _ := get("snapshot-full", "edgevault")
		incr, okI := get("snapshot-incremental", "edgevault")
		p("## Repository mode (issue 14), %s", sc)
		p("")
		p("Official CLI: full create --include-storage %s, restore %s. edgevault .tar.gz of the same data: %s, %s.",
			cell(offCreate, true), cell(offRestore, true), cell(tgz, true), humanMiB(tgz.bytes))
		p("")
		p("| step | edgevault | vs official | target | repository size | data checked | load |")
		p("|---|---|---|---|---|---|---|")
		p("| first (full) snapshot | %s | %s create | – | %s (%s of the .tar.gz; target ≤ 1.05) | – | %.2f |",
			cell(full, true), ratio(full.wall, offCreate.wall), humanMiB(full.bytes), ratio(float64(full.bytes), float64(tgz.bytes)), full.load)
		if okI {
			p("| daily snapshot after 1 %% changed (median of %d days) | %s | %s create | ≤ 0.15 | %s after all (%s of the first; target ≤ 1.4) | only changed objects fetched: %s | %.2f |",
				incr.n, cell(incr, true), ratio(incr.wall, offCreate.wall), humanMiB(incr.bytes), ratio(float64(incr.bytes), float64(full.bytes)), incr.verified, incr.load)
		}
		for _, row := range []struct{ op, tool, label, target string }{
			{"restore-rollback", "edgevault", "rollback restore into the source (undo snapshot included)", "≤ 0.3"},
			{"restore-undo", "edgevault", "restore of the undo snapshot", "–"},
			{"export", "edgevault", "backup export of a snapshot (.tar.gz)", "–"},
			{"restore-export", "official", "official CLI restores the export", "–"},
			{"forget", "edgevault", "forget --keep-last 7", "–"},
			{"prune", "edgevault", "prune", "–"},
			{"check-read-data", "edgevault", "verify --read-data", "–"},
		} {
			s, ok := get(row.op, row.tool)
			if !ok {
				continue
			}
			vs := "–"
			if row.op == "restore-rollback" || row.op == "restore-undo" {
				vs = ratio(s.wall, offRestore.wall) + " restore"
			}
			size := "–"
			if s.bytes > 0 {
				size = humanMiB(s.bytes)
			}
			p("| %s | %s | %s | %s | %s | %s | %.2f |", row.label, cell(s, true), vs, row.target, size, s.verified, s.load)
		}
		p("")
	}
}

func humanMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// bigDORepo takes a snapshot of the one big DO into a new repository,
// restores it into dst (verified by fingerprint), exports it and prunes:
// the repository commands' peak RSS on a 500k-row DO.
func (b *bench) bigDORepo(ctx context.Context, sc string, src, dst *target) error {
	work, err := os.MkdirTemp(b.cfg.work, "repo-big-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r := &repoBench{bench: b, sc: sc, src: src, dst: dst, repo: filepath.Join(work, "repository"),
		env: environ("EDGEVAULT_PASSWORD=bench-repository-passphrase")}
	want, err := b.fingerprint(ctx, src)
	if err != nil {
		return err
	}
	run, _, err := r.ev(ctx, src, append([]string{"backup", "create"}, r.conn(src)...)...)
	if err != nil {
		return err
	}
	run.size = dirSize(r.repo)
	r.record(repoSuite, sc, "big-snapshot", "edgevault", 1, run, "-")
	run, _, err = r.ev(ctx, dst, append([]string{"backup", "restore", "--from-snapshot", "latest", "--yes", "--no-undo-snapshot"}, r.conn(dst)...)...)
	if err != nil {
		return err
	}
	r.record(repoSuite, sc, "big-restore", "edgevault", 1, run, r.same(ctx, dst, want, "big DO restore from a snapshot"))
	for _, step := range []struct {
		op   string
		args []string
	}{
		{"big-export", []string{"backup", "export", "latest", "-o", filepath.Join(work, "export.json"), "--repo", r.repo}},
		{"big-prune", []string{"prune", "--grace", "0s", "--repo", r.repo}},
		{"big-check-read-data", []string{"backup", "verify", "--repo", r.repo, "--read-data"}},
	} {
		run, _, err := r.ev(ctx, src, step.args...)
		if err != nil {
			return err
		}
		r.record(repoSuite, sc, step.op, "edgevault", 1, run, "-")
	}
	return nil
}

// writeBigRepoTable renders bigDORepo's rows of scenario sc.
func writeBigRepoTable(p printer, sc string, get func(op, tool string) (stat, bool)) {
	p("## Repository mode (issue 14), %s", sc)
	p("")
	p("| step | edgevault | RSS ≤ 64 MiB | data checked | load |")
	p("|---|---|---|---|---|")
	for _, row := range []struct{ op, label string }{
		{"big-snapshot", "snapshot (new repository)"},
		{"big-restore", "restore --from-snapshot into the target"},
		{"big-export", "backup export (.json)"},
		{"big-prune", "prune"},
		{"big-check-read-data", "verify --read-data"},
	} {
		s, ok := get(row.op, "edgevault")
		if !ok {
			continue
		}
		rssOK := "yes"
		if s.rss/1024 > targetRSSMiB {
			rssOK = "**no**"
		}
		p("| %s | %s | %s | %s | %.2f |", row.label, cell(s, true), rssOK, s.verified, s.load)
	}
	p("")
}
