package r2

import (
	"context"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

type countingResolver struct {
	calls int
	next  s3.EndpointResolverV2
}

func (c *countingResolver) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	c.calls++
	return c.next.ResolveEndpoint(ctx, p)
}

// The rules run once per bucket and endpoint, whatever the key; the
// answer is the rules' own (URL and signing properties).
func TestCachedEndpointsResolveOncePerBucket(t *testing.T) {
	ctx := context.Background()
	rules := s3.NewDefaultEndpointResolverV2()
	counting := &countingResolver{next: rules}
	c := newCachedEndpoints()
	c.next = counting
	params := func(bucket, key string) s3.EndpointParameters {
		return s3.EndpointParameters{Bucket: aws.String(bucket), Region: aws.String("auto"), Endpoint: aws.String("https://acct.r2.example"),
			ForcePathStyle: aws.Bool(true), UseFIPS: aws.Bool(false), UseDualStack: aws.Bool(false), Key: aws.String(key)}
	}
	for _, k := range []string{"a", "b/c", "d e%"} {
		got, err := c.ResolveEndpoint(ctx, params("bkt", k))
		if err != nil {
			t.Fatal(err)
		}
		want, err := rules.ResolveEndpoint(ctx, params("bkt", k))
		if err != nil {
			t.Fatal(err)
		}
		if got.URI.String() != want.URI.String() || got.URI.String() != "https://acct.r2.example/bkt" {
			t.Errorf("key %q: %s, the rules say %s", k, got.URI.String(), want.URI.String())
		}
		g, _ := smithyauth.GetAuthOptions(&got.Properties)
		w, _ := smithyauth.GetAuthOptions(&want.Properties)
		if len(g) == 0 || len(g) != len(w) || g[0].SchemeID != w[0].SchemeID {
			t.Errorf("key %q: auth options %+v, the rules give %+v", k, g, w)
		}
	}
	if counting.calls != 1 {
		t.Errorf("%d resolutions for one bucket, want 1", counting.calls)
	}
	if _, err := c.ResolveEndpoint(ctx, params("other", "a")); err != nil {
		t.Fatal(err)
	}
	if counting.calls != 2 {
		t.Errorf("%d resolutions for two buckets, want 2", counting.calls)
	}
	// An S3 Express bucket's endpoint may depend on the key: never cached.
	for range 2 {
		_, _ = c.ResolveEndpoint(ctx, params("b--x-s3", "a"))
	}
	if counting.calls != 4 {
		t.Errorf("%d resolutions after two S3 Express ones, want 4", counting.calls)
	}
}

// Requests write into the auth options they resolved (signer
// properties); a cached answer must not be shared with other requests.
func TestCachedEndpointsHandOutCopies(t *testing.T) {
	ctx := context.Background()
	c := newCachedEndpoints()
	p := s3.EndpointParameters{Bucket: aws.String("bkt"), Region: aws.String("auto"), Endpoint: aws.String("https://acct.r2.example"), ForcePathStyle: aws.Bool(true)}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				e, err := c.ResolveEndpoint(ctx, p)
				if err != nil {
					t.Error(err)
					return
				}
				opts, _ := smithyauth.GetAuthOptions(&e.Properties)
				for _, o := range opts {
					o.SignerProperties.Set("probe", i*100+j) // as the SDK's middleware does
				}
				e.Headers.Set("X-Probe", "1")
			}
		}()
	}
	wg.Wait()
	e, _ := c.ResolveEndpoint(ctx, p)
	opts, _ := smithyauth.GetAuthOptions(&e.Properties)
	if len(opts) == 0 || opts[0].SignerProperties.Has("probe") || e.Headers.Get("X-Probe") != "" {
		t.Errorf("a request's writes reached the cached endpoint: %+v %v", opts, e.Headers)
	}
}
