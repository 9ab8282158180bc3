package awsconfig

import "github.com/aws/aws-sdk-go-v2/service/kms"

// KMS returns a KMS client (signing keys, repository keys) with the endpoint override
// applied before optFns.
func (c *Clients) KMS(optFns ...func(*kms.Options)) *kms.Client {
	return kms.NewFromConfig(c.aws, append([]func(*kms.Options){func(o *kms.Options) {
		o.BaseEndpoint = c.endpoint()
	}}, optFns...)...)
}
