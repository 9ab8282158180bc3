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
)

// transientError marks a failure that may succeed when retried later
// (throttling, 5xx, network, a concurrent conditional write). Callers test
// for it with errors.As on interface{ Transient() bool }, without
// importing this package.
type transientError struct{ err error }

func (e *transientError) Error() string   { return e.err.Error() }
func (e *transientError) Unwrap() error   { return e.err }
func (e *transientError) Transient() bool { return true }

// fail wraps an SDK error for op on key: missing objects become
// blob.ErrNotExist, and transient failures are marked.
func (s *Store) fail(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("s3: %s %s: %w", op, key, blob.ErrNotExist)
	}
	return fmt.Errorf("s3: %s %s: %w", op, key, classify(err))
}

// classify marks err transient once, here, using the SDK retryer's own
// rules plus the S3 codes that mean "try again later". By the time an
// error reaches us the SDK has already retried it.
func classify(err error) error {
	var te *transientError
	if errors.As(err, &te) || errors.Is(err, blob.ErrNotExist) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if isTransient(err) {
		return &transientError{err}
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
