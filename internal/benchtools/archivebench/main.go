// Command archivebench measures the archive package end to end: it writes
// a backup archive of a given size (mostly incompressible storage objects of
// mixed sizes, plus DO, D1 and namespace sections) with the streaming
// writers the pipeline uses — storage parts, backup.json, head + parts +
// trailer, manifest — and then runs archive.Verify on it. Each phase runs in
// its own child process so that its wall time and peak RSS (getrusage
// ru_maxrss) are measured separately.
//
//	go run ./internal/benchtools/archivebench -size 1GiB -dir /tmp
//
// It prints one machine-readable line starting with RESULT and one line for
// humans, and exits 1 if a phase fails or its peak RSS reaches -max-rss.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
)

func main() {
	var (
		sizeFlag   = flag.String("size", "1GiB", "approximate archive size (bytes, or with KiB/MiB/GiB)")
		dir        = flag.String("dir", os.TempDir(), "directory for the work files")
		parts      = flag.Int("parts", 4, "number of storage members (parts written independently)")
		keep       = flag.Bool("keep", false, "keep the work directory")
		maxRSSFlag = flag.String("max-rss", "64MiB", "fail when a phase's peak RSS reaches this")
		phase      = flag.String("phase", "", "internal: run one phase (write or verify) in this process")
		work       = flag.String("work", "", "internal: work directory of the phase")
	)
	flag.Parse()
	size, err := parseSize(*sizeFlag)
	if err == nil && *parts < 1 {
		err = fmt.Errorf("-parts must be at least 1")
	}
	maxRSS, err2 := parseSize(*maxRSSFlag)
	if err == nil {
		err = err2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "archivebench:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	switch *phase {
	case "write":
		err = runWrite(ctx, *work, size, *parts, os.Stdout)
	case "verify":
		err = runVerify(ctx, *work, os.Stdout)
	case "":
		err = run(*dir, *sizeFlag, *parts, *keep, maxRSS)
	default:
		err = fmt.Errorf("unknown phase %q", *phase)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "archivebench:", err)
		os.Exit(1)
	}
}

// phaseResult is what a child phase measured.
type phaseResult struct {
	wall      time.Duration
	maxRSSKiB int64
	out       map[string]string // key=value pairs the phase printed
}

func run(dir, size string, parts int, keep bool, maxRSS int64) error {
	work, err := os.MkdirTemp(dir, "archivebench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	w, err := runPhase("write", work, "-size", size, "-parts", strconv.Itoa(parts))
	if err != nil {
		return err
	}
	v, err := runPhase("verify", work)
	if err != nil {
		return err
	}
	archiveBytes, _ := strconv.ParseInt(v.out["bytes"], 10, 64)
	mib := float64(archiveBytes) / (1 << 20)
	fmt.Printf("RESULT archive_bytes=%d objects=%s storage_bytes=%s db_bytes=%s rows=%s parts=%d "+
		"write_s=%.2f write_maxrss_kib=%d verify_s=%.2f verify_maxrss_kib=%d\n",
		archiveBytes, w.out["objects"], w.out["storage_bytes"], w.out["db_bytes"], v.out["rows"], parts,
		w.wall.Seconds(), w.maxRSSKiB, v.wall.Seconds(), v.maxRSSKiB)
	fmt.Printf("archivebench: wrote a %.0f MiB archive (%s objects, %s MiB of DB sections) in %.1f s (%.0f MiB/s), peak RSS %.1f MiB; "+
		"verified it in %.1f s (%.0f MiB/s), peak RSS %.1f MiB\n",
		mib, w.out["objects"], mibString(w.out["db_bytes"]), w.wall.Seconds(), mib/w.wall.Seconds(), float64(w.maxRSSKiB)/1024,
		v.wall.Seconds(), mib/v.wall.Seconds(), float64(v.maxRSSKiB)/1024)
	if keep {
		fmt.Println("archivebench: kept", work)
	}
	for _, p := range []struct {
		name string
		r    phaseResult
	}{{"write", w}, {"verify", v}} {
		if p.r.maxRSSKiB*1024 >= maxRSS {
			return fmt.Errorf("%s phase peak RSS %d KiB reaches the limit of %d KiB", p.name, p.r.maxRSSKiB, maxRSS/1024)
		}
	}
	return nil
}

// runPhase runs this program again for one phase and measures it.
func runPhase(phase, work string, args ...string) (phaseResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return phaseResult{}, err
	}
	cmd := exec.Command(exe, append([]string{"-phase", phase, "-work", work}, args...)...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	start := time.Now()
	err = cmd.Run()
	res := phaseResult{wall: time.Since(start), out: map[string]string{}}
	if err != nil {
		return res, fmt.Errorf("%s phase: %w", phase, err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.maxRSSKiB = ru.Maxrss // KiB on Linux
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		for f := range strings.FieldsSeq(sc.Text()) {
			if k, v, ok := strings.Cut(f, "="); ok {
				res.out[k] = v
			}
		}
	}
	return res, nil
}

func runVerify(ctx context.Context, work string, out io.Writer) error {
	matches, err := filepath.Glob(filepath.Join(work, "edgebase-backup-*.tar.gz"))
	if err != nil || len(matches) != 1 {
		return fmt.Errorf("no single archive in %s (%v)", work, err)
	}
	s, err := archive.Verify(ctx, matches[0])
	if err != nil {
		return err
	}
	if s.Manifest != "ok" {
		return fmt.Errorf("manifest status %q", s.Manifest)
	}
	if err := s.WriteText(os.Stderr); err != nil {
		return err
	}
	fmt.Fprintf(out, "bytes=%d objects=%d rows=%d verified=%d maxrss_self_kib=%d\n", s.Bytes, s.Objects, s.Rows, s.VerifiedObjects, selfMaxRSS())
	return nil
}

func selfMaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Maxrss
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseFloat(num, 64)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("invalid size %q", s)
			}
			return int64(n * float64(u.mult)), nil
		}
	}
	return 0, fmt.Errorf("invalid size %q", s)
}

func mibString(bytes string) string {
	n, _ := strconv.ParseFloat(bytes, 64)
	return strconv.FormatFloat(n/(1<<20), 'f', 1, 64)
}
