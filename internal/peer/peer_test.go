package peer

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

func TestListDONamesReadsEmulatorState(t *testing.T) {
	e := edgebasetest.NewTest(t, edgebasetest.Options{Worker: "eb-app"})
	ctx := context.Background()
	if _, err := e.SeedDemo(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := ListDONames(ctx, e.StateDir(), "DatabaseDO")
	if err != nil {
		t.Fatal(err)
	}
	insts, err := e.DOInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(insts) || len(names) != 5 {
		t.Fatalf("names %v, instances %d", names, len(insts))
	}
	for _, n := range names {
		if n.HexID != e.DOID(n.Name) {
			t.Errorf("%s: hex %s", n.Name, n.HexID)
		}
	}
	if got, _ := ListDONames(ctx, t.TempDir(), "DatabaseDO"); len(got) != 0 {
		t.Fatalf("empty root: %v", got)
	}
}

func TestConfigTS(t *testing.T) {
	ts := ConfigTS(edgebasetest.ContractConfig())
	for _, want := range []string{"defineConfig(raw)", `"workspace":{"instance":true,"access":{}`, "canCreate: allow", `"notes":{"schema"`, "jb_backup_contract-secret-1", "raw.rateLimiting = rateLimiting"} {
		if !strings.Contains(ts, want) {
			t.Errorf("config lacks %q", want)
		}
	}
}

func TestFreePortPair(t *testing.T) {
	p, err := FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{p, p + 1} {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d not free: %v", port, err)
		}
		l.Close()
	}
}

func TestUnavailableIsExplained(t *testing.T) {
	t.Setenv("EDGEBASE_PEER_DIR", t.TempDir())
	err := Available()
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "start.sh") {
		t.Fatalf("Available() = %v", err)
	}
	if _, err := Start(context.Background(), Options{StateDir: t.TempDir()}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start() = %v", err)
	}
}

func TestWorkerName(t *testing.T) {
	if got := workerName("/nonexistent/My App_1"); got != "my-app-1" {
		t.Fatalf("workerName = %q", got)
	}
}

// requirePeer skips unless EDGEVAULT_PEER=1; under CI=true an unavailable
// peer is a failure.
func requirePeer(t *testing.T) {
	t.Helper()
	if os.Getenv("EDGEVAULT_PEER") != "1" {
		t.Skip("set EDGEVAULT_PEER=1 to run against a real EdgeBase peer")
	}
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("peer unavailable under CI: %v", err)
		}
		t.Skipf("peer unavailable: %v", err)
	}
}

func startPeer(t *testing.T, opts Options) *Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts.StateDir = t.TempDir()
	p, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestPeerLifecycle(t *testing.T) {
	requirePeer(t)
	p := startPeer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Seed(ctx, 3, 3, 4); err != nil {
		t.Fatal(err)
	}
	names, err := ListDONames(ctx, p.MiniflareRoot(), "DatabaseDO")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range names {
		got[n.Name] = n.HexID
	}
	for _, want := range []string{"ledger", "workspace:ws-1", "workspace:ws-2", "workspace:ws-3"} {
		if got[want] != edgebasetest.DOID(p.Worker, want) {
			t.Errorf("DO %s: hex %q, want %s (all: %v)", want, got[want], edgebasetest.DOID(p.Worker, want), names)
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.StateDir + "/peer.pid"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("peer.pid left after Stop: %v", err)
	}
}

// The bench profile and seed-bench.sh on the peer hold the same data as
// BenchConfig + SeedBench on the emulator.
func TestPeerBenchMatchesEmulator(t *testing.T) {
	requirePeer(t)
	const n, m = 3, 30
	p := startPeer(t, Options{Profile: ProfileBench, BenchN: n})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := p.SeedBench(ctx, n, m); err != nil {
		t.Fatal(err)
	}
	cfg := edgebasetest.BenchConfig(n)
	e := edgebasetest.NewTest(t, edgebasetest.Options{Config: &cfg, ServiceKey: p.Key})
	if err := e.SeedBench(ctx, n, m); err != nil {
		t.Fatal(err)
	}
	opts := edgebasetest.FingerprintOptions{ServiceKey: p.Key, IgnoreColumns: []string{"id", "createdAt", "updatedAt"}}
	fp, err := edgebasetest.TakeFingerprint(ctx, p.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	fe, err := edgebasetest.TakeFingerprint(ctx, e.URL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := edgebasetest.Diff(fp, fe); d != "" {
		t.Fatalf("peer (-) and emulator (+) differ:\n%s", d)
	}
	if len(fp.Lines) != 1+2+1+n+2+m { // users, posts+tags, entries, n item tables, 2 storage summaries, m objects
		t.Fatalf("fingerprint has %d lines:\n%s", len(fp.Lines), fp)
	}
}
