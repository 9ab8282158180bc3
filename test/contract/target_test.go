package contract

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/peer"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

const rootKey = "contract-root-key"

// target is one EdgeBase server under test.
type target struct {
	name   string
	url    string
	worker string
	// profile is the server generation: the peer is 0.2.8; the emulator
	// runs as either.
	profile edgebasetest.Profile
	// em is the emulator behind an emulator target (nil for the peer).
	em *edgebasetest.Emulator
	// grants are upload-grant marker keys stored on the target, for
	// {{grant:N}} in request paths.
	grants []string
	// restart makes every DO cold (dev-server restart).
	restart func(t *testing.T)
	// fresh starts a never-used server of the same kind.
	fresh  func(t *testing.T) *target
	isPeer bool
	// scriptFingerprint runs the peer's fingerprint.sh (peer only).
	scriptFingerprint func(ctx context.Context, nDOs int) ([]string, error)
}

// emulatorTarget is the emulator as the 0.2.8 peer.
func emulatorTarget(t *testing.T) *target { return emulatorProfileTarget(t, edgebasetest.Profile028) }

// newerEmulatorTarget is the emulator as a 0.4.x-0.5.x server.
func newerEmulatorTarget(t *testing.T) *target {
	return emulatorProfileTarget(t, edgebasetest.Profile05)
}

func emulatorProfileTarget(t *testing.T, p edgebasetest.Profile) *target {
	cfg := edgebasetest.ContractConfig()
	em := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: rootKey, Config: &cfg, Profile: p})
	name := "emulator"
	if p != edgebasetest.Profile028 {
		name += "-" + p.String()
	}
	tg := &target{name: name, url: em.URL(), worker: em.Worker(), profile: p, em: em}
	tg.restart = func(*testing.T) { em.Restart() }
	tg.fresh = func(t *testing.T) *target { return emulatorProfileTarget(t, p) }
	return tg
}

// peerWanted reports whether the real-server variant should run; under
// CI=true an unavailable peer is then a failure.
func peerWanted(t *testing.T) bool {
	if os.Getenv("EDGEVAULT_PEER") != "1" {
		return false
	}
	if err := peer.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("EDGEVAULT_PEER=1 under CI but the peer cannot run: %v", err)
		}
		t.Skipf("peer unavailable: %v", err)
	}
	return true
}

func peerTarget(t *testing.T) *target {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts := peer.Options{StateDir: t.TempDir(), Key: rootKey, Profile: peer.ProfileContract}
	p, err := peer.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start peer: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop peer: %v", err)
		}
	})
	tg := &target{name: "peer", url: p.URL, worker: p.Worker, isPeer: true}
	tg.scriptFingerprint = func(ctx context.Context, n int) ([]string, error) { return p.FingerprintScript(ctx, n) }
	tg.scriptFingerprint = func(ctx context.Context, n int) ([]string, error) { return p.FingerprintScript(ctx, n) }
	tg.restart = func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		np, err := p.Restart(ctx, opts)
		if err != nil {
			t.Fatalf("restart peer: %v", err)
		}
		p = np
		t.Cleanup(func() { _ = np.Stop() })
	}
	tg.fresh = peerTarget
	return tg
}

// ─── requests ───

type req struct {
	method string
	path   string
	body   string
	ct     string // default application/json when body is set; "-" for none
	key    string // default rootKey; "-" for no header; "<empty>" for an empty one
	header map[string]string
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{
	Timeout:       60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (tg *target) expand(s string) string {
	s = grantRef.ReplaceAllStringFunc(s, func(m string) string {
		i, _ := strconv.Atoi(grantRef.FindStringSubmatch(m)[1])
		if i >= len(tg.grants) {
			return m
		}
		return url.QueryEscape(tg.grants[i])
	})
	return hexRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := hexRef.FindStringSubmatch(m)
		class := "DatabaseDO"
		if sub[1] == "authhex" {
			class = "AuthDO"
		}
		return doID(tg.worker, class, sub[2])
	})
}

var (
	hexRef   = regexp.MustCompile(`\{\{(hex|authhex):([^}]*)\}\}`)
	grantRef = regexp.MustCompile(`\{\{grant:(\d+)\}\}`)
)

func doID(worker, class, name string) string { return edgebasetest.ObjectID(worker, class, name) }

func (tg *target) do(t *testing.T, r req) resp {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(tg.expand(r.body))
	}
	hr, err := http.NewRequest(r.method, tg.url+tg.expand(r.path), body)
	if err != nil {
		t.Fatal(err)
	}
	switch r.key {
	case "":
		hr.Header.Set("X-EdgeBase-Service-Key", rootKey)
	case "-":
	case "<empty>":
		hr.Header["X-Edgebase-Service-Key"] = []string{""}
	default:
		hr.Header.Set("X-EdgeBase-Service-Key", r.key)
	}
	switch {
	case r.ct == "-":
	case r.ct != "":
		hr.Header.Set("Content-Type", r.ct)
	case r.body != "":
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := client.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", r.method, r.path, err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// ─── normalization and goldens ───

var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`), "<ts>"},
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`), "<id>"},
	{regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`), "<jwt>"},
	{regexp.MustCompile(`pbkdf2:sha256:\d+:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+`), "<pwhash>"},
	{regexp.MustCompile(`"userAgent":"[^"]*"`), `"userAgent":"<ua>"`},
}

func normalize(b []byte) string {
	s := string(b)
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	return s
}

var goldenHeaders = []string{"Content-Type", "Content-Disposition", "X-R2-Key", "Location", "ETag"}

func render(r resp) string {
	var sb strings.Builder
	sb.WriteString("status: " + strconv.Itoa(r.status) + "\n")
	var hs []string
	for _, h := range goldenHeaders {
		if v := r.header.Get(h); v != "" {
			hs = append(hs, strings.ToLower(h)+": "+v)
		}
	}
	sort.Strings(hs)
	for _, h := range hs {
		sb.WriteString(h + "\n")
	}
	sb.WriteString("\n")
	sb.WriteString(normalize(r.body))
	sb.WriteString("\n")
	return sb.String()
}

func goldenPath(name string) string { return "testdata/" + name + ".golden" }

// checkGolden compares the rendered response with testdata/<name>.golden.
// EDGEVAULT_CONTRACT_UPDATE=1 rewrites the golden, but only from the real
// server, which is the reference.
func checkGolden(t *testing.T, tg *target, name string, r resp) {
	t.Helper()
	got := render(r)
	if os.Getenv("EDGEVAULT_CONTRACT_UPDATE") == "1" && tg.isPeer {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath(name), []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(goldenPath(name))
	if err != nil {
		t.Errorf("%s: no golden (%v); got:\n%s", name, err, got)
		return
	}
	if got != string(want) {
		t.Errorf("%s: response differs from the peer's\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}
