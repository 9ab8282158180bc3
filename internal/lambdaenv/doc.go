// Package lambdaenv is the contract between the Lambda functions and the
// infrastructure that deploys them: the function names and the environment
// variables each one reads. functions/* read these names and infra/ sets
// them; a test in infra asserts the two agree.
package lambdaenv
