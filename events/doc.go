// Package events holds edgevault's own message contracts: the job record,
// tasks and their status, and the queue envelope, with frozen JSON fixtures
// in testdata/. Import aws-lambda-go's events package as awsevents next to
// this one.
package events
