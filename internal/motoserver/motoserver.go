package motoserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/awsconfig"
)

// Region is the region every client built by Config uses.
const Region = "us-east-1"

const readyTimeout = 30 * time.Second

// errMissing marks a missing moto_server binary, which skips tests outside
// CI instead of failing them.
var errMissing = errors.New("moto_server not found on PATH and $MOTO_SERVER unset (pip install 'moto[server]')")

// server is one running moto_server process behind its proxy.
type server struct {
	endpoint string // the proxy's
	moto     string // moto_server's own
	cmd      *exec.Cmd
	exited   chan struct{}
	log      *tailBuffer
	proxy    *http.Server
}

// shared holds the server of a test binary whose TestMain calls Main. It is
// the package's only state and exists because a server outlives any single
// test.
var shared struct {
	mu      sync.Mutex
	enabled bool
	srv     *server
	err     error
}

// Main runs the tests of a binary with one shared moto_server, started by
// the first Start and stopped after the last test:
//
//	func TestMain(m *testing.M) { motoserver.Main(m) }
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	if shared.srv != nil {
		shared.srv.stop()
		shared.srv = nil
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// Start returns the base URL (http://127.0.0.1:port) of a ready
// moto_server. Without the binary it fails the test when CI=true and skips
// it otherwise.
func Start(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	if shared.enabled {
		if shared.srv == nil && shared.err == nil {
			shared.srv, shared.err = start()
		}
		srv, err := shared.srv, shared.err
		shared.mu.Unlock()
		if err != nil {
			fail(t, err)
		}
		return srv.endpoint
	}
	shared.mu.Unlock()
	srv, err := start()
	if err != nil {
		fail(t, err)
	}
	t.Cleanup(srv.stop)
	return srv.endpoint
}

// Config returns an awsconfig.Config pointing every client at the moto
// server of Start, with dummy static credentials and path-style S3.
func Config(t testing.TB) awsconfig.Config {
	t.Helper()
	return awsconfig.Config{
		Region:          Region,
		AccessKeyID:     "testing",
		SecretAccessKey: "testing",
		Endpoint:        Start(t),
		S3PathStyle:     true,
	}
}

// Clients loads Config(t) into service clients.
func Clients(t testing.TB) *awsconfig.Clients {
	t.Helper()
	c, err := awsconfig.Load(context.Background(), Config(t))
	if err != nil {
		t.Fatalf("motoserver: %v", err)
	}
	return c
}

// Name returns a fresh lower-case name (bucket, queue, secret) that no
// other test on the shared server uses.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("motoserver: name: %v", err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

func fail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errMissing) && os.Getenv("CI") != "true" {
		t.Skipf("motoserver: %v", err)
	}
	t.Fatalf("motoserver: %v", err)
}

func binary() (string, error) {
	if p := os.Getenv("MOTO_SERVER"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("moto_server")
	if err != nil {
		return "", errMissing
	}
	return p, nil
}

// start retries on a new port when another process grabbed the free port
// between probing and moto binding it.
func start() (*server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		srv, err := launch(bin, port)
		if err == nil {
			return srv, nil
		}
		last = err
	}
	return nil, last
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func launch(bin string, port int) (*server, error) {
	log := &tailBuffer{max: 64 << 10}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout = log
	cmd.Stderr = log
	// Dummy credentials keep moto from looking for real ones.
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_DEFAULT_REGION="+Region)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	srv := &server{
		moto:   "http://127.0.0.1:" + strconv.Itoa(port),
		cmd:    cmd,
		exited: make(chan struct{}),
		log:    log,
	}
	go func() {
		_ = cmd.Wait()
		close(srv.exited)
	}()
	if err := srv.waitReady(); err != nil {
		srv.stop()
		return nil, fmt.Errorf("%w; output:\n%s", err, log.String())
	}
	if err := srv.startProxy(); err != nil {
		srv.stop()
		return nil, err
	}
	return srv, nil
}

// startProxy puts a reverse proxy in front of moto that serialises
// conditional writes (requests with If-None-Match or If-Match). moto checks
// the condition and then writes without a lock, so two concurrent
// create-if-absent PUTs can both succeed; S3 lets exactly one win and
// answers the others 412 (or 409), and the blob suite and the pipeline's
// fences rely on that. Every other request passes through unchanged.
func (s *server) startProxy() error {
	target, err := url.Parse(s.moto)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("motoserver: proxy: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var conditional sync.Mutex
	s.proxy = &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPut || r.Method == http.MethodPost) && (r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Match") != "") {
			conditional.Lock()
			defer conditional.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = s.proxy.Serve(ln) }()
	s.endpoint = "http://" + ln.Addr().String()
	return nil
}

func (s *server) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return errors.New("moto_server exited before it was ready")
		default:
		}
		resp, err := client.Get(s.moto + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("moto_server not ready after %s", readyTimeout)
}

// stop closes the proxy and kills the process we started, by its PID, and
// reaps it.
func (s *server) stop() {
	if s.proxy != nil {
		_ = s.proxy.Close()
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// tailBuffer keeps the last max bytes of the server's output for error
// messages; moto logs every request, so the whole log would grow unbounded.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}
