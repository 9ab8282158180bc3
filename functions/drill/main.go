// Command drill is the edgevault drill Lambda function (EventBridge: a
// weekly drill of the newest archive into the scratch deployment, and an
// hourly report of the last proven archive's age). It only wires:
// serverless.Main reads the configuration from the environment
// (internal/lambdaenv), connects its AWS dependencies once per cold start
// and serves the handler of pkg/serverless.
package main

import (
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.Drill, serverless.NewDrill, func(h *serverless.Drill) any { return h.Handle })
}
