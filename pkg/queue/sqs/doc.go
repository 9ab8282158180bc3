// Package sqs is the Queue of the serverless runtime, over one Amazon SQS
// standard queue: Send batches within SQS's limits, Receive long-polls and
// reports ApproximateReceiveCount as the attempt, Ack deletes and Nack
// changes the message's visibility. The caller builds the *sqs.Client (see
// internal/awsconfig; either wire protocol works); errors that retrying
// cannot fix are marked pipeline.Permanent.
package sqs
