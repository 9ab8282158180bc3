// Command api is the edgevault api Lambda function (API Gateway REST
// proxy: start backups and restores, read job state). It only wires:
// serverless.Main reads the configuration from the environment
// (internal/lambdaenv), connects its AWS dependencies once per cold start
// and serves the handler of pkg/serverless.
package main

import (
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.API, serverless.NewAPI, func(h *serverless.API) any { return h.Handle })
}
