// Package cloudflaretest is an in-process emulator of the two Cloudflare REST
// API endpoints edgevault uses in Edge mode (listing Durable Object namespaces
// and the objects in a namespace), with Cloudflare's response envelope, its
// bearer-token checks, both pagination styles and fault injection (429 with
// Retry-After, 5xx, latency). Tests register namespaces and 64-hex object ids
// (for example the ids of the EdgeBase emulator's DOs) and point
// pkg/cloudflare at URL(), so enumeration runs over real HTTP.
package cloudflaretest
