// Command scheduler is the edgevault scheduler Lambda function (a StartRequest or an EventBridge scheduled event starts a backup or restore job). It only
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
	cfg, err := serverless.ConfigFromEnv(lambdaenv.Scheduler, os.Getenv)
	if err != nil {
		fail(err)
	}
	h, err := serverless.NewScheduler(ctx, cfg, serverless.LambdaRuntime())
	if err != nil {
		fail(err)
	}
	lambda.Start(h.Handle)
}

// fail reports an init error; Lambda records the failed init and retries
// it on the next invocation.
func fail(err error) {
	slog.New(slog.NewJSONHandler(os.Stdout, nil)).Error("scheduler: init failed", "function", lambdaenv.Scheduler, "err", err)
	os.Exit(1)
}
