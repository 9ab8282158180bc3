package secrets

import "context"

// Store holds a deployment's EdgeBase secrets (JWT_USER_SECRET,
// JWT_ADMIN_SECRET, SERVICE_KEY, ...): a backup with --include-secrets
// reads them, a restore writes them back last. Adapters: devvars (a local
// project's .dev.vars and .edgebase/secrets.json) and secretsmanager (one
// AWS Secrets Manager secret holding a JSON object).
type Store interface {
	// Load returns every secret; an empty store gives an empty map.
	Load(ctx context.Context) (map[string]string, error)
	// Save merges values into the store.
	Save(ctx context.Context, values map[string]string) error
}
