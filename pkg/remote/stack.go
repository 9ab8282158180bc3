package remote

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
)

// DefaultStack is the stack name the CDK app deploys.
const DefaultStack = "EdgeVault"

// APIURLOutput is the stack output holding the API's base URL.
const APIURLOutput = "ApiUrl"

// FindAPI reads the API's base URL from the stack's outputs.
func FindAPI(ctx context.Context, cfn *cloudformation.Client, stack string) (string, error) {
	out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
	if err != nil {
		return "", fmt.Errorf("remote: reading the outputs of stack %s: %w", stack, err)
	}
	if len(out.Stacks) == 0 {
		return "", fmt.Errorf("remote: no stack %s", stack)
	}
	for _, o := range out.Stacks[0].Outputs {
		if aws.ToString(o.OutputKey) == APIURLOutput && aws.ToString(o.OutputValue) != "" {
			return aws.ToString(o.OutputValue), nil
		}
	}
	return "", fmt.Errorf("remote: stack %s has no %s output (is it an edgevault stack? pass --api)", stack, APIURLOutput)
}
