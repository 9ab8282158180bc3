// Package remote is the client of a deployed edgevault's API (the api
// function behind API Gateway with IAM authorization): every request is
// signed with AWS Signature Version 4 for execute-api, the API's URL comes
// from the stack's CloudFormation outputs, and job starts, status and
// listings are typed. It is what `edgevault remote` uses instead of
// awscurl.
package remote
