// Package lambdainvoke starts the scheduler function with Lambda's
// asynchronous Invoke (the api function's Invoker in the serverless
// runtime); Lambda retries a failed invocation and dead-letters what still
// fails.
package lambdainvoke
