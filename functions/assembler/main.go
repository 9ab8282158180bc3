// Command assembler is the edgevault assembler Lambda function (SQS
// control queue: checks jobs, assembles finished backups). It only wires:
// serverless.Main reads the configuration from the environment
// (internal/lambdaenv), connects its AWS dependencies once per cold start
// and serves the handler of pkg/serverless.
package main

import (
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.Assembler, serverless.NewAssembler, func(h *serverless.Assembler) any { return h.Handle })
}
