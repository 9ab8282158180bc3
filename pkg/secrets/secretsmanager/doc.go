// Package secretsmanager reads credentials and EdgeBase secrets from AWS
// Secrets Manager: Manager.GetString fetches one secret value (the EdgeBase
// service key, the Cloudflare API token) as a redacting sensitive.String,
// and Store is the secrets.Store over one secret that holds a JSON object
// of EdgeBase secrets. Secret values never appear in errors.
package secretsmanager
