package cloudflare

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Sentinels callers branch on with errors.Is. Every API failure is an
// *APIError wrapping exactly one of them.
var (
	// ErrUnauthorized: the token is missing, malformed, unknown, expired or
	// revoked.
	ErrUnauthorized = errors.New("cloudflare: unauthorized")
	// ErrForbidden: the token is valid but may not read this account's
	// Durable Objects (it needs Workers Scripts Read on the account).
	ErrForbidden = errors.New("cloudflare: forbidden")
	// ErrNotFound: the account or namespace does not exist.
	ErrNotFound = errors.New("cloudflare: not found")
	// ErrRateLimited: 429 after all retries, or a Retry-After longer than
	// the retry policy accepts.
	ErrRateLimited = errors.New("cloudflare: rate limited")
	// ErrServer: 5xx or connection failures after all retries.
	ErrServer = errors.New("cloudflare: server error")
	// ErrBadRequest: any other 4xx (e.g. an invalid limit or cursor).
	ErrBadRequest = errors.New("cloudflare: bad request")
	// ErrBadResponse: a reply that does not follow the API's contract
	// (not JSON, success:false on 2xx, malformed ids, a cursor that does not
	// advance).
	ErrBadResponse = errors.New("cloudflare: bad response")
	// ErrRedirect: the API redirected a request to another origin (scheme,
	// host or port). The client refuses, so the token is never sent
	// elsewhere; it is not retried.
	ErrRedirect = errors.New("cloudflare: redirect to another origin refused")
)

// Message is one entry of Cloudflare's "errors" array.
type Message struct {
	Code       int       `json:"code"`
	Message    string    `json:"message"`
	ErrorChain []Message `json:"error_chain,omitempty"`
}

func (m Message) String() string {
	s := fmt.Sprintf("%s (code %d)", m.Message, m.Code)
	if len(m.ErrorChain) > 0 {
		parts := make([]string, len(m.ErrorChain))
		for i, c := range m.ErrorChain {
			parts[i] = c.String()
		}
		s += ": " + strings.Join(parts, "; ")
	}
	return s
}

// APIError is an unsuccessful reply (or, for ErrServer, a connection
// failure) after the retry policy gave up.
type APIError struct {
	Kind       error // one of the sentinels above
	Method     string
	Path       string        // request path below the base URL, without query
	Status     int           // HTTP status; 0 for a connection failure
	Errors     []Message     // Cloudflare's messages, as sent
	Body       string        // start of a non-JSON body, when Errors is empty
	RetryAfter time.Duration // from a 429
	Attempts   int           // requests made, including the last
	Cause      error         // transport error, when Status is 0
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Method, e.Path)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	for i, m := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(m.String())
	}
	if len(e.Errors) == 0 && e.Body != "" {
		fmt.Fprintf(&b, ": %q", e.Body)
	}
	if e.Cause != nil {
		fmt.Fprintf(&b, ": %v", e.Cause)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	switch e.Kind {
	case ErrUnauthorized:
		b.WriteString(" - check the API token")
	case ErrForbidden:
		b.WriteString(" - the API token needs the Workers Scripts Read permission on this account")
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrForbidden) etc. work.
func (e *APIError) Unwrap() error { return e.Kind }

// isCredentialCode reports Cloudflare error codes that identify a bad
// credential whatever the HTTP status (9109 comes with 403 on account routes,
// 6003/6111/9106 with 400).
func isCredentialCode(c int) bool {
	switch c {
	case 1000, // Invalid API Token
		6003, // Invalid request headers
		6111, // Invalid format for Authorization header
		9106, // Missing X-Auth-Key, X-Auth-Email or Authorization headers
		9109: // Invalid access token
		return true
	}
	return false
}

func hasCode(msgs []Message, match func(int) bool) bool {
	for _, m := range msgs {
		if match(m.Code) || hasCode(m.ErrorChain, match) {
			return true
		}
	}
	return false
}

// classify maps an unsuccessful reply to its sentinel.
func classify(status int, msgs []Message) error {
	switch {
	case status == http.StatusTooManyRequests || hasCode(msgs, func(c int) bool { return c == 971 }):
		return ErrRateLimited
	case status == http.StatusUnauthorized || hasCode(msgs, isCredentialCode):
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusNotFound:
		return ErrNotFound
	case status >= 500:
		return ErrServer
	case status >= 400:
		return ErrBadRequest
	default:
		return ErrBadResponse
	}
}

func retryable(kind error) bool { return kind == ErrRateLimited || kind == ErrServer }
