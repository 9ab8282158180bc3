package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/edgevault/edgevault/internal/miniflare"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

type flags struct {
	addr, key, seed, state, profile, readyFile, worker string
	benchN, benchM, grants                             int
	edgebase                                           edgebasetest.Profile
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("edgebase-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:0", "listen address (loopback)")
	fs.StringVar(&f.key, "key", edgebasetest.DefaultServiceKey, "root service key")
	fs.StringVar(&f.seed, "seed", "none", "seed profile: none|demo|bench")
	fs.IntVar(&f.benchN, "bench-n", 50, "bench profile: DO blocks, posts and ledger rows")
	fs.IntVar(&f.benchM, "bench-m", 200, "bench profile: R2 objects")
	fs.StringVar(&f.state, "state", "", "state directory (default: temporary, removed on exit)")
	fs.StringVar(&f.profile, "profile", "default", "config profile: default|static|redaction (bench seeding uses the bench config; redaction adds values a 0.5 snapshot withholds)")
	edgebase := fs.String("edgebase", "0.2.8", "EdgeBase version to behave like: 0.2.8 (the real peer) or 0.5 (0.4.2-0.5.x: internal storage keys, masked content types, redacted config)")
	fs.IntVar(&f.grants, "upload-grants", 0, "also store this many upload-grant markers (__edgebase_internal__/signed-upload-grants/...)")
	fs.StringVar(&f.readyFile, "ready-file", "", "also write the EDGEBASE_URL line to this file")
	fs.StringVar(&f.worker, "worker", "edgebase", "worker (script) name; names the DO state directory")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	p, err := edgebasetest.ParseProfile(*edgebase)
	if err != nil {
		return f, fmt.Errorf("--edgebase: %w", err)
	}
	f.edgebase = p
	if f.grants < 0 {
		return f, fmt.Errorf("--upload-grants must not be negative")
	}
	switch f.seed {
	case "none", "demo", "bench":
	default:
		return f, fmt.Errorf("--seed must be none, demo or bench, not %q", f.seed)
	}
	switch f.profile {
	case "default", "static", "redaction":
	default:
		return f, fmt.Errorf("--profile must be default, static or redaction, not %q", f.profile)
	}
	host, _, err := net.SplitHostPort(f.addr)
	if err != nil {
		return f, fmt.Errorf("--addr %q: %w", f.addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return f, fmt.Errorf("--addr %q: only loopback addresses are allowed", f.addr)
	}
	if f.seed == "demo" && f.profile == "static" {
		return f, errors.New("--seed demo needs --profile default or redaction")
	}
	return f, nil
}

func (f flags) config() edgebasetest.Config {
	switch {
	case f.seed == "bench":
		return edgebasetest.BenchConfig(f.benchN)
	case f.profile == "static":
		return edgebasetest.StaticConfig()
	case f.profile == "redaction":
		return edgebasetest.RedactionConfig()
	}
	return edgebasetest.DefaultConfig()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg := f.config()
	em, err := edgebasetest.New(edgebasetest.Options{ServiceKey: f.key, Config: &cfg, StateDir: f.state, Addr: f.addr, Worker: f.worker, Profile: f.edgebase})
	if err != nil {
		return err
	}
	defer em.Close()
	start := time.Now()
	switch f.seed {
	case "demo":
		sum, err := em.SeedDemo(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "seeded demo: %d users, %d rows, instances %v, %d objects (%d bytes) in %s\n", sum.Users, sum.Rows, sum.Instances, sum.Objects, sum.Bytes, time.Since(start).Round(time.Millisecond))
	case "bench":
		if err := em.SeedBench(ctx, f.benchN, f.benchM); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "seeded bench: N=%d M=%d in %s\n", f.benchN, f.benchM, time.Since(start).Round(time.Millisecond))
	}
	if f.grants > 0 {
		if _, err := em.AddUploadGrants(ctx, f.grants); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "stored %d upload-grant markers\n", f.grants)
	}
	fmt.Fprintf(stderr, "behaving like EdgeBase %s\n", f.edgebase)
	line := "EDGEBASE_URL=" + em.URL() + "\n"
	if f.readyFile != "" {
		tmp := f.readyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(line), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, f.readyFile); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(stdout, line); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// fingerprint prints the data fingerprint of any EdgeBase deployment (the
// emulator or a real server): users, every table row, every object's bytes
// and content type. Dynamic-block instances come from --instances or a
// local state directory.
func fingerprint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edgebase-emulator fingerprint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "EdgeBase URL")
	key := fs.String("key", "", "service key")
	instances := fs.String("instances", "", "comma-separated instance DOs to include (ns:id,...)")
	state := fs.String("state-dir", "", "take the instance names from this local state directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *key == "" {
		return errors.New("fingerprint needs --url and --key")
	}
	var names []string
	if *instances != "" {
		names = strings.Split(*instances, ",")
	}
	if *state != "" {
		insts, err := miniflare.List(ctx, *state, "DatabaseDO")
		if err != nil {
			return err
		}
		for _, in := range insts {
			if strings.Contains(in.Name, ":") {
				names = append(names, in.Name)
			}
		}
	}
	fp, err := edgebasetest.TakeFingerprint(ctx, *url, edgebasetest.FingerprintOptions{ServiceKey: *key, Instances: names})
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, fp.String())
	return err
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := run
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "fingerprint" {
		cmd, args = fingerprint, args[1:]
	}
	if err := cmd(ctx, args, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "edgebase-emulator:", err)
		os.Exit(1)
	}
}
