// Package secrets reads credentials and EdgeBase secrets from AWS Secrets
// Manager: Manager.GetString fetches one secret value (the EdgeBase service
// key, the Cloudflare API token) as a redacting sensitive.String, and Store
// is the backup.SecretStore over one secret that holds a JSON object of
// EdgeBase secrets. The local-file store of the official CLI lives in
// subpackage devvars. Secret values never appear in errors.
package secrets
