// Package e2e runs the serverless functions end to end on this machine:
// moto_server stands in for S3, SQS and Secrets Manager, the EdgeBase and
// Cloudflare emulators for the deployment, SetupStack creates the
// resources the CDK stack would (mirroring its settings), and a Poller per
// queue stands in for Lambda's SQS event source mapping. The tests run
// only with EDGEVAULT_E2E=1 or EDGEVAULT_SLOW=1 (`make e2e`, `make test`).
// TestE2EDrill also synthesizes the CDK app (Node.js) to check the drill's
// metrics against the alarms of the template; moto stands in for KMS too.
package e2e
