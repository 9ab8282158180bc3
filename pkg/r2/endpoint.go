package r2

import (
	"context"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// cachedEndpoints resolves an endpoint once per set of the parameters
// that decide it and reuses the SDK's answer (URL, headers, signing
// properties). With region "auto", which no AWS partition lists by name,
// the SDK's rules compile every partition's region pattern again on each
// request (awsrulesfn.getPartition): a quarter of the client's CPU in a
// run of small GETs. For a fixed endpoint and bucket the answer does not
// depend on the object key, prefix or copy source, which are left out of
// the cache key; S3 Express bucket names, whose endpoints do depend on
// them, always go to the rules.
type cachedEndpoints struct {
	next s3.EndpointResolverV2
	mu   sync.Mutex
	m    map[endpointKey]smithyendpoints.Endpoint
}

type endpointKey struct {
	bucket, region, endpoint string
	flags                    [12]bool
}

func newCachedEndpoints() *cachedEndpoints {
	return &cachedEndpoints{next: s3.NewDefaultEndpointResolverV2(), m: map[endpointKey]smithyendpoints.Endpoint{}}
}

func keyOf(p s3.EndpointParameters) (endpointKey, bool) {
	b := aws.ToString(p.Bucket)
	if strings.HasSuffix(b, "--x-s3") || strings.HasSuffix(b, "--xa-s3") {
		return endpointKey{}, false
	}
	return endpointKey{bucket: b, region: aws.ToString(p.Region), endpoint: aws.ToString(p.Endpoint), flags: [12]bool{
		p.Bucket != nil, aws.ToBool(p.UseFIPS), aws.ToBool(p.UseDualStack), aws.ToBool(p.ForcePathStyle), aws.ToBool(p.Accelerate),
		aws.ToBool(p.UseGlobalEndpoint), aws.ToBool(p.UseObjectLambdaEndpoint), aws.ToBool(p.DisableAccessPoints),
		aws.ToBool(p.DisableMultiRegionAccessPoints), aws.ToBool(p.UseArnRegion), aws.ToBool(p.UseS3ExpressControlEndpoint),
		aws.ToBool(p.DisableS3ExpressSessionAuth),
	}}, true
}

func (c *cachedEndpoints) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	k, ok := keyOf(p)
	if !ok {
		return c.next.ResolveEndpoint(ctx, p)
	}
	c.mu.Lock()
	e, hit := c.m[k]
	c.mu.Unlock()
	if !hit {
		var err error
		if e, err = c.next.ResolveEndpoint(ctx, p); err != nil {
			return e, err
		}
		c.mu.Lock()
		c.m[k] = e
		c.mu.Unlock()
	}
	return fresh(e), nil
}

// fresh copies what a request may write into: the SDK sets signer
// properties on the resolved auth options, so every request gets its own
// options, property maps and headers (the URL is a value).
func fresh(e smithyendpoints.Endpoint) smithyendpoints.Endpoint {
	out := smithyendpoints.Endpoint{URI: e.URI, Headers: e.Headers.Clone()}
	out.Properties.SetAll(&e.Properties)
	if opts, ok := smithyauth.GetAuthOptions(&e.Properties); ok {
		cp := make([]*smithyauth.Option, len(opts))
		for i, o := range opts {
			c := &smithyauth.Option{SchemeID: o.SchemeID}
			c.IdentityProperties.SetAll(&o.IdentityProperties)
			c.SignerProperties.SetAll(&o.SignerProperties)
			cp[i] = c
		}
		smithyauth.SetAuthOptions(&out.Properties, cp)
	}
	return out
}
