// Package motoserver runs moto_server on a free 127.0.0.1 port for tests, so
// the S3, SQS and Secrets Manager adapters are exercised over real HTTP
// instead of SDK mocks. A test binary shares one server when its TestMain
// calls Main; otherwise every Start gets its own server for the test's
// lifetime.
package motoserver
