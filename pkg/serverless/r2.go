package serverless

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// R2Credentials is the value of the R2 secret (lambdaenv.R2Secret): an
// R2 API token's S3 credentials.
type R2Credentials struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
}

// ConnectR2 builds R2 direct from the config and the secret's value, or
// returns nil when no R2 bucket is configured (storage then goes through
// the admin API). The value is read once per cold start: an R2 token is
// replaced by putting a new value and letting the functions recycle.
func ConnectR2(ctx context.Context, cfg Config, secret func(ctx context.Context, id string) (sensitive.String, error)) (edgevault.StorageDirect, error) {
	if cfg.R2Bucket == "" {
		return nil, nil
	}
	v, err := secret(ctx, cfg.R2Secret)
	if err != nil {
		return nil, fmt.Errorf("serverless: the R2 credentials: %w", err)
	}
	var c R2Credentials
	if err := json.Unmarshal([]byte(v.Reveal()), &c); err != nil {
		// The value is not echoed: it is a secret.
		return nil, fmt.Errorf("serverless: the R2 credentials in %s are not a JSON object {\"accessKeyId\":…,\"secretAccessKey\":…}", cfg.R2Secret)
	}
	s, err := r2.New(r2.Config{Endpoint: cfg.R2Endpoint, Bucket: cfg.R2Bucket, AccessKeyID: c.AccessKeyID,
		SecretAccessKey: sensitive.String(c.SecretAccessKey)})
	if err != nil {
		return nil, fmt.Errorf("serverless: R2 direct (%s, %s): %w", cfg.R2Endpoint, cfg.R2Bucket, err)
	}
	return s, nil
}
