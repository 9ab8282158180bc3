package sqs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

func client(t *testing.T, p awsconfig.SQSProtocol) *sqs.Client {
	t.Helper()
	cfg := motoserver.Config(t)
	cfg.SQSProtocol = p
	c, err := awsconfig.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c.SQS()
}

func newQueueURL(t *testing.T, c *sqs.Client, attrs map[string]string) string {
	t.Helper()
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(motoserver.Name(t, "queue")), Attributes: attrs})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	return aws.ToString(out.QueueUrl)
}

func TestSuite(t *testing.T) {
	for _, p := range []awsconfig.SQSProtocol{awsconfig.SQSJSON, awsconfig.SQSQuery} {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			c := client(t, p)
			queuetest.Run(t, func(t *testing.T) pipeline.Queue {
				q, err := New(c, newQueueURL(t, c, nil), Options{VisibilityTimeout: queuetest.VisibilityTimeout})
				if err != nil {
					t.Fatal(err)
				}
				return q
			})
		})
	}
}

// TestQueueDefaultVisibility checks that Options{} leaves the queue's own
// visibility timeout in charge (a zero must not be sent as "0 s").
func TestQueueDefaultVisibility(t *testing.T) {
	c := client(t, awsconfig.SQSJSON)
	url := newQueueURL(t, c, map[string]string{"VisibilityTimeout": "30"})
	q, err := New(c, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := q.Send(ctx, pipeline.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Receive(ctx, 1, time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %v, %v", ds, err)
	}
	time.Sleep(1500 * time.Millisecond)
	if ds, err := q.Receive(ctx, 1, 0); err != nil || len(ds) != 0 {
		t.Fatalf("message visible again within the queue's 30 s timeout: %v, %v", ds, err)
	}
}

func TestSecondsRoundsUp(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		hi   time.Duration
		want int32
	}{
		{0, MaxDelay, 0}, {-time.Second, MaxDelay, 0}, {time.Millisecond, MaxDelay, 1},
		{time.Second, MaxDelay, 1}, {1500 * time.Millisecond, MaxDelay, 2},
		{time.Hour, MaxDelay, 900}, {25 * time.Second, MaxWait, 20},
	} {
		if got := seconds(c.d, c.hi); got != c.want {
			t.Errorf("seconds(%v, %v) = %d, want %d", c.d, c.hi, got, c.want)
		}
	}
}

// TestPartialBatchFailure runs against a real HTTP server that answers
// SendMessageBatch as SQS does when some entries fail.
func TestPartialBatchFailure(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		calls++
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = io.WriteString(w, `{"Successful":[{"Id":"0","MessageId":"a","MD5OfMessageBody":"cfcd208495d565ef66e7dff9f98764da"}],`+
			`"Failed":[{"Id":"1","Code":"InternalError","Message":"try again","SenderFault":false},`+
			`{"Id":"2","Code":"InvalidParameterValue","Message":"bad","SenderFault":true}]}`)
	}))
	defer srv.Close()
	c, err := awsconfig.Load(context.Background(), awsconfig.Config{Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s", Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(c.SQS(), srv.URL+"/123456789012/q", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []pipeline.Message
	for i := range 13 {
		msgs = append(msgs, pipeline.Message{Body: []byte(strconv.Itoa(i))})
	}
	err = q.Send(context.Background(), msgs...)
	if err == nil {
		t.Fatal("partial failure not reported")
	}
	for _, want := range []string{"2 of 10 messages failed", "message 1: InternalError", "message 2: InvalidParameterValue"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if !pipeline.IsPermanent(err) {
		t.Error("a sender fault was not marked permanent")
	}
	if calls != 1 {
		t.Errorf("Send went on after a failed batch (%d calls)", calls)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
