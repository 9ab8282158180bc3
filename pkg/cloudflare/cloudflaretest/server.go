package cloudflaretest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults used when Config leaves a field empty.
const (
	DefaultAccountID = "0123456789abcdef0123456789abcdef"
	DefaultToken     = "cloudflaretest-token"
)

// Limits of the real API that the emulator enforces.
const (
	maxPerPage       = 1000  // namespaces: per_page 1..1000
	defaultPerPage   = 20    // namespaces: per_page when absent
	minLimit         = 10    // objects: limit 10..10000
	maxLimit         = 10000 //
	defaultLimit     = 1000  // objects: limit when absent
	apiPrefix        = "/client/v4"
	accountsPrefix   = apiPrefix + "/accounts/"
	namespacesSuffix = "/workers/durable_objects/namespaces"
)

// Config sets up a Server. The zero value is usable.
type Config struct {
	AccountID string // the only account the default token can read; default DefaultAccountID
	Token     string // a token with Workers Scripts Read on AccountID; default DefaultToken

	// Server-side caps on page sizes, below what clients ask for, so tests
	// can force many pages without registering thousands of items. 0 = the
	// real API's behaviour (the requested size is honoured).
	MaxNamespacesPerPage int
	MaxObjectsPerPage    int
}

// Namespace is a registered Durable Object namespace.
type Namespace struct {
	ID        string // 32 hex; generated when empty
	Name      string // e.g. "edgebase_DatabaseDO"
	Script    string // Worker script that owns the class
	Class     string // e.g. "DatabaseDO"
	UseSQLite bool
}

// Object is a registered Durable Object.
type Object struct {
	ID            string // 64 lowercase hex
	HasStoredData bool
}

type object struct {
	id     [32]byte
	stored bool
}

// Server emulates the Durable Object listing endpoints of the Cloudflare API.
// It is safe for concurrent use.
type Server struct {
	srv       *httptest.Server
	accountID string
	maxNS     int
	maxObj    int

	mu         sync.Mutex
	tokens     map[string]bool // token -> has Workers Scripts Read
	namespaces []Namespace
	objects    map[string][]object
	nextNS     int
	requests   int
	latency    time.Duration
	throttle   int
	retryAfter time.Duration
	failNext   int
	failStatus int
	failAt     map[int]int
}

// NewServer starts an emulator on 127.0.0.1. Call Close when done.
func NewServer(cfg Config) *Server {
	if cfg.AccountID == "" {
		cfg.AccountID = DefaultAccountID
	}
	if cfg.Token == "" {
		cfg.Token = DefaultToken
	}
	s := &Server{
		accountID: cfg.AccountID,
		maxNS:     max(cfg.MaxNamespacesPerPage, 0),
		maxObj:    max(cfg.MaxObjectsPerPage, 0),
		tokens:    map[string]bool{cfg.Token: true},
		objects:   map[string][]object{},
		failAt:    map[int]int{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the API base to give the client (it ends in /client/v4).
func (s *Server) URL() string { return s.srv.URL + apiPrefix }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// AccountID is the account the configured token may read.
func (s *Server) AccountID() string { return s.accountID }

// AddToken registers another token. Without canReadScripts every call with it
// is refused with 403, as for a real token lacking Workers Scripts Read.
func (s *Server) AddToken(token string, canReadScripts bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = canReadScripts
}

// AddNamespace registers a namespace (listed in registration order) and
// returns it with its ID filled in.
func (s *Server) AddNamespace(ns Namespace) Namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns.ID == "" {
		s.nextNS++
		ns.ID = fmt.Sprintf("%032x", s.nextNS)
	}
	s.namespaces = append(s.namespaces, ns)
	return ns
}

// AddObjects appends objects to a registered namespace; they are listed in
// registration order. Ids must be 64 lowercase hex characters.
func (s *Server) AddObjects(namespaceID string, objs ...Object) error {
	parsed := make([]object, len(objs))
	for i, o := range objs {
		id, ok := parseID(o.ID)
		if !ok {
			return fmt.Errorf("cloudflaretest: object id %q is not 64 lowercase hex", o.ID)
		}
		parsed[i] = object{id: id, stored: o.HasStoredData}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.namespace(namespaceID) == nil {
		return fmt.Errorf("cloudflaretest: namespace %q is not registered", namespaceID)
	}
	s.objects[namespaceID] = append(s.objects[namespaceID], parsed...)
	return nil
}

// ObjectID returns a deterministic, unique 64-hex object id for n, for tests
// that need many ids.
func ObjectID(n int) string {
	sum := sha256.Sum256([]byte("cloudflaretest-object-" + strconv.Itoa(n)))
	return hex.EncodeToString(sum[:])
}

// Throttle makes the next count requests answer 429 with a Retry-After of
// retryAfter (rounded up to whole seconds, as Cloudflare sends it).
func (s *Server) Throttle(count int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle, s.retryAfter = count, retryAfter
}

// FailNext makes the next count requests answer status (e.g. 500, 503).
func (s *Server) FailNext(count, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failStatus = count, status
}

// FailAt makes the nth request since the server started (1-based, as counted
// by Requests) answer status.
func (s *Server) FailAt(nth, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAt[nth] = status
}

// SetLatency delays every response by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Requests reports how many requests the server has received, including
// refused and failed ones.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// message is one entry of Cloudflare's errors/messages arrays.
type message struct {
	Code       int       `json:"code"`
	Message    string    `json:"message"`
	ErrorChain []message `json:"error_chain,omitempty"`
}

type envelope struct {
	Success    bool      `json:"success"`
	Errors     []message `json:"errors"`
	Messages   []message `json:"messages"`
	Result     any       `json:"result"`
	ResultInfo any       `json:"result_info,omitempty"`
}

type pageInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

type cursorInfo struct {
	Count  int    `json:"count"`
	Cursor string `json:"cursor"`
}

type nsJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Script    string `json:"script"`
	Class     string `json:"class"`
	UseSQLite bool   `json:"use_sqlite"`
}

type objJSON struct {
	ID            string `json:"id"`
	HasStoredData bool   `json:"hasStoredData"`
}

func writeJSON(w http.ResponseWriter, status int, body envelope) {
	if body.Errors == nil {
		body.Errors = []message{}
	}
	if body.Messages == nil {
		body.Messages = []message{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeError(w http.ResponseWriter, status int, errs ...message) {
	writeJSON(w, status, envelope{Success: false, Errors: errs})
}

// fault decides, under the lock, whether this request is answered by an
// injected failure.
func (s *Server) fault() (n, status int, retryAfter time.Duration, latency time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	n, latency = s.requests, s.latency
	if st, ok := s.failAt[n]; ok {
		delete(s.failAt, n)
		return n, st, 0, latency
	}
	if s.failNext > 0 {
		s.failNext--
		return n, s.failStatus, 0, latency
	}
	if s.throttle > 0 {
		s.throttle--
		return n, http.StatusTooManyRequests, s.retryAfter, latency
	}
	return n, 0, 0, latency
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	_, status, retryAfter, latency := s.fault()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	switch {
	case status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
		writeError(w, status, message{Code: 971, Message: "Please wait and consider throttling your request speed"})
		return
	case status >= 500:
		writeError(w, status, message{Code: 10013, Message: "An unknown error has occurred"})
		return
	case status != 0:
		writeError(w, status, message{Code: 10000, Message: http.StatusText(status)})
		return
	}

	if !s.authorized(w, r) {
		return
	}
	account, rest, ok := splitAccountPath(r.URL.Path)
	if !ok || r.Method != http.MethodGet {
		writeError(w, http.StatusNotFound, message{Code: 7000, Message: "No route for that URI"})
		return
	}
	if account != s.accountID {
		// A token is scoped to accounts; any other account id reads as
		// missing permission, not as "not found".
		writeError(w, http.StatusForbidden, message{Code: 10000, Message: "Authentication error"})
		return
	}
	switch {
	case rest == "":
		s.listNamespaces(w, r)
	case strings.HasPrefix(rest, "/") && strings.HasSuffix(rest, "/objects") && strings.Count(rest, "/") == 2:
		s.listObjects(w, r, strings.TrimSuffix(rest[1:], "/objects"))
	default:
		writeError(w, http.StatusNotFound, message{Code: 7000, Message: "No route for that URI"})
	}
}

// splitAccountPath returns the account id and what follows
// ".../workers/durable_objects/namespaces".
func splitAccountPath(p string) (account, rest string, ok bool) {
	tail, found := strings.CutPrefix(p, accountsPrefix)
	if !found {
		return "", "", false
	}
	account, after, found := strings.Cut(tail, "/")
	if !found || account == "" {
		return "", "", false
	}
	rest, found = strings.CutPrefix("/"+after, namespacesSuffix)
	if !found {
		return "", "", false
	}
	return account, rest, true
}

// authorized answers the request itself, with the shapes Cloudflare uses,
// when the bearer token is missing, malformed, unknown or lacks permission.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if h == "" {
		writeError(w, http.StatusBadRequest, message{Code: 9106, Message: "Missing X-Auth-Key, X-Auth-Email or Authorization headers"})
		return false
	}
	token, found := strings.CutPrefix(h, "Bearer ")
	if !found || token == "" || strings.ContainsAny(token, " \t") {
		writeError(w, http.StatusBadRequest, message{
			Code: 6003, Message: "Invalid request headers",
			ErrorChain: []message{{Code: 6111, Message: "Invalid format for Authorization header"}},
		})
		return false
	}
	s.mu.Lock()
	canRead, known := s.tokens[token]
	s.mu.Unlock()
	switch {
	case !known:
		writeError(w, http.StatusForbidden, message{Code: 9109, Message: "Invalid access token"})
		return false
	case !canRead:
		writeError(w, http.StatusForbidden, message{Code: 10000, Message: "Authentication error"})
		return false
	}
	return true
}

func badParam(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, message{Code: 10001, Message: msg})
}

// intParam parses an optional integer query parameter.
func intParam(r *http.Request, name string, def, lo, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) {
	page, ok := intParam(r, "page", 1, 1, math.MaxInt32)
	if !ok {
		badParam(w, "page must be an integer of at least 1")
		return
	}
	perPage, ok := intParam(r, "per_page", defaultPerPage, 1, maxPerPage)
	if !ok {
		badParam(w, fmt.Sprintf("per_page must be an integer between 1 and %d", maxPerPage))
		return
	}
	if s.maxNS > 0 {
		perPage = min(perPage, s.maxNS)
	}
	s.mu.Lock()
	total := len(s.namespaces)
	result := []nsJSON{}
	if start := (page - 1) * perPage; start < total {
		for _, ns := range s.namespaces[start:min(start+perPage, total)] {
			result = append(result, nsJSON(ns))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, envelope{
		Success: true,
		Result:  result,
		ResultInfo: pageInfo{
			Page: page, PerPage: perPage, Count: len(result),
			TotalCount: total, TotalPages: (total + perPage - 1) / perPage,
		},
	})
}

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request, nsID string) {
	limit, ok := intParam(r, "limit", defaultLimit, minLimit, maxLimit)
	if !ok {
		badParam(w, fmt.Sprintf("limit must be an integer between %d and %d", minLimit, maxLimit))
		return
	}
	if s.maxObj > 0 {
		limit = min(limit, s.maxObj)
	}
	offset := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		if offset, ok = decodeCursor(nsID, c); !ok {
			badParam(w, "invalid cursor")
			return
		}
	}
	s.mu.Lock()
	if s.namespace(nsID) == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, message{Code: 10090, Message: "namespace not found"})
		return
	}
	all := s.objects[nsID]
	end := min(offset+limit, len(all))
	result := make([]objJSON, 0, max(end-offset, 0))
	for i := offset; i < end; i++ {
		result = append(result, objJSON{ID: hex.EncodeToString(all[i].id[:]), HasStoredData: all[i].stored})
	}
	more := end < len(all)
	s.mu.Unlock()
	info := cursorInfo{Count: len(result)}
	if more {
		info.Cursor = encodeCursor(nsID, end)
	}
	writeJSON(w, http.StatusOK, envelope{Success: true, Result: result, ResultInfo: info})
}

// Cursors are opaque to clients, as Cloudflare's are, and bound to their
// namespace so a cursor from one cannot page another.
func encodeCursor(nsID string, offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(nsID + ":" + strconv.Itoa(offset)))
}

func decodeCursor(nsID, c string) (int, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	ns, off, found := strings.Cut(string(raw), ":")
	if !found || ns != nsID {
		return 0, false
	}
	n, err := strconv.Atoi(off)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// namespace must be called with s.mu held.
func (s *Server) namespace(id string) *Namespace {
	for i := range s.namespaces {
		if s.namespaces[i].ID == id {
			return &s.namespaces[i]
		}
	}
	return nil
}

func parseID(s string) ([32]byte, bool) {
	var id [32]byte
	if len(s) != 64 || strings.ToLower(s) != s {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, false
	}
	return id, true
}
