// Package kms signs manifests with an asymmetric AWS KMS key
// (ECC_NIST_P256, SIGN_VERIFY), so the stack's private key never leaves
// KMS. Its public key, written with provenance.EncodePublicKey, is what
// `edgevault backup verify --trust` takes, so archives signed in the
// stack verify offline.
package kms
