// Command scheduler is the edgevault scheduler Lambda function (a
// StartRequest or an EventBridge scheduled event starts a backup or
// restore job). It only wires: serverless.Main reads the configuration
// from the environment (internal/lambdaenv), connects its AWS dependencies
// once per cold start and serves the handler of pkg/serverless.
package main

import (
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.Scheduler, serverless.NewScheduler, func(h *serverless.Scheduler) any { return h.Handle })
}
