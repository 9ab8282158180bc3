package main

import (
	"context"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// counter times the requests one HTTP server answers, by operation: the
// emulator's admin API by endpoint, its S3 view by S3 operation. The time
// is the server's (handler entered to handler returned, the body written),
// so on loopback it is what the client waits for, less the connection.
type counter struct {
	name  string
	label func(*http.Request) string
	next  http.Handler

	mu  sync.Mutex
	ops map[string]*opStats
}

// opStats is one operation's tally.
type opStats struct {
	Op     string
	Count  int64
	Errors int64 // replies with status >= 400
	Bytes  int64 // reply bodies
	Total  time.Duration
	Max    time.Duration
}

func newCounter(name string, next http.Handler, label func(*http.Request) string) *counter {
	return &counter{name: name, label: label, next: next, ops: map[string]*opStats{}}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Flush keeps streamed replies streaming.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := c.label(r)
	sw := &statusWriter{ResponseWriter: w}
	start := time.Now()
	c.next.ServeHTTP(sw, r)
	d := time.Since(start)
	c.mu.Lock()
	s := c.ops[op]
	if s == nil {
		s = &opStats{Op: op}
		c.ops[op] = s
	}
	s.Count++
	s.Bytes += sw.n
	s.Total += d
	s.Max = max(s.Max, d)
	if sw.status >= 400 {
		s.Errors++
	}
	c.mu.Unlock()
}

// reset forgets every tally (between the floor and the backup).
func (c *counter) reset() {
	c.mu.Lock()
	c.ops = map[string]*opStats{}
	c.mu.Unlock()
}

// snapshot returns the tallies, busiest first.
func (c *counter) snapshot() []opStats {
	c.mu.Lock()
	out := make([]opStats, 0, len(c.ops))
	for _, s := range c.ops {
		out = append(out, *s)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Op < out[j].Op
	})
	return out
}

// adminOp names an admin API request as the emulator's request log does:
// the path below /admin/api/backup/, with dump-storage's action.
func adminOp(r *http.Request) string {
	p := r.URL.Path
	sub, ok := strings.CutPrefix(p, "/admin/api/backup/")
	if !ok {
		return "other " + r.Method
	}
	if strings.HasPrefix(sub, "export/") {
		return "export"
	}
	if sub == "dump-storage" || sub == "restore-storage" {
		return sub + ":" + r.URL.Query().Get("action")
	}
	return sub
}

// s3Op names an S3 request by its operation (path-style addressing).
func s3Op(r *http.Request) string {
	path := strings.Trim(r.URL.Path, "/")
	_, key, hasKey := strings.Cut(path, "/")
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && !hasKey && q.Get("list-type") == "2":
		return "ListObjectsV2"
	case r.Method == http.MethodGet && !hasKey:
		return "ListObjects"
	case r.Method == http.MethodGet && key != "":
		return "GetObject"
	case r.Method == http.MethodHead && key != "":
		return "HeadObject"
	case r.Method == http.MethodPut && key != "":
		return "PutObject"
	case r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
	}
	return r.Method + " other"
}

// server is one loopback HTTP server.
type server struct {
	url string
	srv *http.Server
}

func serve(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{url: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// env is the emulated deployment: the emulator (its admin API served
// through a counter on a listener of our own) and its R2 bucket's S3 view.
type env struct {
	emu         *edgebasetest.Emulator
	admin, s3   *server
	adminC, s3C *counter
}

func startEnv(stateDir string) (*env, error) {
	cfg := edgebasetest.DefaultConfig()
	emu, err := edgebasetest.New(edgebasetest.Options{Config: &cfg, StateDir: stateDir})
	if err != nil {
		return nil, err
	}
	e := &env{emu: emu}
	e.adminC = newCounter("admin API", emu, adminOp)
	if e.admin, err = serve(e.adminC); err != nil {
		_ = emu.Close()
		return nil, err
	}
	h, _, _ := emu.S3()
	e.s3C = newCounter("S3", h, s3Op)
	if e.s3, err = serve(e.s3C); err != nil {
		e.admin.close()
		_ = emu.Close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() error {
	e.s3.close()
	e.admin.close()
	return e.emu.Close()
}
