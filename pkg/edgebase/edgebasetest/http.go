package edgebasetest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// request is one incoming request with its body read once.
type request struct {
	r    *http.Request
	body []byte

	parsed    any
	parseErr  error
	didParse  bool
	endpoint  string
	adminPath string // path below /admin/api/backup
}

var jsonCT = regexp.MustCompile(`^application/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9\-]+=([^;]+))*$`)

// isJSON mirrors Hono's content-type test for JSON body validation.
func (q *request) isJSON() bool { return jsonCT.MatchString(q.r.Header.Get("Content-Type")) }

// json parses the body as JSON.parse would (cached).
func (q *request) json() (any, error) {
	if !q.didParse {
		q.didParse = true
		q.parsed, q.parseErr = parseJS(q.body)
	}
	return q.parsed, q.parseErr
}

// response is what a handler produces; body or stream.
type response struct {
	status int
	header http.Header
	body   []byte
	stream io.ReadCloser
	length int64 // Content-Length for stream
}

func jsonResponse(status int, v any) *response {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return &response{status: status, header: h, body: marshalJS(v)}
}

// errorResponse is an EdgeBaseError: {"code":N,"message":...}.
func errorResponse(status int, msg string) *response {
	return jsonResponse(status, object{{"code", float64(status)}, {"message", msg}})
}

func slugError(status int, msg, slug string) *response {
	return jsonResponse(status, object{{"code", float64(status)}, {"message", msg}, {"slug", slug}})
}

const unexpectedMsg = "Backup operation failed unexpectedly. Check the worker logs for the original exception."

func unexpected() *response { return errorResponse(500, unexpectedMsg) }

func notFoundPath(r *http.Request) *response {
	return errorResponse(404, "Path '"+r.URL.EscapedPath()+"' was not found on this EdgeBase server.")
}

// adminRedirect is what the peer's admin-assets fallback answers to GET
// /admin/<anything unmatched>.
func adminRedirect() *response {
	h := http.Header{}
	h.Set("Location", "/admin/")
	return &response{status: http.StatusTemporaryRedirect, header: h, body: []byte{}}
}

const maxBody = 1 << 30

// ServeHTTP implements http.Handler.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &request{r: r}
	q.endpoint, q.adminPath = classify(r)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	q.body = body
	entry := e.reqlog.add(e.now(), q)
	f := e.faults.take(q.endpoint, entry.Request)
	if f != nil && f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			e.reqlog.setStatus(entry, 499)
			return
		case <-t.C:
		}
	}
	var resp *response
	if f != nil && f.Status != 0 {
		if f.Body != "" {
			resp = &response{status: f.Status, header: http.Header{"Content-Type": {"application/json"}}, body: []byte(f.Body)}
		} else {
			resp = errorResponse(f.Status, "injected fault")
		}
	} else {
		resp = e.route(r.Context(), q)
	}
	e.reqlog.setStatus(entry, resp.status)
	truncate := -1
	if f != nil && f.Truncate {
		truncate = f.TruncateAfter
	}
	writeResponse(w, r, resp, truncate)
}

func writeResponse(w http.ResponseWriter, r *http.Request, resp *response, truncate int) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	h.Set("X-Content-Type-Options", "nosniff")
	var src io.Reader
	var n int64
	if resp.stream != nil {
		defer resp.stream.Close()
		src, n = resp.stream, resp.length
	} else {
		src, n = bytes.NewReader(resp.body), int64(len(resp.body))
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(resp.status)
	if r.Method == http.MethodHead {
		return
	}
	if truncate >= 0 && int64(truncate) < n {
		_, _ = io.CopyN(w, src, int64(truncate))
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		// Abort: the client sees a connection closed before Content-Length.
		panic(http.ErrAbortHandler)
	}
	_, _ = io.Copy(w, src)
}

// classify names the endpoint of r for faults and the request log.
func classify(r *http.Request) (endpoint, adminPath string) {
	p := r.URL.Path
	switch {
	case p == "/admin/api/backup" || strings.HasPrefix(p, "/admin/api/backup/"):
		sub := strings.TrimPrefix(strings.TrimPrefix(p, "/admin/api/backup"), "/")
		name := sub
		if strings.HasPrefix(sub, "export/") {
			name = "export"
		}
		if name == "dump-storage" || name == "restore-storage" {
			name += ":" + r.URL.Query().Get("action")
		}
		return name, sub
	case p == "/api/health":
		return "api:health", ""
	case strings.HasPrefix(p, "/api/db/"):
		switch {
		case strings.HasSuffix(p, "/batch"):
			return "api:db:batch", ""
		case r.Method == http.MethodPost:
			return "api:db:insert", ""
		}
		return "api:db:list", ""
	case p == "/api/auth/signup":
		return "api:auth:signup", ""
	case p == "/api/auth/admin/users":
		return "api:auth:users", ""
	case strings.HasPrefix(p, "/api/storage/"):
		rest := strings.TrimPrefix(p, "/api/storage/")
		switch {
		case strings.HasSuffix(rest, "/upload") && r.Method == http.MethodPost:
			return "api:storage:upload", ""
		case !strings.Contains(rest, "/"):
			return "api:storage:list", ""
		}
		return "api:storage:get", ""
	}
	return "other", ""
}

func (e *Emulator) route(ctx context.Context, q *request) *response {
	r := q.r
	p := r.URL.Path
	switch {
	case p == "/admin/api/backup" || strings.HasPrefix(p, "/admin/api/backup/"):
		return e.routeAdmin(ctx, q)
	case p == "/admin" || strings.HasPrefix(p, "/admin/"):
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return adminRedirect()
		}
		return notFoundPath(r)
	case p == "/api/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return jsonResponse(200, object{{"status", "ok"}, {"version", "0.1.0"}, {"timestamp", e.timestamp()}})
	case strings.HasPrefix(p, "/api/db/"):
		return e.routeDB(ctx, q)
	case p == "/api/auth/signup" && r.Method == http.MethodPost:
		return e.signup(ctx, q)
	case p == "/api/auth/admin/users" && r.Method == http.MethodGet:
		return e.listUsers(ctx, q)
	case strings.HasPrefix(p, "/api/storage/"):
		return e.routeStorage(ctx, q)
	}
	return notFoundPath(r)
}

// ─── request log ───

// Request is one logged request.
type Request struct {
	Seq      int
	Time     time.Time
	Method   string
	Path     string
	Endpoint string // e.g. "dump-do", "dump-storage:get", "api:db:list"
	// Fields holds the request's key fields: from a JSON body doName,
	// type, namespace, id, prefix, skipWipe, hexIds (count) and tables
	// (comma-separated names in body order); from the query action, key
	// and format; for export the table name.
	Fields map[string]string
	Status int // 0 while in flight
}

type logEntry struct{ *Request }

type requestLog struct {
	mu   sync.Mutex
	reqs []*Request
}

const maxLog = 200000

func (l *requestLog) add(now time.Time, q *request) logEntry {
	req := &Request{Time: now, Method: q.r.Method, Path: q.r.URL.Path, Endpoint: q.endpoint, Fields: requestFields(q)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reqs) >= maxLog {
		l.reqs = l.reqs[len(l.reqs)/2:]
	}
	req.Seq = len(l.reqs) + 1
	if n := len(l.reqs); n > 0 {
		req.Seq = l.reqs[n-1].Seq + 1
	}
	l.reqs = append(l.reqs, req)
	return logEntry{req}
}

func (l *requestLog) setStatus(e logEntry, status int) {
	l.mu.Lock()
	e.Status = status
	l.mu.Unlock()
}

func requestFields(q *request) map[string]string {
	f := map[string]string{}
	qs := q.r.URL.Query()
	for _, k := range []string{"action", "key", "format"} {
		if qs.Has(k) {
			f[k] = qs.Get(k)
		}
	}
	if strings.HasPrefix(q.adminPath, "export/") {
		f["name"] = strings.TrimPrefix(q.adminPath, "export/")
	}
	if len(q.body) == 0 || q.body[0] != '{' {
		return f
	}
	v, err := q.json()
	if err != nil {
		return f
	}
	o, _ := v.(object)
	for _, m := range o {
		switch m.Key {
		case "doName", "type", "namespace", "id", "prefix":
			f[m.Key] = jsToString(m.Value)
		case "skipWipe":
			f[m.Key] = strconv.FormatBool(jsTruthy(m.Value))
		case "hexIds":
			if arr, ok := m.Value.([]any); ok {
				f[m.Key] = strconv.Itoa(len(arr))
			}
		case "tables":
			if to, ok := m.Value.(object); ok {
				names := make([]string, len(to))
				for i, t := range to {
					names[i] = t.Key
				}
				f[m.Key] = strings.Join(names, ",")
			}
		}
	}
	return f
}

// Requests returns a copy of the request log, oldest first.
func (e *Emulator) Requests() []Request {
	e.reqlog.mu.Lock()
	defer e.reqlog.mu.Unlock()
	out := make([]Request, len(e.reqlog.reqs))
	for i, r := range e.reqlog.reqs {
		out[i] = *r
		out[i].Fields = make(map[string]string, len(r.Fields))
		for k, v := range r.Fields {
			out[i].Fields[k] = v
		}
	}
	return out
}

// RequestsTo returns the logged requests whose endpoint is endpoint (or,
// for "dump-storage"/"restore-storage", any of its actions).
func (e *Emulator) RequestsTo(endpoint string) []Request {
	var out []Request
	for _, r := range e.Requests() {
		if endpointMatches(endpoint, r.Endpoint) {
			out = append(out, r)
		}
	}
	return out
}

// ResetRequests clears the request log.
func (e *Emulator) ResetRequests() {
	e.reqlog.mu.Lock()
	e.reqlog.reqs = nil
	e.reqlog.mu.Unlock()
}

func endpointMatches(pattern, endpoint string) bool {
	if pattern == endpoint {
		return true
	}
	base, _, ok := strings.Cut(endpoint, ":")
	return ok && !strings.Contains(pattern, ":") && base == pattern
}

// ─── faults ───

// Fault changes how an endpoint answers. Set it with SetFault.
type Fault struct {
	// Status, when non-zero, answers with this status instead of handling
	// the request; Body is the response (default {"code":Status,"message":"injected fault"}).
	Status int
	Body   string
	// Latency delays the answer.
	Latency time.Duration
	// Truncate handles the request but closes the connection after
	// TruncateAfter body bytes while Content-Length promises the full body.
	Truncate      bool
	TruncateAfter int
	// Nth applies the fault only to the Nth matching call after SetFault
	// (1-based); FirstN applies it to the first N matching calls. With
	// both zero it applies to every call.
	Nth    int
	FirstN int
	// Match, if set, restricts the fault to requests it accepts (e.g. one
	// doName).
	Match func(Request) bool
}

type faultSlot struct {
	f     Fault
	calls int
}

type faultSet struct {
	mu sync.Mutex
	m  map[string]*faultSlot
}

// SetFault installs f for endpoint ("dump-do", "dump-storage:get",
// "dump-storage" for both actions, "api:db:list", ...), replacing any
// previous fault there and resetting its call counter.
func (e *Emulator) SetFault(endpoint string, f Fault) {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	if e.faults.m == nil {
		e.faults.m = map[string]*faultSlot{}
	}
	e.faults.m[endpoint] = &faultSlot{f: f}
}

// ClearFault removes the fault of endpoint.
func (e *Emulator) ClearFault(endpoint string) {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	delete(e.faults.m, endpoint)
}

// ClearFaults removes every fault.
func (e *Emulator) ClearFaults() {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.m = nil
}

func (s *faultSet) take(endpoint string, req *Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pattern, slot := range s.m {
		if !endpointMatches(pattern, endpoint) {
			continue
		}
		if slot.f.Match != nil && !slot.f.Match(*req) {
			continue
		}
		slot.calls++
		switch {
		case slot.f.Nth > 0 && slot.calls != slot.f.Nth:
			continue
		case slot.f.FirstN > 0 && slot.calls > slot.f.FirstN:
			continue
		}
		f := slot.f
		return &f
	}
	return nil
}
