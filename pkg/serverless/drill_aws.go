package serverless

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/edgebase"
	kmssigner "github.com/edgevault/edgevault/pkg/provenance/kms"
	"github.com/edgevault/edgevault/pkg/secrets/secretsmanager"
)

// connectDrill connects what the drill and the manifest signing use: the
// KMS signing key (assembler, drill) and the scratch deployment with its
// own service key (drill). A function that reads neither gets nothing.
func connectDrill(ctx context.Context, cfg Config, clients *awsconfig.Clients, d *Deps) error {
	reads := func(name string) bool { return slices.Contains(lambdaenv.Reads[cfg.Function], name) }
	if reads(lambdaenv.SigningKeyARN) && cfg.SigningKeyARN != "" {
		s, err := kmssigner.New(ctx, clients.KMS(), cfg.SigningKeyARN)
		if err != nil {
			return fmt.Errorf("serverless: the signing key: %w", err)
		}
		d.Signer = s
	}
	if !reads(lambdaenv.DrillURL) {
		return nil
	}
	sm, err := secretsmanager.New(clients.SecretsManager())
	if err != nil {
		return err
	}
	key := sm.Credential(cfg.DrillKeySecret, cfg.SecretTTL, time.Now)
	if _, err := key.Get(ctx); err != nil {
		return fmt.Errorf("serverless: the scratch deployment's service key: %w", err)
	}
	d.Scratch, err = edgebase.New(edgebase.Options{BaseURL: cfg.DrillURL, ServiceKeyFunc: key.Get, RefreshServiceKey: key.Refresh})
	if err != nil {
		return fmt.Errorf("serverless: the scratch deployment: %w", err)
	}
	return nil
}
