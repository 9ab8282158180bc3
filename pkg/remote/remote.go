package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Service is the SigV4 signing name of API Gateway's invoke endpoint.
const Service = "execute-api"

// maxResponse bounds a response body; job statuses and listings are small.
const maxResponse = 8 << 20

// Options configure a Client.
type Options struct {
	// API is the API's base URL (the stack's ApiUrl output), e.g.
	// https://abc.execute-api.eu-west-1.amazonaws.com/prod/.
	API string
	// Region signs requests; it must be the API's region.
	Region      string
	Credentials aws.CredentialsProvider
	HTTPClient  *http.Client
	Now         func() time.Time
}

// Client calls the API.
type Client struct {
	base   *url.URL
	region string
	creds  aws.CredentialsProvider
	hc     *http.Client
	signer *v4.Signer
	now    func() time.Time
}

// New validates o and returns a Client.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.API)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("remote: API URL %q is not an http(s) URL", o.API)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if o.Region == "" {
		return nil, errors.New("remote: no region to sign requests for: pass --region or set AWS_REGION")
	}
	if o.Credentials == nil {
		return nil, errors.New("remote: no AWS credentials")
	}
	c := &Client{base: u, region: o.Region, creds: o.Credentials, hc: o.HTTPClient, signer: v4.NewSigner(), now: o.Now}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: time.Minute}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// API is the base URL requests go to.
func (c *Client) API() string { return c.base.String() }

// Error is an error answer of the API.
type Error struct {
	Status    int
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
	Job       string `json:"job"`
}

func (e *Error) Error() string {
	s := fmt.Sprintf("remote: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Job != "" {
		s += " (job " + e.Job + ")"
	}
	return s
}

// do sends one signed request and decodes a 2xx JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, header map[string]string, body, out any) error {
	u := c.base.ResolveReference(&url.URL{Path: strings.TrimPrefix(path, "/"), RawQuery: query.Encode()})
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(payload))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("remote: AWS credentials: %w", err)
	}
	sum := sha256.Sum256(payload)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), Service, c.region, c.now()); err != nil {
		return fmt.Errorf("remote: signing: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("remote: %s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("remote: %s %s: reading the answer: %w", method, u.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error   *Error `json:"error"`
			Message string `json:"message"` // API Gateway's own refusals ({"message": ...})
		}
		if json.Unmarshal(b, &e) == nil && e.Error != nil {
			e.Error.Status = resp.StatusCode
			return e.Error
		}
		msg := e.Message
		if msg == "" {
			msg = strings.TrimSpace(string(b))
		}
		code := "http_" + fmt.Sprint(resp.StatusCode)
		if resp.StatusCode == http.StatusForbidden {
			code = "forbidden"
		}
		return &Error{Status: resp.StatusCode, Code: code, Message: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("remote: %s %s: the answer is not JSON: %w", method, u.Redacted(), err)
	}
	return nil
}

// BackupRequest is POST /backups.
type BackupRequest struct {
	IncludeStorage bool `json:"includeStorage"`
	IncludeSecrets bool `json:"includeSecrets"`
}

// RestoreRequest is POST /restores; Confirm must be true.
type RestoreRequest struct {
	Archive          string   `json:"archive"`
	SkipStorage      bool     `json:"skipStorage,omitempty"`
	FullStorage      bool     `json:"fullStorage,omitempty"`
	SkipSecrets      bool     `json:"skipSecrets,omitempty"`
	Only             []string `json:"only,omitempty"`
	AllowSchemaDrift bool     `json:"allowSchemaDrift,omitempty"`
	Confirm          bool     `json:"confirm"`
}

// Started is the answer to a start.
type Started struct {
	ID string `json:"id"`
}

// idempotencyKey makes a retried start return the same job.
func idempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartBackup starts an on-demand backup.
func (c *Client) StartBackup(ctx context.Context, r BackupRequest) (string, error) {
	var s Started
	err := c.do(ctx, http.MethodPost, "backups", nil, map[string]string{"Idempotency-Key": idempotencyKey()}, r, &s)
	return s.ID, err
}

// StartRestore starts a restore of an archive of the backup bucket.
func (c *Client) StartRestore(ctx context.Context, r RestoreRequest) (string, error) {
	var s Started
	err := c.do(ctx, http.MethodPost, "restores", nil, map[string]string{"Idempotency-Key": idempotencyKey()}, r, &s)
	return s.ID, err
}

// Kind names the two job collections: "backup" or "restore".
type Kind string

// Job kinds.
const (
	Backup  Kind = "backup"
	Restore Kind = "restore"
)

func (k Kind) path() string { return string(k) + "s" }

// Job fetches GET /{kind}s/{id}; the raw JSON is returned for printing
// as it is (fields are only ever added).
func (c *Client) Job(ctx context.Context, kind Kind, id string) (Status, json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, kind.path()+"/"+url.PathEscape(id), nil, nil, nil, &raw); err != nil {
		return Status{}, nil, err
	}
	var s Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return Status{}, nil, fmt.Errorf("remote: job %s: %w", id, err)
	}
	return s, raw, nil
}

// List fetches one page of GET /{kind}s, newest first.
func (c *Client) List(ctx context.Context, kind Kind, limit int, cursor string) (json.RawMessage, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var raw json.RawMessage
	err := c.do(ctx, http.MethodGet, kind.path(), q, nil, nil, &raw)
	return raw, err
}

// Status is the part of a job's status the CLI acts on.
type Status struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	Units struct {
		Total    int `json:"total"`
		Done     int `json:"done"`
		Failed   int `json:"failed"`
		Retrying int `json:"retrying"`
		Pending  int `json:"pending"`
	} `json:"units"`
	Bytes   int64 `json:"bytes"`
	Rows    int64 `json:"rows"`
	Objects int64 `json:"objects"`
	Errors  []struct {
		Unit    string `json:"unit"`
		Message string `json:"message"`
	} `json:"errors"`
	Archive *struct {
		Key  string `json:"key"`
		Size int64  `json:"size"`
	} `json:"archive"`
	TargetState string `json:"targetState"`
}

// Terminal reports a job that will not change any more.
func (s Status) Terminal() bool { return s.State == "done" || s.State == "failed" }

// NotFoundGrace is how long Watch waits for a job just started to appear.
const NotFoundGrace = 2 * time.Minute

// Watch polls a job until it is done or failed, calling fn after every
// poll; it returns the final status.
func (c *Client) Watch(ctx context.Context, kind Kind, id string, every time.Duration, fn func(Status)) (Status, json.RawMessage, error) {
	first := c.now()
	for {
		s, raw, err := c.Job(ctx, kind, id)
		var re *Error
		switch {
		case errors.As(err, &re) && re.Status == http.StatusNotFound && c.now().Sub(first) < NotFoundGrace:
			// A job started a moment ago is visible once the scheduler
			// has recorded it.
		case err != nil:
			return s, raw, err
		default:
			if fn != nil {
				fn(s)
			}
			if s.Terminal() {
				return s, raw, nil
			}
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return s, raw, ctx.Err()
		case <-t.C:
		}
	}
}
