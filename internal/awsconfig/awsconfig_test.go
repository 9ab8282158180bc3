package awsconfig

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/edgevault/edgevault/internal/lambdaenv"
)

func TestValidate(t *testing.T) {
	for _, c := range []Config{
		{AccessKeyID: "a"},
		{SecretAccessKey: "s"},
		{SessionToken: "t"},
		{Endpoint: "127.0.0.1:5000"},
		{Endpoint: "ftp://x"},
		{Endpoint: "http://"},
		{SQSProtocol: "xml"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	for _, c := range []Config{
		{},
		{Region: "eu-west-1", AccessKeyID: "a", SecretAccessKey: "s", SessionToken: "t", Endpoint: "http://127.0.0.1:5000", S3PathStyle: true, SQSProtocol: SQSQuery},
		{SQSProtocol: SQSJSON},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{lambdaenv.AWSEndpoint: "http://127.0.0.1:5000", lambdaenv.S3PathStyle: "true"}
	var c Config
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Endpoint != "http://127.0.0.1:5000" || !c.S3PathStyle {
		t.Fatalf("ApplyEnv = %+v", c)
	}
	c = Config{Endpoint: "http://keep", S3PathStyle: true}
	if err := c.ApplyEnv(func(string) string { return "" }); err != nil || c.Endpoint != "http://keep" || !c.S3PathStyle {
		t.Fatalf("unset variables changed %+v (%v)", c, err)
	}
	env[lambdaenv.S3PathStyle] = "yes please"
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err == nil {
		t.Fatal("invalid boolean accepted")
	}
}

func TestNoEndpointKeepsDefaults(t *testing.T) {
	c, err := Load(context.Background(), Config{Region: "us-east-1", AccessKeyID: "a", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if o := c.S3().Options(); o.BaseEndpoint != nil || o.UsePathStyle {
		t.Errorf("S3 options changed without an override: %v %v", o.BaseEndpoint, o.UsePathStyle)
	}
	if o := c.SQS().Options(); o.BaseEndpoint != nil {
		t.Errorf("SQS endpoint set without an override")
	}
}

type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

// TestClientsUseOverride sends one request per client to a real local
// server and checks where it went and how it was encoded.
func TestClientsUseOverride(t *testing.T) {
	var s seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.body = append(s.body, string(b))
		s.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest) // any error ends the call
	}))
	defer srv.Close()
	for _, proto := range []SQSProtocol{"", SQSJSON, SQSQuery} {
		s.reqs, s.body = nil, nil
		c, err := Load(context.Background(), Config{
			Region: "us-east-1", AccessKeyID: "AKIDTEST", SecretAccessKey: "secret",
			Endpoint: srv.URL, S3PathStyle: true, SQSProtocol: proto,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		noRetry := func(o *s3.Options) { o.RetryMaxAttempts = 1 }
		_, _ = c.S3(noRetry).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("a b/c")})
		_, _ = c.SQS(func(o *sqs.Options) { o.RetryMaxAttempts = 1 }).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(srv.URL + "/1/q"), MessageBody: aws.String("m")})
		_, _ = c.SecretsManager(func(o *secretsmanager.Options) { o.RetryMaxAttempts = 1 }).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("x")})
		_, _ = c.STS(func(o *sts.Options) { o.RetryMaxAttempts = 1 }).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if len(s.reqs) != 4 {
			t.Fatalf("%q: server saw %d requests, want 4", proto, len(s.reqs))
		}
		if p := s.reqs[0].URL.EscapedPath(); p != "/bkt/a%20b/c" {
			t.Errorf("S3 path = %q, want path-style /bkt/a%%20b/c", p)
		}
		for _, r := range s.reqs {
			if a := r.Header.Get("Authorization"); !strings.Contains(a, "Credential=AKIDTEST/") {
				t.Errorf("request not signed with the static key: %q", a)
			}
		}
		sqsReq, sqsBody := s.reqs[1], s.body[1]
		if proto == SQSQuery {
			if ct := sqsReq.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") || !strings.Contains(sqsBody, "Action=SendMessage") {
				t.Errorf("query protocol sent %q: %q", ct, sqsBody)
			}
		} else if tgt := sqsReq.Header.Get("X-Amz-Target"); tgt != "AmazonSQS.SendMessage" {
			t.Errorf("JSON protocol sent X-Amz-Target %q", tgt)
		}
		if tgt := s.reqs[2].Header.Get("X-Amz-Target"); tgt != "secretsmanager.GetSecretValue" {
			t.Errorf("Secrets Manager request X-Amz-Target %q", tgt)
		}
	}
}

// The DR side's clients (S3 and the STS of the assume-role) are built in
// the DR region; the rest keep the function's own.
func TestInRegion(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	c, err := Load(context.Background(), Config{Region: "us-east-1", AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", Endpoint: srv.URL, S3PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.InRegion("") != c || c.InRegion("us-east-1") != c {
		t.Fatal("InRegion of the own region made new clients")
	}
	dr := c.InRegion("eu-central-1")
	if dr.Region() != "eu-central-1" || c.Region() != "us-east-1" {
		t.Fatalf("regions %q %q", dr.Region(), c.Region())
	}
	if r := dr.S3().Options().Region; r != "eu-central-1" {
		t.Errorf("DR S3 region %q", r)
	}
	if r := dr.STS().Options().Region; r != "eu-central-1" {
		t.Errorf("DR STS region %q", r)
	}
	if o := dr.S3().Options(); o.BaseEndpoint == nil || *o.BaseEndpoint != srv.URL || !o.UsePathStyle {
		t.Error("the endpoint override was lost")
	}
	// The assume-role request (STS) and the S3 request it signs for are
	// both scoped to the DR region.
	noRetry := func(o *s3.Options) { o.RetryMaxAttempts = 1 }
	_, _ = dr.S3AsRole("arn:aws:iam::111111111111:role/w", "s", noRetry).GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	mu.Lock()
	defer mu.Unlock()
	if len(auths) == 0 {
		t.Fatal("no request reached the server")
	}
	for _, a := range auths {
		if !strings.Contains(a, "/eu-central-1/") {
			t.Errorf("request signed for another region: %q", a)
		}
	}
}
