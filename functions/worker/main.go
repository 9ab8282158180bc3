// Command worker is the edgevault worker Lambda function (SQS task queue:
// runs tasks, partial batch response). It only wires: serverless.Main
// reads the configuration from the environment (internal/lambdaenv),
// connects its AWS dependencies once per cold start and serves the handler
// of pkg/serverless.
package main

import (
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.Worker, serverless.NewWorker, func(h *serverless.Worker) any { return h.Handle })
}
