package edgebase

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/pkg/sensitive"
)

// HeaderServiceKey is the only credential the backup routes accept.
const HeaderServiceKey = "X-EdgeBase-Service-Key"

// Options configures a Client. Zero values take the documented defaults.
type Options struct {
	// BaseURL of the deployment, e.g. https://app.example.com or
	// http://127.0.0.1:8787/prefix. One trailing '/' is stripped, a path
	// prefix is kept (like the official CLI).
	BaseURL    string
	ServiceKey sensitive.String
	// ServiceKeyFunc, when set, supplies the service key for every request
	// instead of ServiceKey: a credential that is rotated elsewhere and
	// read again now and then (pkg/secrets/secretsmanager.Credential).
	ServiceKeyFunc func(ctx context.Context) (sensitive.String, error)
	// RefreshServiceKey, with ServiceKeyFunc, is called once per call when
	// the server refuses the key sent (401 or 403), with that key: it
	// re-reads the credential and returns the current one. A different key
	// is tried once (not counted as a retry); the same key, or a second
	// refusal, fails the call as before.
	RefreshServiceKey func(ctx context.Context, refused sensitive.String) (sensitive.String, error)
	// HTTPClient is used for every request; the default keeps enough idle
	// connections per host for high fan-out. The client uses a copy whose
	// CheckRedirect refuses redirects to another origin (ErrRedirect) before
	// applying the given policy.
	HTTPClient *http.Client
	// HeaderTimeout bounds the wait for response headers (default 30 s, the
	// official CLI's timeout). Bodies may stream for longer.
	HeaderTimeout time.Duration
	// IdleTimeout fails a body that delivers no byte for this long
	// (default 2 min), so a stalled stream never hangs a task.
	IdleTimeout time.Duration
	// Retry bounds retries of idempotent calls on 429, 5xx and transport
	// errors.
	Retry RetryPolicy
	// Sleep waits between attempts (tests inject a fake).
	Sleep  func(ctx context.Context, d time.Duration) error
	Logger *slog.Logger
}

// RetryPolicy: exponential backoff with full jitter, capped, honouring
// Retry-After up to MaxRetryAfter.
type RetryPolicy struct {
	MaxAttempts   int           // total attempts including the first (default 5)
	BaseDelay     time.Duration // default 250 ms
	MaxDelay      time.Duration // default 10 s
	MaxRetryAfter time.Duration // default 60 s
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 250 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 10 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = time.Minute
	}
	return p
}

// Client speaks the admin backup API (/admin/api/backup/*) plus the few
// public REST reads a restore needs. It is safe for concurrent use.
type Client struct {
	base          string
	key           sensitive.String
	keyFn         func(ctx context.Context) (sensitive.String, error)
	refreshKey    func(ctx context.Context, refused sensitive.String) (sensitive.String, error)
	hc            *http.Client
	headerTimeout time.Duration
	idleTimeout   time.Duration
	retry         RetryPolicy
	sleep         func(ctx context.Context, d time.Duration) error
	log           *slog.Logger
	requests      atomic.Int64
}

// NormalizeBaseURL validates a deployment URL and strips one trailing '/'.
func NormalizeBaseURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("edgebase: no URL given (use --url or EDGEBASE_URL)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("edgebase: invalid URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("edgebase: URL %q must start with http:// or https://", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("edgebase: URL %q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("edgebase: URL %q must not carry a query or fragment", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// New builds a client; the URL and key are checked here so a bad
// invocation fails before any request.
func New(o Options) (*Client, error) {
	base, err := NormalizeBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	if o.ServiceKey.IsZero() && o.ServiceKeyFunc == nil {
		return nil, errors.New("edgebase: no service key given (use --service-key or EDGEBASE_SERVICE_KEY)")
	}
	c := &Client{
		base:          base,
		key:           o.ServiceKey,
		keyFn:         o.ServiceKeyFunc,
		refreshKey:    o.RefreshServiceKey,
		hc:            o.HTTPClient,
		headerTimeout: o.HeaderTimeout,
		idleTimeout:   o.IdleTimeout,
		retry:         o.Retry.withDefaults(),
		sleep:         o.Sleep,
		log:           o.Logger,
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: DefaultTransport()}
	}
	c.hc = guardRedirects(c.hc)
	if c.headerTimeout <= 0 {
		c.headerTimeout = 30 * time.Second
	}
	if c.idleTimeout <= 0 {
		c.idleTimeout = 2 * time.Minute
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// DefaultTransport keeps up to 64 idle connections per host so that a
// fan-out of tens of requests reuses connections instead of churning.
func DefaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	// Bodies are JSON or opaque object bytes; transparent gzip would hide
	// Content-Length and cost CPU on a loopback peer.
	t.DisableCompression = true
	return t
}

// WithRetry returns a client sharing this one's connections with another
// retry policy (restore-do on a just-woken DO needs more patience than
// the default, see RestoreDORetry).
func (c *Client) WithRetry(p RetryPolicy) *Client {
	cp := &Client{base: c.base, key: c.key, keyFn: c.keyFn, refreshKey: c.refreshKey, hc: c.hc, headerTimeout: c.headerTimeout, idleTimeout: c.idleTimeout,
		retry: p.withDefaults(), sleep: c.sleep, log: c.log}
	return cp
}

// BaseURL returns the normalized deployment URL.
func (c *Client) BaseURL() string { return c.base }

// Requests returns how many HTTP requests this client has sent.
func (c *Client) Requests() int64 { return c.requests.Load() }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// BodyFunc produces a request body; it is called again for every retry.
type BodyFunc func() (io.ReadCloser, error)

// BytesBody is a BodyFunc over a byte slice.
func BytesBody(b []byte) BodyFunc {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

type request struct {
	op          string // for errors and logs
	method      string
	path        string // absolute path below the base URL, e.g. /admin/api/backup/dump-do
	query       string // already encoded
	body        BodyFunc
	size        int64 // body size when known, else -1
	contentType string
	// handle consumes a 2xx response. A transport error it returns (from
	// reading the body) is retried; any other error is final.
	handle func(resp *http.Response, body io.Reader) error
	// committed, when set, reports that handle has produced side effects a
	// retry would repeat (e.g. callbacks already invoked).
	committed func() bool
	// scope is the service-key scope the call needs; backup routes need
	// BackupScope, set from the path.
	scope string
}

func backupPath(route string) string { return "/admin/api/backup/" + route }

// do sends req with retries. Only idempotent operations are sent through
// it with retries enabled; see the protocol's idempotency table.
func (c *Client) do(ctx context.Context, req request) error {
	var last error
	refreshed := false
	for attempt := 1; ; attempt++ {
		key, err := c.serviceKey(ctx)
		if err != nil {
			return fmt.Errorf("edgebase: %s: the service key: %w", req.op, err)
		}
		err = c.once(ctx, req, key)
		if err == nil {
			return nil
		}
		last = err
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), last)
		}
		if !refreshed && c.refreshKey != nil && refusesKey(err) && (req.committed == nil || !req.committed()) {
			// The key may have been rotated since it was read: read it
			// again, once, and try the new one.
			refreshed = true
			if nk, rerr := c.refreshKey(ctx, key); rerr == nil && !nk.IsZero() && nk.Reveal() != key.Reveal() {
				c.log.Info("edgebase: the service key was refused; trying the one read again", "op", req.op)
				attempt--
				continue
			} else if rerr != nil {
				c.log.Warn("edgebase: could not read the service key again", "op", req.op, "err", rerr)
			}
		}
		if !retryable(err) || attempt >= c.retry.MaxAttempts || (req.committed != nil && req.committed()) {
			return last
		}
		d := c.backoff(attempt, err)
		c.log.Debug("edgebase retry", "op", req.op, "attempt", attempt, "delay", d, "err", err)
		if err := c.sleep(ctx, d); err != nil {
			return errors.Join(err, last)
		}
	}
}

func (c *Client) backoff(attempt int, err error) time.Duration {
	var ra *retryAfterError
	if errors.As(err, &ra) && ra.after > 0 {
		return min(ra.after, c.retry.MaxRetryAfter)
	}
	ceil := c.retry.BaseDelay << (attempt - 1)
	if ceil > c.retry.MaxDelay || ceil <= 0 {
		ceil = c.retry.MaxDelay
	}
	// Full jitter: concurrent workers hitting the same 429 spread out.
	return ceil/2 + rand.N(ceil/2+1)
}

// retryAfterError carries a server-requested delay alongside the APIError.
type retryAfterError struct {
	*APIError
	after time.Duration
}

func (e *retryAfterError) Unwrap() error { return e.APIError }

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// serviceKey is the key to send now.
func (c *Client) serviceKey(ctx context.Context) (sensitive.String, error) {
	if c.keyFn == nil {
		return c.key, nil
	}
	k, err := c.keyFn(ctx)
	if err == nil && k.IsZero() {
		err = errors.New("empty")
	}
	return k, err
}

// refusesKey reports a 401 or 403: the server refused the key sent.
func refusesKey(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden)
}

func (c *Client) once(parent context.Context, r request, key sensitive.String) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	var body io.ReadCloser
	var sent *bodyReader
	if r.body != nil {
		b, err := r.body()
		if err != nil {
			return fmt.Errorf("edgebase: %s: request body: %w", r.op, err)
		}
		sent = &bodyReader{ReadCloser: b}
		body = sent
	}
	u := c.base + r.path
	if r.query != "" {
		u += "?" + r.query
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return fmt.Errorf("edgebase: %s: %w", r.op, err)
	}
	if body != nil && r.size >= 0 {
		req.ContentLength = r.size
	}
	req.Header.Set(HeaderServiceKey, key.Reveal())
	ct := r.contentType
	if ct == "" {
		// The official CLI always sends JSON's content type, even without a
		// body: the server's body validation keys off it.
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/json, */*")

	headerTimer := time.AfterFunc(c.headerTimeout, func() {
		cancel(fmt.Errorf("no response headers within %s", c.headerTimeout))
	})
	c.requests.Add(1)
	resp, err := c.hc.Do(req)
	headerTimer.Stop()
	if err != nil {
		if parent.Err() != nil {
			return parent.Err()
		}
		if errors.Is(err, ErrRedirect) {
			// A policy refusal: repeating the request gives the same answer.
			return fmt.Errorf("edgebase: %s: %w", r.op, err)
		}
		if sent != nil && sent.err != nil {
			// Producing the request body failed (e.g. invalid staged data):
			// that is the caller's error, and repeating will not help.
			return fmt.Errorf("edgebase: %s: request body: %w", r.op, sent.err)
		}
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return &transportError{op: r.op, err: err}
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if rerr != nil && len(b) == 0 {
			return &transportError{op: r.op, err: fmt.Errorf("HTTP %d, reading error body: %w", resp.StatusCode, rerr)}
		}
		ae := newAPIError(r.op, resp.StatusCode, b)
		scope := r.scope
		if scope == "" && strings.HasPrefix(r.path, backupPath("")) {
			scope = BackupScope
		}
		ae.noteScope(resp.Header, scope, strings.HasPrefix(key.Reveal(), "jb_"))
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			if d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
				return &retryAfterError{APIError: ae, after: d}
			}
		}
		return ae
	}
	wb := &watchedBody{r: resp.Body, op: r.op, ctx: ctx, cancel: cancel, idle: c.idleTimeout}
	wb.arm()
	defer wb.stop()
	if r.handle == nil {
		_, err = io.Copy(io.Discard, wb)
		return err
	}
	return r.handle(resp, wb)
}

// bodyReader remembers the error of a request body's own reads.
type bodyReader struct {
	io.ReadCloser
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// watchedBody turns read failures into transportErrors (so the retry loop
// can tell them from a consumer's own errors) and cancels the request when
// no byte arrives for the idle timeout.
type watchedBody struct {
	r      io.Reader
	op     string
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer
	n      int64
}

func (b *watchedBody) arm() {
	b.timer = time.AfterFunc(b.idle, func() {
		b.cancel(fmt.Errorf("response body stalled for %s", b.idle))
	})
}

func (b *watchedBody) stop() { b.timer.Stop() }

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return n, &transportError{op: b.op, err: fmt.Errorf("reading response body after %d bytes: %w", b.n, err)}
	}
	return n, err
}

// IsTransport reports whether err is a connection-level failure (refused,
// reset, timeout, truncated body) rather than a reply from the server.
func IsTransport(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

// EncodeURIComponent escapes s the way JavaScript's encodeURIComponent
// does, which is how the official CLI puts R2 keys into query strings.
func EncodeURIComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' ||
			strings.IndexByte("-_.!~*'()", ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}
