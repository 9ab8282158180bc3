package r2

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Config says where the bucket is and how to sign. The flag and
// environment names appear in every error about a setting, so a user
// knows what to change.
type Config struct {
	// Endpoint is the S3 API base URL; empty derives it from AccountID.
	Endpoint  string
	AccountID string
	Bucket    string
	// AccessKeyID and SecretAccessKey are an R2 API token's S3
	// credentials (Object Read for backup, Object Read & Write for
	// restore).
	AccessKeyID     string
	SecretAccessKey sensitive.String
	// VirtualHosted addresses the bucket as <bucket>.<endpoint host>;
	// the default is path style, which R2 and local S3 servers accept.
	VirtualHosted bool
	// MaxAttempts bounds the SDK's retries of throttled (503 SlowDown)
	// and failed requests (0 = DefaultMaxAttempts).
	MaxAttempts int
}

// DefaultMaxAttempts is the SDK's default attempt count.
const DefaultMaxAttempts = 3

// Setting names used in messages.
const (
	FlagEndpoint  = "--r2-endpoint (R2_ENDPOINT) / --r2-account-id (R2_ACCOUNT_ID)"
	FlagBucket    = "--r2-bucket (R2_BUCKET)"
	FlagAccessKey = "--r2-access-key-id (R2_ACCESS_KEY_ID)"
	FlagSecret    = "--r2-secret-access-key (R2_SECRET_ACCESS_KEY)"
)

// Enabled reports whether a bucket location (endpoint, account id or
// bucket) was given: storage then goes through R2 direct, and Validate
// says what is missing. Credentials alone select nothing, so they can
// stay in the environment of admin-API runs.
func (c Config) Enabled() bool {
	return c.Endpoint != "" || c.AccountID != "" || c.Bucket != ""
}

// ApplyEnv fills unset fields from R2_ENDPOINT, R2_ACCOUNT_ID, R2_BUCKET,
// R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY.
func (c *Config) ApplyEnv(getenv func(string) string) {
	set := func(dst *string, name string) {
		if *dst == "" {
			*dst = getenv(name)
		}
	}
	set(&c.Endpoint, "R2_ENDPOINT")
	set(&c.AccountID, "R2_ACCOUNT_ID")
	set(&c.Bucket, "R2_BUCKET")
	set(&c.AccessKeyID, "R2_ACCESS_KEY_ID")
	if c.SecretAccessKey.IsZero() {
		c.SecretAccessKey = sensitive.String(getenv("R2_SECRET_ACCESS_KEY"))
	}
}

var accountID = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

// Validate reports every missing or malformed setting at once.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Endpoint != "":
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("r2: %s: %q is not an http(s) URL", FlagEndpoint, c.Endpoint))
		}
	case c.AccountID == "":
		errs = append(errs, fmt.Errorf("r2: %s is required", FlagEndpoint))
	case !accountID.MatchString(c.AccountID):
		errs = append(errs, fmt.Errorf("r2: %s: an account id is 32 hex digits", FlagEndpoint))
	}
	if c.Bucket == "" {
		errs = append(errs, fmt.Errorf("r2: %s is required (the R2 bucket bound as EdgeBase's STORAGE)", FlagBucket))
	}
	if c.AccessKeyID == "" {
		errs = append(errs, fmt.Errorf("r2: %s is required", FlagAccessKey))
	}
	if c.SecretAccessKey.IsZero() {
		errs = append(errs, fmt.Errorf("r2: %s is required", FlagSecret))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, errors.New("r2: max attempts must not be negative"))
	}
	return errors.Join(errs...)
}

// EndpointURL is the S3 API base URL.
func (c Config) EndpointURL() string {
	if c.Endpoint != "" {
		return strings.TrimRight(c.Endpoint, "/")
	}
	return "https://" + strings.ToLower(c.AccountID) + ".r2.cloudflarestorage.com"
}
