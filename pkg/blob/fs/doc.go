// Package fs is the BlobStore (and Composer) of the embedded runtime: a
// directory tree on local disk where each key is a file path under a root.
// Writes go to a hidden temporary file in the target directory and are
// fsynced and renamed into place, so a blob is either complete or absent;
// files are created 0600 and directories 0700 because backups may hold
// secrets, and every access goes through an os.Root so no key or symlink
// can reach outside the root.
package fs
