package cloudflare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgevault/edgevault/pkg/sensitive"
)

// DefaultBaseURL is Cloudflare's v4 API.
const DefaultBaseURL = "https://api.cloudflare.com/client/v4"

// Page-size bounds of the two endpoints.
const (
	DefaultNamespacesPerPage = 100
	MaxNamespacesPerPage     = 1000
	// DefaultObjectsPerPage is the API's maximum: the request budget, not
	// memory (about 1 MB of JSON per page), is what limits enumeration.
	DefaultObjectsPerPage = 10000
	MinObjectsPerPage     = 10
	MaxObjectsPerPage     = 10000
)

// maxBody caps a reply read into memory; a full objects page is ~1 MB.
const maxBody = 16 << 20

// RetryPolicy bounds retries of 429, 5xx and connection errors. Other 4xx
// are never retried. The zero value gives the defaults.
type RetryPolicy struct {
	MaxAttempts int           // requests per call including the first; default 5
	BaseDelay   time.Duration // first backoff; doubles per attempt; default 1s
	MaxDelay    time.Duration // cap on one backoff; default 30s
	// MaxRetryAfter is the longest Retry-After the client waits for; a
	// longer one fails the call with ErrRateLimited. Default 5m (Cloudflare
	// blocks a token for up to five minutes).
	MaxRetryAfter time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 5
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = time.Second
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = 30 * time.Second
	}
	if p.MaxRetryAfter == 0 {
		p.MaxRetryAfter = 5 * time.Minute
	}
	return p
}

// backoff returns the delay before retry number n (1-based): exponential with
// "equal jitter", so it is never below half the exponential value.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	half := d / 2
	return half + rand.N(half+1)
}

// Options configures a Client. AccountID and Token are required.
type Options struct {
	BaseURL   string // default DefaultBaseURL; a path prefix is kept
	AccountID string
	Token     sensitive.String // API token with Workers Scripts Read; sent as "Authorization: Bearer"
	// HTTPClient sends the requests (default: a client with a 60 s
	// timeout). The client uses a copy whose CheckRedirect refuses
	// redirects to another origin (ErrRedirect) before the given policy.
	HTTPClient *http.Client
	// Limiter gates every request. Pass the same Limiter to every client
	// using this token in the process; nil gives this client its own
	// default Limiter.
	Limiter           *Limiter
	Retry             RetryPolicy
	NamespacesPerPage int // 1..1000; default DefaultNamespacesPerPage
	ObjectsPerPage    int // 10..10000; default DefaultObjectsPerPage

	Now    func() time.Time                                 // default time.Now; decides Retry-After dates and deadlines
	Sleep  func(ctx context.Context, d time.Duration) error // retry waits; default: a timer that stops when ctx is done
	Logger *slog.Logger                                     // retries are logged at Warn; default discards
}

// Validate reports missing or out-of-range options. Zero values that have
// defaults are valid.
func (o Options) Validate() error {
	var errs []error
	if o.BaseURL != "" {
		u, err := url.Parse(o.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("base URL %q is not an http(s) URL", o.BaseURL))
		}
	}
	if strings.TrimSpace(o.AccountID) == "" || strings.ContainsAny(o.AccountID, "/?#% ") {
		errs = append(errs, fmt.Errorf("account id %q is empty or not an id", o.AccountID))
	}
	if o.Token.IsZero() {
		errs = append(errs, errors.New("API token is empty"))
	} else if strings.IndexFunc(o.Token.Reveal(), func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		// Such a token cannot go in a header; Go would refuse to send it and
		// the failure would look like a connection error.
		errs = append(errs, errors.New("API token contains whitespace or control characters"))
	}
	if o.NamespacesPerPage != 0 && (o.NamespacesPerPage < 1 || o.NamespacesPerPage > MaxNamespacesPerPage) {
		errs = append(errs, fmt.Errorf("namespaces per page %d is outside 1..%d", o.NamespacesPerPage, MaxNamespacesPerPage))
	}
	if o.ObjectsPerPage != 0 && (o.ObjectsPerPage < MinObjectsPerPage || o.ObjectsPerPage > MaxObjectsPerPage) {
		errs = append(errs, fmt.Errorf("objects per page %d is outside %d..%d", o.ObjectsPerPage, MinObjectsPerPage, MaxObjectsPerPage))
	}
	r := o.Retry
	if r.MaxAttempts < 0 || r.BaseDelay < 0 || r.MaxDelay < 0 || r.MaxRetryAfter < 0 {
		errs = append(errs, errors.New("retry policy has negative values"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cloudflare: options: %w", err)
	}
	return nil
}

// Client reads Durable Object namespaces and objects of one account. It is
// safe for concurrent use.
type Client struct {
	base    *url.URL
	account string
	token   sensitive.String
	http    *http.Client
	limiter *Limiter
	retry   RetryPolicy
	nsPage  int
	objPage int
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	log     *slog.Logger
}

// New returns a Client for o.
func New(o Options) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("cloudflare: base URL: %w", err)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if o.Limiter == nil {
		if o.Limiter, err = NewLimiter(LimiterConfig{}); err != nil {
			return nil, err
		}
	}
	if o.NamespacesPerPage == 0 {
		o.NamespacesPerPage = DefaultNamespacesPerPage
	}
	if o.ObjectsPerPage == 0 {
		o.ObjectsPerPage = DefaultObjectsPerPage
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleepContext
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		base: base, account: o.AccountID, token: o.Token, http: guardRedirects(o.HTTPClient),
		limiter: o.Limiter, retry: o.Retry.withDefaults(),
		nsPage: o.NamespacesPerPage, objPage: o.ObjectsPerPage,
		now: o.Now, sleep: o.Sleep, log: o.Logger,
	}, nil
}

// resultInfo covers both pagination styles: page-based (namespaces) and
// cursor-based (objects; newer API schemas nest the cursor as cursors.after).
type resultInfo struct {
	Page       int    `json:"page"`
	PerPage    int    `json:"per_page"`
	Count      int    `json:"count"`
	TotalCount int    `json:"total_count"`
	TotalPages int    `json:"total_pages"`
	Cursor     string `json:"cursor"`
	Cursors    struct {
		After string `json:"after"`
	} `json:"cursors"`
}

type envelope[T any] struct {
	Success    *bool      `json:"success"`
	Errors     []Message  `json:"errors"`
	Result     []T        `json:"result"`
	ResultInfo resultInfo `json:"result_info"`
}

// get performs GET path?query with rate limiting and retries and decodes a
// successful envelope.
func get[T any](ctx context.Context, c *Client, path string, query url.Values) (envelope[T], error) {
	u := *c.base
	u.Path, u.RawPath = c.base.Path+path, ""
	u.RawQuery = query.Encode()

	for attempt := 1; ; attempt++ {
		if err := c.limiter.Wait(ctx); err != nil {
			return envelope[T]{}, err
		}
		env, apiErr, err := getOnce[T](ctx, c, u.String())
		if err != nil {
			return envelope[T]{}, err // ctx done
		}
		if apiErr == nil {
			return env, nil
		}
		apiErr.Method, apiErr.Path, apiErr.Attempts = http.MethodGet, path, attempt
		if apiErr.RetryAfter > 0 {
			// The budget is the token's, so every client sharing the
			// limiter has to pause, not just this call.
			c.limiter.Block(c.now().Add(apiErr.RetryAfter))
		}
		if !retryable(apiErr.Kind) || attempt >= c.retry.MaxAttempts || apiErr.RetryAfter > c.retry.MaxRetryAfter {
			return envelope[T]{}, apiErr
		}
		delay := max(c.retry.backoff(attempt), apiErr.RetryAfter)
		if dl, ok := ctx.Deadline(); ok && c.now().Add(delay).After(dl) {
			// Sleeping past the deadline only to fail with ctx's error
			// would hide the real cause.
			return envelope[T]{}, apiErr
		}
		c.log.WarnContext(ctx, "cloudflare: retrying", "path", path, "attempt", attempt,
			"status", apiErr.Status, "delay", delay, "error", apiErr.Error())
		if err := c.sleep(ctx, delay); err != nil {
			return envelope[T]{}, err
		}
	}
}

// getOnce makes one request. It returns a non-nil error only when ctx is
// done; every other failure is an *APIError.
func getOnce[T any](ctx context.Context, c *Client, rawURL string) (envelope[T], *APIError, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return envelope[T]{}, &APIError{Kind: ErrBadRequest, Cause: err}, nil
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return envelope[T]{}, nil, ctx.Err()
		}
		if errors.Is(err, ErrRedirect) {
			return envelope[T]{}, &APIError{Kind: ErrRedirect, Cause: err}, nil
		}
		return envelope[T]{}, &APIError{Kind: ErrServer, Cause: err}, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		if ctx.Err() != nil {
			return envelope[T]{}, nil, ctx.Err()
		}
		return envelope[T]{}, &APIError{Kind: ErrServer, Status: resp.StatusCode, Cause: fmt.Errorf("read body: %w", err)}, nil
	}
	if len(body) > maxBody {
		return envelope[T]{}, &APIError{Kind: ErrBadResponse, Status: resp.StatusCode, Cause: fmt.Errorf("body larger than %d bytes", maxBody)}, nil
	}

	var env envelope[T]
	jsonErr := json.Unmarshal(body, &env)
	ok2xx := resp.StatusCode >= 200 && resp.StatusCode < 300
	if ok2xx && jsonErr == nil && env.Success != nil && *env.Success {
		return env, nil, nil
	}
	apiErr := &APIError{Status: resp.StatusCode}
	if jsonErr == nil {
		apiErr.Errors = env.Errors
	} else {
		apiErr.Body = snippet(body)
	}
	switch {
	case ok2xx && jsonErr != nil:
		apiErr.Kind, apiErr.Cause = ErrBadResponse, fmt.Errorf("decode: %w", jsonErr)
	case ok2xx:
		apiErr.Kind = ErrBadResponse // success missing or false on 2xx
	default:
		apiErr.Kind = classify(resp.StatusCode, apiErr.Errors)
	}
	if apiErr.Kind == ErrRateLimited {
		apiErr.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
	}
	return envelope[T]{}, apiErr, nil
}

// parseRetryAfter accepts delta-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// snippet keeps the start of a non-JSON body (an HTML error page from a
// proxy, say) for the error message.
func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		b = b[:200]
	}
	return strings.ToValidUTF8(string(b), "?")
}
