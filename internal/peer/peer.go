package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// ErrUnavailable marks an environment in which the peer cannot run (no
// node, no peer scripts or tarballs); callers skip or fail on it.
var ErrUnavailable = errors.New("peer: unavailable")

// Dir returns the directory holding the peer scripts (install.sh,
// start.sh, ...): $EDGEBASE_PEER_DIR, else a "shared/peer" directory next
// to the working directory or one of its parents.
func Dir() (string, error) {
	if d := os.Getenv("EDGEBASE_PEER_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "start.sh")); err != nil {
			return "", fmt.Errorf("%w: EDGEBASE_PEER_DIR=%s has no start.sh", ErrUnavailable, d)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(filepath.Dir(d), "shared", "peer")
		if _, err := os.Stat(filepath.Join(cand, "start.sh")); err == nil {
			return cand, nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	return "", fmt.Errorf("%w: peer scripts not found; set EDGEBASE_PEER_DIR to the directory holding install.sh and start.sh", ErrUnavailable)
}

var nodeVersion = regexp.MustCompile(`^v(\d+)\.(\d+)`)

// Available reports why the peer cannot run here (nil when it can): the
// peer dir with its scripts and tarballs, node >= 20.19, curl and python3
// (used by the scripts).
func Available() error {
	dir, err := Dir()
	if err != nil {
		return err
	}
	for _, f := range []string{"install.sh", "start.sh", "stop.sh", "seed.sh"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("%w: %s missing in %s", ErrUnavailable, f, dir)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "tarballs", "edge-base-cli-*.tgz")); len(m) == 0 && os.Getenv("EDGEBASE_TARBALL_DIR") == "" {
		return fmt.Errorf("%w: no EdgeBase tarballs in %s/tarballs", ErrUnavailable, dir)
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return fmt.Errorf("%w: node not found (need node >= 20.19): %v", ErrUnavailable, err)
	}
	m := nodeVersion.FindStringSubmatch(strings.TrimSpace(string(out)))
	if m == nil {
		return fmt.Errorf("%w: cannot parse node version %q", ErrUnavailable, out)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < 20 || (major == 20 && minor < 19) {
		return fmt.Errorf("%w: node %s is too old (need >= 20.19)", ErrUnavailable, strings.TrimSpace(string(out)))
	}
	for _, tool := range []string{"curl", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found", ErrUnavailable, tool)
		}
	}
	return nil
}

// DefaultAppDir is where the peer is installed unless told otherwise:
// $EDGEBASE_PEER_APP, else <tmp>/edgevault-peer-app (shared by test runs,
// so the ~10 s npm install happens once).
func DefaultAppDir() string {
	if d := os.Getenv("EDGEBASE_PEER_APP"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "edgevault-peer-app")
}

var installMu sync.Mutex

// Install installs the peer into appDir unless it is already there. A lock
// file serializes concurrent installs into the same dir across processes.
func Install(ctx context.Context, appDir string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	dir, err := Dir()
	if err != nil {
		return err
	}
	installMu.Lock()
	defer installMu.Unlock()
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		return fmt.Errorf("peer: install %s: %w", appDir, err)
	}
	lock, err := os.OpenFile(filepath.Join(appDir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("peer: install %s: %w", appDir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("peer: install lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if installed(appDir) {
		return nil
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, "install.sh"), appDir)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = io.MultiWriter(&out, log)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("peer: install.sh %s: %w\n%s", appDir, err, tail(out.String(), 20))
	}
	if !installed(appDir) {
		return fmt.Errorf("peer: install.sh finished but %s has no EdgeBase CLI", appDir)
	}
	return nil
}

func installed(appDir string) bool {
	for _, f := range []string{
		"node_modules/@edge-base/cli/dist/index.js", "edgebase.config.ts", "edgebase.static.config.ts", "config/rate-limits.ts",
	} {
		if _, err := os.Stat(filepath.Join(appDir, f)); err != nil {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Profile selects the peer's config file.
type Profile string

const (
	ProfileDefault  Profile = "default"  // shared (D1), ledger (DO), workspace (instance DOs)
	ProfileStatic   Profile = "static"   // the same without workspace
	ProfileBench    Profile = "bench"    // static plus BenchN DO blocks (bench-config.sh)
	ProfileContract Profile = "contract" // default plus an FTS5 DO block (edgebasetest.ContractConfig)
)

// Options configure Start.
type Options struct {
	AppDir   string  // default DefaultAppDir(); installed on demand
	StateDir string  // required: everything of this instance lives here
	Key      string  // root service key; default edgebasetest.DefaultServiceKey
	Profile  Profile // default ProfileDefault
	BenchN   int     // ProfileBench: number of doNNN blocks
	// ConfigFile overrides Profile with an edgebase.config.ts of your own.
	ConfigFile string
	Port       int           // 0: a free loopback port whose +1 is free too
	Timeout    time.Duration // startup timeout, default 120 s
	Log        io.Writer     // script output
}

// Peer is one running EdgeBase dev server.
type Peer struct {
	URL      string
	Key      string
	Port     int
	StateDir string
	AppDir   string
	Worker   string // worker (script) name: DO files live in <worker>-DatabaseDO
	dir      string
	log      io.Writer
	stopOnce sync.Once
	stopErr  error
}

// MiniflareRoot is the Miniflare persistence root (v3/do, v3/d1, ...).
func (p *Peer) MiniflareRoot() string { return filepath.Join(p.StateDir, "miniflare") }

// Start installs the peer if needed and starts one instance. Stop it with
// Stop (by the PIDs stop.sh recorded).
func Start(ctx context.Context, opts Options) (*Peer, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, _ := Dir()
	if opts.AppDir == "" {
		opts.AppDir = DefaultAppDir()
	}
	if opts.StateDir == "" {
		return nil, errors.New("peer: start: StateDir is required")
	}
	if opts.Key == "" {
		opts.Key = edgebasetest.DefaultServiceKey
	}
	if opts.Timeout == 0 {
		opts.Timeout = 120 * time.Second
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	if err := Install(ctx, opts.AppDir, log); err != nil {
		return nil, err
	}
	appDir, err := filepath.Abs(opts.AppDir)
	if err != nil {
		return nil, fmt.Errorf("peer: start: %w", err)
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("peer: start: %w", err)
	}
	state, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("peer: start: %w", err)
	}
	configFile, err := configFor(dir, appDir, state, opts)
	if err != nil {
		return nil, err
	}
	port := opts.Port
	if port == 0 {
		if port, err = FreePortPair(); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, "start.sh"), appDir, strconv.Itoa(port), state, opts.Key, strconv.Itoa(int(opts.Timeout/time.Second)))
	cmd.Env = os.Environ()
	if configFile != "" {
		cmd.Env = append(cmd.Env, "EDGEBASE_PEER_CONFIG="+configFile)
	}
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = io.MultiWriter(&out, log)
	p := &Peer{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Key: opts.Key, Port: port, StateDir: state, AppDir: appDir, Worker: workerName(appDir), dir: dir, log: log}
	if err := cmd.Run(); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("peer: start.sh (port %d): %w\n%s", port, err, tail(out.String(), 25))
	}
	return p, nil
}

// Stop stops the instance (stop.sh: SIGTERM to its process group, then
// SIGKILL to recorded PIDs). Safe to call more than once.
func (p *Peer) Stop() error {
	p.stopOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(p.dir, "stop.sh"), p.StateDir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			p.stopErr = fmt.Errorf("peer: stop.sh %s: %w\n%s", p.StateDir, err, out.String())
		}
	})
	return p.stopErr
}

// Restart stops and starts the same instance (same port, state and
// config), which makes every Durable Object cold.
func (p *Peer) Restart(ctx context.Context, opts Options) (*Peer, error) {
	if err := p.Stop(); err != nil {
		return nil, err
	}
	opts.AppDir, opts.StateDir, opts.Port, opts.Key = p.AppDir, p.StateDir, p.Port, p.Key
	if opts.Log == nil {
		opts.Log = p.log
	}
	var np *Peer
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if np, err = Start(ctx, opts); err == nil {
			return np, nil
		}
		time.Sleep(time.Second) // the old listener may linger briefly
	}
	return nil, err
}

// workerName is the package.json name install.sh writes (wrangler's script
// name), from which the DO directory and ids derive.
func workerName(appDir string) string {
	b, err := os.ReadFile(filepath.Join(appDir, "package.json"))
	if err == nil {
		var pkg struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(b, &pkg) == nil && pkg.Name != "" {
			return pkg.Name
		}
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 32
		}
		return '-'
	}, filepath.Base(appDir))
}

func configFor(dir, appDir, state string, opts Options) (string, error) {
	if opts.ConfigFile != "" {
		return filepath.Abs(opts.ConfigFile)
	}
	switch opts.Profile {
	case "", ProfileDefault:
		return "", nil
	case ProfileStatic:
		return filepath.Join(appDir, "edgebase.static.config.ts"), nil
	case ProfileBench:
		if opts.BenchN <= 0 {
			return "", errors.New("peer: bench profile needs BenchN > 0")
		}
		out, err := exec.Command("bash", filepath.Join(dir, "bench-config.sh"), strconv.Itoa(opts.BenchN)).Output()
		if err != nil {
			return "", fmt.Errorf("peer: bench-config.sh: %w", err)
		}
		return writeConfig(state, "edgebase.bench.config.ts", string(out))
	case ProfileContract:
		return writeConfig(state, "edgebase.contract.config.ts", ConfigTS(edgebasetest.ContractConfig()))
	}
	return "", fmt.Errorf("peer: unknown profile %q", opts.Profile)
}

func writeConfig(state, name, text string) (string, error) {
	p := filepath.Join(state, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("peer: write config: %w", err)
	}
	return p, nil
}

// ConfigTS renders an emulator config as an edgebase.config.ts for the
// peer: blocks with access rules get allow-all canCreate/access functions,
// buckets allow-all read/write/delete, rate limits come from the scaffolded
// config/rate-limits (raised by install.sh).
func ConfigTS(cfg edgebasetest.Config) string {
	raw, _ := cfg.MarshalJSON()
	return `import { defineConfig } from '@edge-base/shared';
import { rateLimiting } from './config/rate-limits';

const allow = () => true;
const raw = ` + string(raw) + `;
for (const block of Object.values(raw.databases ?? {})) {
  if (block.access) block.access = { canCreate: allow, access: allow };
}
if (raw.storage?.buckets) {
  for (const name of Object.keys(raw.storage.buckets)) {
    raw.storage.buckets[name] = { access: { read: allow, write: allow, delete: allow } };
  }
}
if ('rateLimiting' in raw) raw.rateLimiting = rateLimiting;

export default defineConfig(raw);
`
}

// FreePortPair returns a loopback port p such that p and p+1 are free at
// the time of the call (the peer also binds PORT+1).
func FreePortPair() (int, error) {
	for attempt := 0; attempt < 50; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("peer: free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return port, nil
	}
	return 0, errors.New("peer: no free port pair found")
}

// Seed runs seed.sh against the instance.
func (p *Peer) Seed(ctx context.Context, users, dos, files int) error {
	return p.script(ctx, "seed.sh", p.URL, p.Key, strconv.Itoa(users), strconv.Itoa(dos), strconv.Itoa(files))
}

// SeedBench runs seed-bench.sh N M against an instance started with
// ProfileBench and BenchN = n.
func (p *Peer) SeedBench(ctx context.Context, n, m int) error {
	return p.script(ctx, "seed-bench.sh", p.URL, p.Key, strconv.Itoa(n), strconv.Itoa(m))
}

func (p *Peer) script(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(p.dir, name)}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, p.log)
	cmd.Stderr = io.MultiWriter(&out, p.log)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("peer: %s: %w\n%s", name, err, tail(out.String(), 20))
	}
	return nil
}

// FingerprintScript runs the peer's fingerprint.sh (nDOs instance DOs
// workspace:ws-1..n) and returns its lines.
func (p *Peer) FingerprintScript(ctx context.Context, nDOs int) ([]string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(p.dir, "fingerprint.sh"), p.URL, p.Key, strconv.Itoa(nDOs))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("peer: fingerprint.sh: %w\n%s", err, stderr.String())
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}
