package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// fail wraps an SDK error for op on key: missing objects become
// blob.ErrNotExist, and failures retrying cannot fix are marked
// pipeline.Permanent.
func (s *Store) fail(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("s3: %s %s: %w", op, key, blob.ErrNotExist)
	}
	return fmt.Errorf("s3: %s %s: %w", op, key, classify(err))
}

// classify marks err permanent once, here, when neither the SDK retryer's
// rules nor the S3 codes that mean "try again later" call it transient
// and the server answered with a 4xx (access denied, no such bucket, an
// invalid request). By the time an error reaches us the SDK has already
// retried it.
func classify(err error) error {
	if errors.Is(err, blob.ErrNotExist) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isTransient(err) {
		return err
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 400 && re.HTTPStatusCode() < 500 {
		return pipeline.Permanent(err)
	}
	return err
}

func isTransient(err error) bool {
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary {
		return true
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		if sc := re.HTTPStatusCode(); sc == http.StatusTooManyRequests || sc >= 500 {
			return true
		}
	}
	// A concurrent conditional write or a conflicting operation on the
	// same key; S3 asks to retry both.
	return hasCode(err, "ConditionalRequestConflict") || hasCode(err, "OperationAborted")
}

func hasCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// isNotFound: NoSuchKey from GET, NotFound from HEAD (which has no body to
// say more). NoSuchBucket stays a configuration error.
func isNotFound(err error) bool {
	return hasCode(err, "NoSuchKey") || hasCode(err, "NotFound")
}
