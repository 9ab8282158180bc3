// Package devvars is the secrets.Store of a local EdgeBase project
// directory, following the official CLI (protocol 5.4): secrets are read
// from the JWT_USER_SECRET, JWT_ADMIN_SECRET and SERVICE_KEY lines of
// ./.dev.vars, or else from the whole of ./.edgebase/secrets.json, and a
// restore merges them into both files. Unlike the CLI it creates both
// files 0600 from the start, writes them atomically, and refuses values
// that are not strings or would not survive the .dev.vars format.
package devvars
