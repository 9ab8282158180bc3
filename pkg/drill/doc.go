// Package drill proves that an archive restores: after the archive was
// restored into a scratch EdgeBase deployment, it reads everything back
// through the admin API and compares it unit by unit with the archive —
// row counts and an order-independent content hash per table per DO, D1
// database and data namespace, users, and every storage object's size,
// SHA-256 and content type. It also holds the guards that keep a drill
// off anything but a scratch target. Both sides are streamed: memory
// grows with one row and with a small record per storage object, never
// with a dump's or an object's size.
package drill
