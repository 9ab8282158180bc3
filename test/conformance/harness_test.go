package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/cli"
	"github.com/edgevault/edgevault/internal/peer"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// Environment switches (scripts/conformance.sh sets them).
const (
	envPeer     = "EDGEVAULT_PEER"     // "1": start real peers and run the full suite
	envReadOnly = "EDGEVAULT_READONLY" // "1": read-only checks against EDGEBASE_URL
)

// httpClient allows for the big replies: a 500k-row dump is ~80 MB.
var httpClient = &http.Client{Timeout: 10 * time.Minute}

// live holds every peer this process started. The testing package runs no
// cleanups when the binary is interrupted, so TestMain stops these itself
// on SIGINT/SIGTERM; scripts/conformance.sh additionally stops whatever a
// killed run left behind (by the PIDs stop.sh recorded).
var live = struct {
	sync.Mutex
	peers map[*peer.Peer]struct{}
}{peers: map[*peer.Peer]struct{}{}}

func TestMain(m *testing.M) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "conformance: %v: stopping the peers started here\n", s)
		stopLive()
		os.Exit(130)
	}()
	code := m.Run()
	stopLive()
	os.Exit(code)
}

func track(p *peer.Peer) {
	live.Lock()
	live.peers[p] = struct{}{}
	live.Unlock()
}

func untrack(p *peer.Peer) {
	live.Lock()
	delete(live.peers, p)
	live.Unlock()
}

func stopLive() {
	live.Lock()
	ps := make([]*peer.Peer, 0, len(live.peers))
	for p := range live.peers {
		ps = append(ps, p)
	}
	live.peers = map[*peer.Peer]struct{}{}
	live.Unlock()
	for _, p := range ps {
		if err := p.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
		}
	}
}

// requirePeer skips unless EDGEVAULT_PEER=1; then a peer that cannot run
// here fails the test under CI=true.
func requirePeer(t *testing.T) {
	t.Helper()
	if os.Getenv(envPeer) != "1" {
		t.Skipf("set %s=1 (make conformance) to run against a real EdgeBase peer", envPeer)
	}
	if err := peer.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s=1 under CI=true but the peer cannot run: %v", envPeer, err)
		}
		t.Skipf("peer unavailable: %v", err)
	}
}

// server is one running peer instance. Restart replaces the embedded
// *peer.Peer, so cleanups hold the server, not the peer.
type server struct {
	*peer.Peer
	name string
	opts peer.Options
}

// startServers starts one peer per profile, named by names, in parallel.
// Starts are staggered: wrangler probes for a free inspector port from
// 9231 up, and simultaneous starts can pick the same one.
func startServers(t *testing.T, names []string, profiles []peer.Profile) []*server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	base := t.TempDir()
	out := make([]*server, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 1500 * time.Millisecond)
			opts := peer.Options{StateDir: filepath.Join(base, name), Key: "conformance-" + name + "-key", Profile: profiles[i]}
			for attempt := 1; ; attempt++ {
				start := time.Now()
				p, err := peer.Start(ctx, opts)
				if err == nil {
					track(p)
					out[i] = &server{Peer: p, name: name, opts: opts}
					t.Logf("peer %s (%s profile) on %s in %s", name, profiles[i], p.URL, time.Since(start).Round(100*time.Millisecond))
					return
				}
				if attempt == 2 || ctx.Err() != nil {
					errs[i] = err
					return
				}
				t.Logf("peer %s did not start (%v); retrying once", name, err)
			}
		}()
	}
	wg.Wait()
	for _, s := range out {
		if s != nil {
			t.Cleanup(func() {
				untrack(s.Peer)
				if err := s.Stop(); err != nil {
					t.Errorf("stop peer %s: %v", s.name, err)
				}
			})
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start peer %s: %v", names[i], err)
		}
	}
	return out
}

// restart stops and starts the server on the same port and state, which
// makes every Durable Object cold.
func (s *server) restart(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	old := s.Peer
	np, err := old.Restart(ctx, s.opts)
	untrack(old)
	if err != nil {
		t.Fatalf("restart peer %s: %v", s.name, err)
	}
	track(np)
	s.Peer = np
}

// ─── REST helpers ───

// call sends one request with the service key and returns the body; any
// status other than want is an error.
func (s *server) call(ctx context.Context, method, path, contentType string, body io.Reader, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-EdgeBase-Service-Key", s.Key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return b, fmt.Errorf("%s %s: HTTP %d (want %d): %s", method, path, resp.StatusCode, want, clip(b))
	}
	return b, nil
}

func (s *server) postJSON(ctx context.Context, path string, v any, want int) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.call(ctx, http.MethodPost, path, "application/json", bytes.NewReader(b), want)
}

// upload stores one object through the public upload API (multipart, the
// part's Content-Type becomes the object's).
func (s *server) upload(ctx context.Context, bucket, key, contentType string, data []byte) error {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="blob"`)
	h.Set("Content-Type", contentType)
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write(data); err != nil {
		return err
	}
	if err := mw.WriteField("key", key); err != nil {
		return err
	}
	if err := mw.Close(); err != nil {
		return err
	}
	_, err = s.call(ctx, http.MethodPost, "/api/storage/"+url.PathEscape(bucket)+"/upload", mw.FormDataContentType(), &buf, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("upload %s/%q: %w", bucket, key, err)
	}
	return nil
}

// dumpTables returns the "tables" object of a DO dump, without the
// bookkeeping that legitimately differs between two servers holding the
// same data: Miniflare's __miniflare_do_name, and _meta's order (its
// doName row moves on every cold start).
func (s *server) dumpTables(ctx context.Context, doName string) (map[string][]map[string]any, error) {
	b, err := s.postJSON(ctx, "/admin/api/backup/dump-do", map[string]string{"doName": doName, "type": "database"}, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return tablesOf(b)
}

// dumpData is dumpTables for a D1 data namespace.
func (s *server) dumpData(ctx context.Context, namespace string) (map[string][]map[string]any, error) {
	b, err := s.postJSON(ctx, "/admin/api/backup/dump-data", map[string]string{"namespace": namespace}, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return tablesOf(b)
}

func tablesOf(b []byte) (map[string][]map[string]any, error) {
	var d struct {
		Tables      map[string][]map[string]any `json:"tables"`
		NeedsCreate bool                        `json:"needsCreate"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	if d.NeedsCreate {
		return nil, nil
	}
	delete(d.Tables, "__miniflare_do_name")
	if m := d.Tables["_meta"]; m != nil {
		slices.SortFunc(m, func(a, b map[string]any) int { return strings.Compare(fmt.Sprint(a["key"]), fmt.Sprint(b["key"])) })
	}
	return d.Tables, nil
}

// ─── running edgevault and the official CLI ───

type cliRun struct {
	code           int
	stdout, stderr string
	doc            map[string]any // the --json document on stdout
	took           time.Duration
}

// edgevault runs the CLI in this process, exactly as cmd/edgevault does,
// with an empty environment: everything it needs comes from the flags (no
// CLOUDFLARE_* from the caller's shell switching it to Edge mode).
func edgevault(ctx context.Context, t *testing.T, args ...string) cliRun {
	t.Helper()
	var out, errb bytes.Buffer
	env := cli.Env{Stdout: &out, Stderr: &errb, WorkDir: t.TempDir(), Getenv: func(string) string { return "" }}
	start := time.Now()
	code := cli.Run(ctx, args, env)
	r := cliRun{code: code, stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	_ = json.Unmarshal(out.Bytes(), &r.doc)
	t.Logf("edgevault %s: exit %d in %s", strings.Join(redactArgs(args), " "), code, r.took.Round(time.Millisecond))
	return r
}

// mustEdgevault is edgevault that fails the test on a non-zero exit.
func mustEdgevault(ctx context.Context, t *testing.T, args ...string) cliRun {
	t.Helper()
	r := edgevault(ctx, t, args...)
	if r.code != 0 {
		t.Fatalf("edgevault %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(redactArgs(args), " "), r.code, clip([]byte(r.stdout)), clip([]byte(r.stderr)))
	}
	return r
}

func redactArgs(args []string) []string {
	out := slices.Clone(args)
	for i := range out {
		if i > 0 && out[i-1] == "--service-key" {
			out[i] = "***"
		}
	}
	return out
}

// create runs edgevault backup create into a new directory and returns
// the archive's path.
func (s *server) create(ctx context.Context, t *testing.T, storage, stateDir bool, extra ...string) string {
	t.Helper()
	args := append([]string{"--json", "backup", "create", "--url", s.URL, "--service-key", s.Key, "--output", t.TempDir()}, extra...)
	if storage {
		args = append(args, "--include-storage")
	}
	if stateDir {
		args = append(args, "--state-dir", s.MiniflareRoot())
	}
	r := mustEdgevault(ctx, t, args...)
	file, _ := r.doc["file"].(string)
	if file == "" {
		t.Fatalf("backup create printed no file: %s", r.stdout)
	}
	return file
}

// restore runs edgevault backup restore --yes into s.
func (s *server) restore(ctx context.Context, t *testing.T, archive string, stateDir bool, extra ...string) cliRun {
	t.Helper()
	args := []string{"--json", "backup", "restore", "--from", archive, "--url", s.URL, "--service-key", s.Key, "--yes"}
	if stateDir {
		args = append(args, "--state-dir", s.MiniflareRoot())
	}
	return mustEdgevault(ctx, t, append(args, extra...)...)
}

// verify runs edgevault backup verify --json and returns its document.
func verify(ctx context.Context, t *testing.T, archive string) map[string]any {
	t.Helper()
	r := mustEdgevault(ctx, t, "--json", "backup", "verify", archive)
	if r.doc == nil {
		t.Fatalf("verify printed no JSON: %s", r.stdout)
	}
	return r.doc
}

var resultLine = regexp.MustCompile(`(?m)^RESULT mode=\S+ rc=(\d+) wall_s=(\S+)`)

// official runs the peer's official-backup.sh (the official CLI under
// /usr/bin/time) against s and returns its exit status and output.
func (s *server) official(ctx context.Context, t *testing.T, mode, arg string, extra ...string) (int, string) {
	t.Helper()
	dir, err := peer.Dir()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{filepath.Join(dir, "official-backup.sh"), mode, filepath.Join(s.StateDir, "project"), s.URL, s.Key, arg}, extra...)
	cmd := exec.CommandContext(ctx, "bash", args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDFLARE_ACCOUNT_ID=") && !strings.HasPrefix(kv, "CLOUDFLARE_API_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, _ := cmd.CombinedOutput()
	m := resultLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("official-backup.sh %s printed no RESULT line:\n%s", mode, clip(out))
	}
	rc, _ := strconv.Atoi(string(m[1]))
	t.Logf("official backup %s %s: exit %d in %s s", mode, strings.Join(extra, " "), rc, m[2])
	return rc, string(out)
}

// officialCreate runs the official backup create and returns the file.
func (s *server) officialCreate(ctx context.Context, t *testing.T, storage bool) string {
	t.Helper()
	dir := t.TempDir()
	var extra []string
	if storage {
		extra = append(extra, "--include-storage")
	}
	rc, out := s.official(ctx, t, "create", dir, extra...)
	if rc != 0 {
		t.Fatalf("official backup create failed (exit %d):\n%s", rc, clip([]byte(out)))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "edgebase-backup-*"))
	if len(files) != 1 {
		t.Fatalf("official backup create left %v in %s", files, dir)
	}
	return files[0]
}

// officialRestore runs the official backup restore of archive into s.
func (s *server) officialRestore(ctx context.Context, t *testing.T, archive string) {
	t.Helper()
	if rc, out := s.official(ctx, t, "restore", archive); rc != 0 {
		t.Fatalf("official backup restore of %s failed (exit %d):\n%s", filepath.Base(archive), rc, clip([]byte(out)))
	}
}

// ─── fingerprints ───

func (s *server) fingerprint(ctx context.Context, t *testing.T, instances []string) *edgebasetest.Fingerprint {
	t.Helper()
	start := time.Now()
	fp, err := edgebasetest.TakeFingerprint(ctx, s.URL, edgebasetest.FingerprintOptions{
		ServiceKey: s.Key, Client: httpClient, Instances: instances, Concurrency: 8,
	})
	if err != nil {
		t.Fatalf("fingerprint %s: %v", s.name, err)
	}
	t.Logf("fingerprint of %s: %d lines in %s", s.name, len(fp.Lines), time.Since(start).Round(time.Millisecond))
	return fp
}

// instanceNames lists the dynamic DB instances ("ns:id") that hold data
// in a peer's Miniflare state.
func (s *server) instanceNames(ctx context.Context, t *testing.T) []string {
	t.Helper()
	names, err := peer.ListDONames(ctx, s.MiniflareRoot(), "DatabaseDO")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.Contains(n.Name, ":") {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func isStorageLine(l string) bool {
	return strings.HasPrefix(l, "storage ") || strings.HasPrefix(l, "object ")
}

// compose takes the users and table lines of db and the storage lines of
// st: what a restore without storage must leave (R2 untouched).
func compose(db, st *edgebasetest.Fingerprint) *edgebasetest.Fingerprint {
	out := &edgebasetest.Fingerprint{}
	for _, l := range db.Lines {
		if !isStorageLine(l) {
			out.Lines = append(out.Lines, l)
		}
	}
	for _, l := range st.Lines {
		if isStorageLine(l) {
			out.Lines = append(out.Lines, l)
		}
	}
	return out
}

var objectCT = regexp.MustCompile(`^(object .* \d+ [0-9a-f]{64}) (".*")$`)

// octetStream replaces every object's content type with
// application/octet-stream: what anything restored from an official
// archive holds, because the official create records that type for every
// object (it takes types from the storage list, which reports no others).
func octetStream(fp *edgebasetest.Fingerprint) *edgebasetest.Fingerprint {
	out := &edgebasetest.Fingerprint{Lines: slices.Clone(fp.Lines)}
	for i, l := range out.Lines {
		out.Lines[i] = objectCT.ReplaceAllString(l, `$1 "application/octet-stream"`)
	}
	return out
}

func assertSameFP(t *testing.T, what string, want, got *edgebasetest.Fingerprint) {
	t.Helper()
	if d := edgebasetest.Diff(want, got); d != "" {
		t.Errorf("%s: fingerprints differ (- expected, + target):\n%s", what, d)
	}
}

func clip(b []byte) string {
	const max = 3000
	if len(b) > max {
		return string(b[:max]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

func number(doc map[string]any, key string) int64 {
	switch v := doc[key].(type) {
	case float64:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	}
	return -1
}
