// Package awsconfig builds the aws.Config and the S3, SQS, Secrets Manager
// and STS clients that main packages hand to the adapters. It is the one
// place that knows about endpoint overrides and S3 path-style addressing, so
// the same adapters run unchanged against AWS and a local emulator such as
// moto_server.
package awsconfig
