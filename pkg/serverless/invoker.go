package serverless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/edgevault/edgevault/events"
)

// Invoker starts a job without waiting for its planning: the api function
// hands the request to the scheduler function.
type Invoker interface {
	Start(ctx context.Context, req events.StartRequest) error
}

// InvokerFunc adapts a function (an in-process scheduler in tests).
type InvokerFunc func(ctx context.Context, req events.StartRequest) error

// Start implements Invoker.
func (f InvokerFunc) Start(ctx context.Context, req events.StartRequest) error { return f(ctx, req) }

// LambdaInvoker invokes a function asynchronously (InvocationType Event):
// Lambda queues the request, retries it on failure and sends what still
// fails to the function's dead-letter queue.
type LambdaInvoker struct {
	client   *lambda.Client
	function string
}

// NewLambdaInvoker invokes function (name or ARN) with client.
func NewLambdaInvoker(client *lambda.Client, function string) (*LambdaInvoker, error) {
	if client == nil || function == "" {
		return nil, errors.New("serverless: lambda invoker needs a client and a function")
	}
	return &LambdaInvoker{client: client, function: function}, nil
}

// Start implements Invoker.
func (l *LambdaInvoker) Start(ctx context.Context, req events.StartRequest) error {
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := l.client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(l.function),
		InvocationType: types.InvocationTypeEvent,
		Payload:        payload,
	})
	if err != nil {
		return fmt.Errorf("serverless: invoke %s: %w", l.function, err)
	}
	if out.StatusCode != 202 && out.StatusCode != 200 {
		return fmt.Errorf("serverless: invoke %s: status %d", l.function, out.StatusCode)
	}
	if out.FunctionError != nil {
		return fmt.Errorf("serverless: invoke %s: %s", l.function, aws.ToString(out.FunctionError))
	}
	return nil
}
