// Package secrets declares Store, where a deployment's EdgeBase secrets
// live. Its adapters are the subpackages devvars (the official CLI's local
// files) and secretsmanager (AWS Secrets Manager, which also reads the
// single credentials the functions need). Secret values never appear in
// errors or logs.
package secrets
