// Command api is the edgevault api Lambda function (API Gateway REST proxy: start backups and restores, read job state). It only
// wires: serverless.Main reads the configuration from the environment
// (pkg/lambdaenv), builds the clients once per cold start and serves the
// handler of pkg/serverless.
package main

import (
	"context"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.API, func(ctx context.Context, cfg serverless.Config, rt serverless.Runtime) (*serverless.API, error) {
		return serverless.NewAPI(ctx, cfg, rt, nil) // nil: invoke the scheduler function named in cfg
	}, func(h *serverless.API) any { return h.Handle })
}
