package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// row is one measured run (one line of the raw TSV).
type row struct {
	Suite     string  // peer, emulator, archive
	Scenario  string  // "N=500 M=2000", "N=1 rows=500000", "small", "1GiB"
	Op        string  // create-json, create-storage, restore, write, verify
	Tool      string  // official, edgevault, floor
	Rep       int     // 1..reps
	RC        int     // exit status
	Wall      float64 // s; the floor's is its own timed network phase
	ProcWall  float64 // s, whole process (/usr/bin/time)
	RSSKiB    int64   // peak RSS
	User, Sys float64 // client CPU, s
	ServerCPU float64 // CPU the server's processes used meanwhile, s
	Load1     float64 // 1-minute load average before the run
	Bytes     int64   // archive size
	Verified  string  // yes/no: target fingerprint equals the source's; - when not checked
	Note      string
}

var header = []string{"suite", "scenario", "op", "tool", "rep", "rc", "wall_s", "proc_wall_s", "max_rss_kib", "user_s", "sys_s", "server_cpu_s", "load1", "bytes", "verified", "note"}

func (r row) fields() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	return []string{r.Suite, r.Scenario, r.Op, r.Tool, strconv.Itoa(r.Rep), strconv.Itoa(r.RC), f(r.Wall), f(r.ProcWall),
		strconv.FormatInt(r.RSSKiB, 10), f(r.User), f(r.Sys), f(r.ServerCPU), strconv.FormatFloat(r.Load1, 'f', 2, 64),
		strconv.FormatInt(r.Bytes, 10), r.Verified, strings.NewReplacer("\t", " ", "\n", " ").Replace(r.Note)}
}

func parseRow(fs []string) (row, error) {
	if len(fs) != len(header) {
		return row{}, fmt.Errorf("want %d fields, got %d", len(header), len(fs))
	}
	var r row
	var err error
	num := func(s string) float64 {
		v, e := strconv.ParseFloat(s, 64)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	r.Suite, r.Scenario, r.Op, r.Tool = fs[0], fs[1], fs[2], fs[3]
	r.Rep, r.RC = int(num(fs[4])), int(num(fs[5]))
	r.Wall, r.ProcWall = num(fs[6]), num(fs[7])
	r.RSSKiB = int64(num(fs[8]))
	r.User, r.Sys, r.ServerCPU, r.Load1 = num(fs[9]), num(fs[10]), num(fs[11]), num(fs[12])
	r.Bytes = int64(num(fs[13]))
	r.Verified, r.Note = fs[14], fs[15]
	return r, err
}

// tsv appends rows to the raw results file as they are measured, so an
// interrupted run keeps what it had.
type tsv struct {
	f    *os.File
	rows []row
}

func openTSV(path string) (*tsv, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintln(f, strings.Join(header, "\t")); err != nil {
		f.Close()
		return nil, err
	}
	return &tsv{f: f}, nil
}

func (t *tsv) add(r row) {
	t.rows = append(t.rows, r)
	fmt.Fprintln(t.f, strings.Join(r.fields(), "\t"))
	_ = t.f.Sync()
}

func (t *tsv) Close() error { return t.f.Close() }

func readTSV(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		r, err := parseRow(strings.Split(sc.Text(), "\t"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

// stat is the median of one (suite, scenario, op, tool) group.
type stat struct {
	n, failed              int
	wall, rss, cpu, server float64
	load                   float64
	bytes                  int64
	verified               string
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type key struct{ suite, scenario, op, tool string }

func aggregate(rows []row) (map[key]stat, []key) {
	groups := map[key][]row{}
	var order []key
	for _, r := range rows {
		k := key{r.Suite, r.Scenario, r.Op, r.Tool}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := map[key]stat{}
	for k, rs := range groups {
		var wall, rss, cpu, server, load []float64
		s := stat{verified: "-"}
		for _, r := range rs {
			s.n++
			if r.RC != 0 {
				s.failed++
				continue
			}
			wall = append(wall, r.Wall)
			rss = append(rss, float64(r.RSSKiB))
			cpu = append(cpu, r.User+r.Sys)
			server = append(server, r.ServerCPU)
			load = append(load, r.Load1)
			if r.Bytes > s.bytes {
				s.bytes = r.Bytes
			}
			if r.Verified != "-" && r.Verified != "" {
				s.verified = r.Verified
			}
		}
		s.wall, s.rss, s.cpu, s.server, s.load = median(wall), slices.Max(append(rss, 0)), median(cpu), median(server), median(load)
		out[k] = s
	}
	return out, order
}

func mib(kib float64) string { return fmt.Sprintf("%.0f", kib/1024) }

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// cell renders "wall s / RSS MiB" with failures flagged.
func cell(s stat, ok bool) string {
	if !ok {
		return "–"
	}
	if s.n == s.failed {
		return fmt.Sprintf("failed (%d/%d)", s.failed, s.n)
	}
	c := fmt.Sprintf("%.2f s / %s MiB", s.wall, mib(s.rss))
	if s.failed > 0 {
		c += fmt.Sprintf(" (%d/%d failed)", s.failed, s.n)
	}
	return c
}

// Targets of issue 8.
const (
	targetOfficial = 0.33
	targetFloor    = 1.2
	targetRSSMiB   = 64
)

// writeMarkdown renders the results document from the raw rows.
func writeMarkdown(w io.Writer, rows []row, meta []string, profile string) {
	st, order := aggregate(rows)
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("# edgevault benchmarks")
	p("")
	p("Generated by `make bench` (scripts/bench.sh → internal/benchtools/peerbench); see bench/README.md for")
	p("what is measured and how. Raw rows: bench/results.tsv. Every timing is the median of the")
	p("repetitions; peak RSS is the maximum over them. \"floor\" is internal/benchtools/rawfloor: the")
	p("same admin API requests with the same requests in flight and no processing.")
	p("")
	for _, m := range meta {
		p("- %s", m)
	}
	p("")

	writePeerTables(p, st, order)
	writeR2Table(p, st, order)
	writeRepoTables(p, st, order)
	writeEmulatorTable(p, st, order)
	writeArchiveTables(p, st, order)
	if profile != "" {
		p("## CPU profile of edgevault (in-process, pprof)")
		p("")
		p("```")
		p("%s", strings.TrimRight(profile, "\n"))
		p("```")
	}
}

// printer writes one line of the document.
type printer func(format string, a ...any)

// writePeerTables renders the comparison against the official CLI and
// the floor on the real peer, and where edgevault's time goes.
func writePeerTables(p printer, st map[key]stat, order []key) {
	var scenarios []string
	seen := map[string]bool{}
	for _, k := range order {
		if k.suite == "peer" && !seen[k.scenario] {
			seen[k.scenario] = true
			scenarios = append(scenarios, k.scenario)
		}
	}
	if len(scenarios) > 0 {
		p("## Against the real EdgeBase peer (official CLI vs edgevault vs raw floor)")
		p("")
		p("Wall time / peak RSS. Targets (issue 8): edgevault ≤ %.2f× the official CLI for create --include-storage and", targetOfficial)
		p("restore at N=500/M=2000, ≤ %.1f× the floor, ≤ %d MiB peak RSS everywhere.", targetFloor, targetRSSMiB)
		p("")
		p("| scenario | op | official | edgevault | floor | ev/official | ev/floor | ev RSS ≤ %d MiB | restored data verified | load |", targetRSSMiB)
		p("|---|---|---|---|---|---|---|---|---|---|")
		for _, sc := range scenarios {
			for _, op := range []string{"create-json", "create-storage", "restore"} {
				off, okO := st[key{"peer", sc, op, "official"}]
				ev, okE := st[key{"peer", sc, op, "edgevault"}]
				fl, okF := st[key{"peer", sc, op, "floor"}]
				if !okO && !okE && !okF {
					continue
				}
				rssOK := "–"
				if okE && ev.n > ev.failed {
					rssOK = "yes"
					if ev.rss/1024 > targetRSSMiB {
						rssOK = "**no**"
					}
				}
				verified := "–"
				if op == "restore" {
					verified = fmt.Sprintf("official %s, edgevault %s, floor %s", off.verified, ev.verified, fl.verified)
				}
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f |", sc, op, cell(off, okO), cell(ev, okE), cell(fl, okF),
					ratio(ev.wall, off.wall), ratio(ev.wall, fl.wall), rssOK, verified, ev.load)
			}
		}
		p("")
		p("### Where edgevault's time goes")
		p("")
		p("Medians per run: wall time, edgevault's own CPU (user+sys), and the CPU the server's processes")
		p("(workerd, wrangler, the dev CLI) used meanwhile. The machine has 2 cores, so server CPU close to")
		p("the wall time means the server is the bottleneck; client CPU far below wall means edgevault waits.")
		p("")
		p("| scenario | op | tool | wall s | client CPU s | server CPU s | archive MiB |")
		p("|---|---|---|---|---|---|---|")
		for _, sc := range scenarios {
			for _, op := range []string{"create-json", "create-storage", "restore"} {
				for _, tool := range []string{"official", "edgevault", "floor"} {
					s, ok := st[key{"peer", sc, op, tool}]
					if !ok || s.n == s.failed {
						continue
					}
					arch := "–"
					if s.bytes > 0 {
						arch = fmt.Sprintf("%.1f", float64(s.bytes)/(1<<20))
					}
					p("| %s | %s | %s | %.2f | %.2f | %.2f | %s |", sc, op, tool, s.wall, s.cpu, s.server, arch)
				}
			}
		}
		p("")
	}

}

// writeEmulatorTable renders the emulator rows.
func writeEmulatorTable(p printer, st map[key]stat, order []key) {
	var emu []string
	seen := map[string]bool{}
	for _, k := range order {
		if k.suite == "emulator" && !seen[k.scenario] {
			seen[k.scenario] = true
			emu = append(emu, k.scenario)
		}
	}
	if len(emu) > 0 {
		p("## Against the emulator (issues 4 and 5): peak RSS must not grow with the data")
		p("")
		p("| seed | create --include-storage | restore | archive MiB | restored data verified |")
		p("|---|---|---|---|---|")
		for _, sc := range emu {
			c, okC := st[key{"emulator", sc, "create-storage", "edgevault"}]
			r, okR := st[key{"emulator", sc, "restore", "edgevault"}]
			p("| %s | %s | %s | %.1f | %s |", sc, cell(c, okC), cell(r, okR), float64(c.bytes)/(1<<20), r.verified)
		}
		p("")
	}

}

// writeArchiveTables renders the archive format rows.
func writeArchiveTables(p printer, st map[key]stat, order []key) {
	for _, k := range order {
		if k.suite != "archive" || k.op != "write" {
			continue
		}
		wr := st[k]
		vf := st[key{"archive", k.scenario, "verify", k.tool}]
		p("## Archive format (issue 3): write and verify a %s archive", k.scenario)
		p("")
		p("| phase | wall | peak RSS | ≤ %d MiB |", targetRSSMiB)
		p("|---|---|---|---|")
		for _, x := range []struct {
			name string
			s    stat
		}{{"write", wr}, {"verify", vf}} {
			ok := "yes"
			if x.s.rss/1024 > targetRSSMiB {
				ok = "**no**"
			}
			p("| %s | %.1f s | %s MiB | %s |", x.name, x.s.wall, mib(x.s.rss), ok)
		}
		p("")
	}
}

// writeR2Table renders create --include-storage with storage through R2
// direct (an in-process S3 server holding the peer's objects) against the
// official CLI through the Worker, and the raw floor against that server.
func writeR2Table(p printer, st map[key]stat, order []key) {
	var scenarios []string
	seen := map[string]bool{}
	for _, k := range order {
		if k.suite == "peer" && k.tool == "edgevault-r2" && !seen[k.scenario] {
			seen[k.scenario] = true
			scenarios = append(scenarios, k.scenario)
		}
	}
	if len(scenarios) == 0 {
		return
	}
	p("## Storage through R2 direct (issue 13)")
	p("")
	p("create --include-storage: the official CLI through the Worker; edgevault with database parts from the peer and")
	p("storage from an in-process S3 server holding the same objects (the peer's Miniflare store has no S3 API);")
	p("r2-floor: list + parallel GETs of every object from that server (2 x --concurrency in flight, the same Go client), bodies discarded.")
	p("Target: edgevault-r2 ≤ %.2f× the official CLI, peak RSS ≤ %d MiB.", targetOfficial, targetRSSMiB)
	p("")
	p("| scenario | official | edgevault (Worker) | edgevault-r2 | r2-floor | r2/official | r2/r2-floor | r2 RSS ≤ %d MiB | load |", targetRSSMiB)
	p("|---|---|---|---|---|---|---|---|---|")
	for _, sc := range scenarios {
		off, okO := st[key{"peer", sc, "create-storage", "official"}]
		ev, okE := st[key{"peer", sc, "create-storage", "edgevault"}]
		r2, okR := st[key{"peer", sc, "create-storage", "edgevault-r2"}]
		fl, okF := st[key{"peer", sc, "create-storage", "r2-floor"}]
		rssOK := "–"
		if okR && r2.n > r2.failed {
			rssOK = "yes"
			if r2.rss/1024 > targetRSSMiB {
				rssOK = "**no**"
			}
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %.2f |", sc, cell(off, okO), cell(ev, okE), cell(r2, okR), cell(fl, okF),
			ratio(r2.wall, off.wall), ratio(r2.wall, fl.wall), rssOK, r2.load)
	}
	p("")
	writeR2RestoreTable(p, st, scenarios)
}

// writeR2RestoreTable renders restore with storage through R2 direct
// into a stand-in for the target's bucket against the official CLI's
// restore through the Worker.
func writeR2RestoreTable(p printer, st map[key]stat, scenarios []string) {
	var rows []string
	for _, sc := range scenarios {
		if _, ok := st[key{"peer", sc, "restore", "edgevault-r2"}]; ok {
			rows = append(rows, sc)
		}
	}
	if len(rows) == 0 {
		return
	}
	p("restore: the official CLI through the Worker (wipe, then every object); edgevault with the database parts into the target peer")
	p("and storage into an in-process S3 server standing in for the target's bucket, with --full-storage-restore (every object")
	p("uploaded, like the official CLI). Verified: the stand-in's objects (sha256, content type) and the peer's database equal the source's.")
	p("")
	p("| scenario | official | edgevault (Worker) | edgevault-r2 | r2/official | r2 RSS ≤ %d MiB | verified | load |", targetRSSMiB)
	p("|---|---|---|---|---|---|---|---|")
	for _, sc := range rows {
		off, okO := st[key{"peer", sc, "restore", "official"}]
		ev, okE := st[key{"peer", sc, "restore", "edgevault"}]
		r2 := st[key{"peer", sc, "restore", "edgevault-r2"}]
		rssOK := "–"
		if r2.n > r2.failed {
			rssOK = "yes"
			if r2.rss/1024 > targetRSSMiB {
				rssOK = "**no**"
			}
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %.2f |", sc, cell(off, okO), cell(ev, okE), cell(r2, true),
			ratio(r2.wall, off.wall), rssOK, r2.verified, r2.load)
	}
	p("")
}
