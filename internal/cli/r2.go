package cli

import (
	"github.com/spf13/pflag"

	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// r2Flags move storage through R2's S3 API instead of the Worker when
// any of them (or their environment variables) is set.
type r2Flags struct {
	endpoint, accountID, bucket, accessKeyID, secret string
	virtualHosted                                    bool
}

func (r *r2Flags) register(f *pflag.FlagSet) {
	f.StringVar(&r.endpoint, "r2-endpoint", "", "R2 direct: S3 API endpoint (env R2_ENDPOINT; default https://<--r2-account-id>.r2.cloudflarestorage.com)")
	f.StringVar(&r.accountID, "r2-account-id", "", "R2 direct: Cloudflare account id of the bucket (env R2_ACCOUNT_ID)")
	f.StringVar(&r.bucket, "r2-bucket", "", "R2 direct: the R2 bucket bound as EdgeBase's storage (env R2_BUCKET)")
	f.StringVar(&r.accessKeyID, "r2-access-key-id", "", "R2 direct: R2 API token access key id (env R2_ACCESS_KEY_ID)")
	f.StringVar(&r.secret, "r2-secret-access-key", "", "R2 direct: R2 API token secret (env R2_SECRET_ACCESS_KEY; prefer the env)")
	f.BoolVar(&r.virtualHosted, "r2-virtual-hosted", false, "R2 direct: address the bucket as a host name instead of a path")
}

// store builds the R2-direct adapter, or nil when no R2 setting is given
// (storage then goes through the admin API).
func (a *app) r2Storage(r *r2Flags) (edgevault.StorageDirect, error) {
	cfg := r2.Config{Endpoint: r.endpoint, AccountID: r.accountID, Bucket: r.bucket,
		AccessKeyID: r.accessKeyID, SecretAccessKey: sensitive.String(r.secret), VirtualHosted: r.virtualHosted}
	cfg.ApplyEnv(a.env.Getenv)
	if !cfg.Enabled() {
		return nil, nil
	}
	s, err := r2.New(cfg)
	if err != nil {
		return nil, failure("invalid_arguments", err)
	}
	return s, nil
}
