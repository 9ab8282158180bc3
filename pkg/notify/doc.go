// Package notify tells someone that a job ended: a webhook with a
// Slack-compatible JSON body, signed with HMAC-SHA256
// (X-EdgeVault-Signature: sha256=<hex>), retried with backoff. A Notifier
// records each job end's delivery in the blob store (a marker created
// once, then compare-and-swapped), so the redelivered messages and
// repeated calls of an at-least-once runtime send one notification per job
// end; a delivery that may have reached the receiver before a crash is
// re-sent with the same X-EdgeVault-Delivery id for the receiver to drop.
package notify
