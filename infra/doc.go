// Command infra is the AWS CDK app of the serverless edgevault deployment
// (cdk.json runs it with `go run ./infra`): NewBackupStack defines the
// backup bucket, queues, secrets, the five Lambda functions with their
// triggers and least-privilege roles, and the alarms; NewDRDestinationStack
// defines what the disaster-recovery account needs. Settings come from CDK
// context (see Config and docs/DEPLOY.md); the functions' names and
// environment come from pkg/lambdaenv, and cdk-nag's AwsSolutions checks
// run on every synth.
package main
