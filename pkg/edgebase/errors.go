package edgebase

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strings"
)

// Sentinels callers branch on with errors.Is. *APIError matches the one that
// fits its status code.
var (
	// ErrForbidden is a 403: no service key was sent, the server has no
	// usable keys, or a plain key was sent while only scoped keys exist
	// ("Service Key required for backup operations.").
	ErrForbidden = errors.New("edgebase: service key required")
	// ErrUnauthorized is a 401: the service key is wrong, empty, unknown or
	// lacks the backup scope ("Invalid or missing Service Key.").
	ErrUnauthorized = errors.New("edgebase: invalid or missing service key")
	// ErrNotFound is a 404 (unknown namespace, table, object or route).
	ErrNotFound = errors.New("edgebase: not found")
	// ErrBadRequest is a 400 (validation failure, dynamic namespace without
	// an instance id, ...).
	ErrBadRequest = errors.New("edgebase: bad request")
	// ErrRateLimited is a 429 that persisted through every retry.
	ErrRateLimited = errors.New("edgebase: rate limited")
	// ErrServer is a 5xx that persisted through every retry.
	ErrServer = errors.New("edgebase: server error")
	// ErrNeedsCreate is a 2xx reply {"needsCreate":true}: the dynamic DB
	// instance does not exist on the server yet, and nothing was done.
	ErrNeedsCreate = errors.New("edgebase: DB instance does not exist yet (needsCreate)")
	// ErrNotOK is a 2xx reply without "ok":true, which the protocol says
	// must count as failure.
	ErrNotOK = errors.New(`edgebase: reply without "ok":true`)
	// ErrScope is a 401 or 403 that is most likely a service key without
	// the scope the call needs: the server named the scope (public routes
	// do), or it refused a scoped key (jb_...) on a backup route, which
	// it answers exactly like a wrong key (protocol §1.2, B.4). Such an
	// error also matches ErrUnauthorized or ErrForbidden, and
	// APIError.RequiredScope names the scope.
	ErrScope = errors.New("edgebase: service key lacks the required scope")
)

// BackupScope is the scope every /admin/api/backup route requires of a
// scoped service key (a root key needs none).
const BackupScope = "backup:*:*:exec"

// APIError is a non-2xx reply. Message is the server's own message when
// the body had the {"code","message"} shape.
type APIError struct {
	Op      string // endpoint, e.g. "dump-do"
	Status  int
	Message string
	Body    string // raw body, truncated
	// RequiredScope is set on a 401 or 403: the scope the server named in
	// its reply, else the scope of the route (BackupScope for the backup
	// API). The message tells the user about it.
	RequiredScope string
	// MissingScope reports that the refusal is most likely about the
	// scope (see ErrScope).
	MissingScope bool
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Body
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("edgebase: %s: HTTP %d: %s", e.Op, e.Status, msg)
	switch {
	case e.RequiredScope == "":
	case e.MissingScope:
		s += fmt.Sprintf(" (the service key needs scope %s)", e.RequiredScope)
	default:
		s += fmt.Sprintf(" (use the root service key or a scoped key with scope %s)", e.RequiredScope)
	}
	return s
}

// Is maps the status code to the package sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrBadRequest:
		return e.Status == http.StatusBadRequest
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	case ErrServer:
		return e.Status >= 500
	case ErrScope:
		return e.MissingScope
	}
	return false
}

// namedScope finds a scope in a server message such as "Invalid
// X-EdgeBase-Service-Key for scope 'db:table:posts:read'."
var namedScope = regexp.MustCompile(`(?i)\bscope\s+['"]([^'"\s]+)['"]`)

// noteScope fills RequiredScope and MissingScope of a 401/403. routeScope
// is the scope the route needs ("" if unknown); scopedKey reports that the
// key sent has the scoped form jb_<kid>_....
func (e *APIError) noteScope(h http.Header, routeScope string, scopedKey bool) {
	if e.Status != http.StatusUnauthorized && e.Status != http.StatusForbidden {
		return
	}
	if s := headerScope(h); s != "" {
		e.RequiredScope, e.MissingScope = s, true
		return
	}
	if m := namedScope.FindStringSubmatch(e.Message); m != nil {
		e.RequiredScope, e.MissingScope = m[1], true
		return
	}
	e.RequiredScope = routeScope
	e.MissingScope = routeScope == BackupScope && scopedKey && e.Status == http.StatusUnauthorized
}

// headerScope reads an RFC 6750 insufficient_scope challenge:
// WWW-Authenticate: Bearer error="insufficient_scope", scope="...".
func headerScope(h http.Header) string {
	for _, v := range h.Values("WWW-Authenticate") {
		_, params, err := mime.ParseMediaType("x/x; " + strings.ReplaceAll(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "Bearer")), ",", ";"))
		if err == nil && params["scope"] != "" {
			return params["scope"]
		}
	}
	return ""
}

// Temporary reports whether repeating the same request may succeed.
func (e *APIError) Temporary() bool {
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return true
	}
	return false
}

const maxErrorBody = 4 << 10

func newAPIError(op string, status int, body []byte) *APIError {
	e := &APIError{Op: op, Status: status, Body: strings.TrimSpace(string(body))}
	if len(e.Body) > maxErrorBody {
		e.Body = e.Body[:maxErrorBody] + "…"
	}
	var shape struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &shape) == nil {
		e.Message = shape.Message
	}
	return e
}

// transportError marks a failure while talking to the server (connection
// refused or reset, timeout, truncated body): repeating the request may work.
type transportError struct {
	op  string
	err error
}

func (e *transportError) Error() string { return fmt.Sprintf("edgebase: %s: %v", e.op, e.err) }
func (e *transportError) Unwrap() error { return e.err }

func retryable(err error) bool {
	var te *transportError
	if errors.As(err, &te) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) && ae.Temporary()
}
