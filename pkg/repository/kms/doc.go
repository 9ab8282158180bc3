// Package kms wraps repository keys with a symmetric AWS KMS key
// (envelope encryption): a repository's kms key file holds its key sealed
// under a random 32-byte key that KMS encrypted, with the repository id as
// encryption context, so only principals allowed to decrypt with the KMS
// key open the repository and a wrapped key cannot be moved to another
// repository. It implements repository.KeyWrapper.
package kms
