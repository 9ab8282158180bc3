// Package cloudflare enumerates EdgeBase's Durable Objects in Edge mode,
// where the deployment runs on Cloudflare and the only complete list of DO
// instances is Cloudflare's REST API: it pages through the account's DO
// namespaces, keeps those of the EdgeBase Worker script and its DatabaseDO /
// AuthDO classes, and streams each namespace's object ids page by page,
// keeping the ids that hold stored data and counting the rest, so millions of
// ids never sit in memory at once. Those 64-hex ids are not names: the
// pipeline later resolves them to DO names (`shared`, `workspace:ws-1`, ...)
// through EdgeBase's `POST /admin/api/backup/list-dos {"hexIds":[...]}`, in
// chunks, and reconciles the resolved count with the stored count (protocol
// §4.2, §8.13); that resolution is not done here. Every request waits on a
// Limiter, because Cloudflare's budget (1200 requests per 5 minutes) belongs
// to the token and is shared by everything using it; retries (429 with
// Retry-After, 5xx, connection errors) happen here and nowhere above.
package cloudflare
