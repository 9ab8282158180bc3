package awsconfig

import "github.com/aws/aws-sdk-go-v2/service/cloudformation"

// CloudFormation returns a CloudFormation client (stack outputs).
func (c *Clients) CloudFormation(optFns ...func(*cloudformation.Options)) *cloudformation.Client {
	return cloudformation.NewFromConfig(c.aws, append([]func(*cloudformation.Options){func(o *cloudformation.Options) {
		o.BaseEndpoint = c.endpoint()
	}}, optFns...)...)
}
