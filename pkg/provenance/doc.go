// Package provenance makes an archive's manifest evidence rather than a
// claim: it signs manifests (Ed25519 key files for the CLI, any Signer such
// as the KMS adapter in provenance/kms for the stack), links the manifests
// of one source into a hash chain (each carries the SHA-256 of the one
// before), and checks both, so a rewritten manifest, a foreign key, or an
// archive removed from or moved within a series is refused by name. The
// archive itself is never touched: unsigned archives stay byte-compatible
// with the official EdgeBase CLI.
package provenance
