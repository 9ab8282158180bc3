package lambdainvoke

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

// Invoker invokes a function asynchronously (InvocationType Event):
// Lambda queues the request, retries it on failure and sends what still
// fails to the function's dead-letter queue.
type Invoker struct {
	client   *lambda.Client
	function string
}

// New invokes function (name or ARN) with client.
func New(client *lambda.Client, function string) (*Invoker, error) {
	if client == nil || function == "" {
		return nil, errors.New("lambdainvoke: lambda invoker needs a client and a function")
	}
	return &Invoker{client: client, function: function}, nil
}

// Start implements Invoker.
func (l *Invoker) Start(ctx context.Context, req events.StartRequest) error {
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
		return fmt.Errorf("lambdainvoke: invoke %s: %w", l.function, err)
	}
	if out.StatusCode != 202 && out.StatusCode != 200 {
		return fmt.Errorf("lambdainvoke: invoke %s: status %d", l.function, out.StatusCode)
	}
	if out.FunctionError != nil {
		return fmt.Errorf("lambdainvoke: invoke %s: %s", l.function, aws.ToString(out.FunctionError))
	}
	return nil
}
