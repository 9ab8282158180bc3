// Command drcopy is the edgevault drcopy Lambda function: on an archive
// manifest's S3 ObjectCreated event, or the daily reconcile, it copies the
// archive server-side to the DR bucket, resumably, verified against the
// manifest before it completes. It only wires: serverless.Main reads the
// configuration from the environment (internal/lambdaenv), connects its
// AWS dependencies once per cold start and serves the handler of
// pkg/serverless.
package main

import (
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func main() {
	serverless.Main(lambdaenv.DRCopy, serverless.NewDRCopy, func(h *serverless.DRCopy) any { return h.Handle })
}
