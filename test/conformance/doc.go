// Package conformance proves edgevault against a real EdgeBase server: the
// unmodified dev server that ../shared/peer installs and runs on loopback,
// or, for the read-only part, any deployment named by EDGEBASE_URL and
// EDGEBASE_SERVICE_KEY. It checks two-way interop with the official CLI
// (each direction, with and without storage), instance (dynamic) DOs,
// awkward data (odd R2 keys, empty and one-byte objects, NULLs, large
// numbers, blobs, a 500k-row table) and restores into dirty, never-used and
// cold targets, every one judged by comparing data fingerprints of source
// and target. The tests run with EDGEVAULT_PEER=1 (or EDGEVAULT_READONLY=1);
// scripts/conformance.sh (make conformance) sets everything up.
package conformance
