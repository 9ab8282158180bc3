// Command api is the edgevault api Lambda function (API Gateway REST proxy: start backups and restores, read job state). It only
// wires: configuration from the environment (pkg/lambdaenv), clients built
// once per cold start, and the handler of pkg/serverless.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/edgevault/edgevault/pkg/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	ctx := context.Background()
	cfg, err := serverless.ConfigFromEnv(lambdaenv.API, os.Getenv)
	if err != nil {
		fail(err)
	}
	h, err := serverless.NewAPI(ctx, cfg, serverless.LambdaRuntime(), nil)
	if err != nil {
		fail(err)
	}
	lambda.Start(h.Handle)
}

// fail reports an init error; Lambda records the failed init and retries
// it on the next invocation.
func fail(err error) {
	slog.New(slog.NewJSONHandler(os.Stdout, nil)).Error("api: init failed", "function", lambdaenv.API, "err", err)
	os.Exit(1)
}
