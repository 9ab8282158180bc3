// Package motoserver runs moto_server on a free 127.0.0.1 port for tests, so
// the S3, SQS and Secrets Manager adapters are exercised over real HTTP
// instead of SDK mocks. A test binary shares one server when its TestMain
// calls Main; otherwise every Start gets its own server for the test's
// lifetime. Clients reach moto through a small reverse proxy that gives
// conditional writes S3's atomicity (one create-if-absent wins), which moto
// alone lacks under concurrency.
package motoserver
