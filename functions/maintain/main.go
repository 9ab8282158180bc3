// Command maintain is the edgevault maintain Lambda function of
// repository mode (EventBridge: a daily forget+prune of the repository by
// the retention policy, and a weekly export of the newest snapshot as a
// v1.1 .tar.gz archive). It only wires: serverless.Main reads the
// configuration from the environment (internal/lambdaenv), connects its
// AWS dependencies once per cold start and serves the handler of
// pkg/serverless.
package main

import (
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.Maintain, serverless.NewMaintain, func(h *serverless.Maintain) any { return h.Handle })
}
