package serverless

import (
	"fmt"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	repokms "github.com/edgevault/edgevault/pkg/repository/kms"
)

// connectRepository connects, in repository mode, the repository the
// scheduler, the worker and the assembler back up into and the maintain
// function keeps: the backup bucket under RepositoryPrefix (objects
// written with the bucket's SSE-KMS key, as every other), and the KMS key
// that wraps the repository key. Neither makes a call here.
func connectRepository(cfg Config, clients *awsconfig.Clients, d *Deps) error {
	switch cfg.Function {
	case lambdaenv.Scheduler, lambdaenv.Worker, lambdaenv.Assembler, lambdaenv.Maintain:
	default:
		return nil
	}
	if cfg.RepositoryPrefix == "" {
		return nil
	}
	store, err := s3store.New(clients.S3(), cfg.Bucket, cfg.RepositoryPrefix, s3store.Options{KMSKeyID: cfg.KMSKeyARN})
	if err != nil {
		return fmt.Errorf("serverless: the repository store: %w", err)
	}
	key, err := repokms.New(clients.KMS(), cfg.RepositoryKMSKey)
	if err != nil {
		return fmt.Errorf("serverless: the repository key: %w", err)
	}
	d.Repository, d.RepositoryKey = store, key
	return nil
}
