// Package sqs is the Queue of the serverless runtime, over one Amazon SQS
// standard queue: Send batches within SQS's limits, Receive long-polls and
// reports ApproximateReceiveCount as the attempt, Ack deletes and Nack
// changes the message's visibility. The caller builds the *sqs.Client (see
// pkg/awsconfig; either wire protocol works); errors that are worth
// retrying later carry a Transient() bool method.
package sqs
