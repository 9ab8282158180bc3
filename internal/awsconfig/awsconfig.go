package awsconfig

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqsschemas "github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// SQSProtocol selects the wire protocol of the SQS client.
type SQSProtocol string

const (
	// SQSJSON is the SDK default (AWS JSON 1.0).
	SQSJSON SQSProtocol = "json"
	// SQSQuery is the older form-encoded protocol with XML responses, still
	// accepted by SQS and by emulators that predate the JSON protocol.
	SQSQuery SQSProtocol = "query"
)

// Config selects region, credentials and endpoint for every client. The zero
// value uses the SDK's default chains (environment, shared config, IMDS,
// Lambda role) and the real AWS endpoints.
type Config struct {
	// Region; "" leaves it to the default chain (AWS_REGION and friends).
	Region string
	// AccessKeyID and SecretAccessKey, when both set, replace the default
	// credential chain with static credentials (tests, emulators).
	AccessKeyID     string
	SecretAccessKey sensitive.String
	SessionToken    sensitive.String
	// Endpoint overrides the base URL of S3, SQS, Secrets Manager and STS.
	Endpoint string
	// S3PathStyle addresses buckets as /bucket/key instead of
	// bucket.host; emulators on 127.0.0.1 need it.
	S3PathStyle bool
	// SQSProtocol is "" or SQSJSON for the SDK default, or SQSQuery.
	SQSProtocol SQSProtocol
}

// ApplyEnv overrides Endpoint and S3PathStyle from the variables named by
// lambdaenv.AWSEndpoint and lambdaenv.S3PathStyle when they are set. getenv
// is usually os.Getenv.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if v := getenv(lambdaenv.AWSEndpoint); v != "" {
		c.Endpoint = v
	}
	if v := getenv(lambdaenv.S3PathStyle); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("awsconfig: %s=%q: %w", lambdaenv.S3PathStyle, v, err)
		}
		c.S3PathStyle = b
	}
	return nil
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if (c.AccessKeyID == "") != c.SecretAccessKey.IsZero() {
		return errors.New("awsconfig: static credentials need both an access key id and a secret access key")
	}
	if c.AccessKeyID == "" && !c.SessionToken.IsZero() {
		return errors.New("awsconfig: a session token needs static credentials")
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil {
			return fmt.Errorf("awsconfig: endpoint %q: %w", c.Endpoint, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("awsconfig: endpoint %q must be an absolute http(s) URL", c.Endpoint)
		}
	}
	switch c.SQSProtocol {
	case "", SQSJSON, SQSQuery:
	default:
		return fmt.Errorf("awsconfig: unknown SQS protocol %q", c.SQSProtocol)
	}
	return nil
}

// Clients builds service clients that share one aws.Config.
type Clients struct {
	aws aws.Config
	cfg Config
}

// Load validates c and resolves the shared aws.Config (credentials are
// resolved lazily, on first use).
func Load(ctx context.Context, c Config) (*Clients, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var opts []func(*config.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(
			c.AccessKeyID, c.SecretAccessKey.Reveal(), c.SessionToken.Reveal())))
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("awsconfig: load: %w", err)
	}
	return &Clients{aws: ac, cfg: c}, nil
}

// AWS returns a copy of the shared aws.Config, e.g. for an STS assume-role
// credentials provider. It carries no endpoint override; use the client
// constructors below for that.
func (c *Clients) AWS() aws.Config { return c.aws.Copy() }

func (c *Clients) endpoint() *string {
	if c.cfg.Endpoint == "" {
		return nil
	}
	return aws.String(c.cfg.Endpoint)
}

// S3 returns an S3 client with the endpoint override and path-style
// setting applied before optFns.
func (c *Clients) S3(optFns ...func(*s3.Options)) *s3.Client {
	return s3.NewFromConfig(c.aws, append([]func(*s3.Options){func(o *s3.Options) {
		o.BaseEndpoint = c.endpoint()
		o.UsePathStyle = c.cfg.S3PathStyle
	}}, optFns...)...)
}

// SQS returns an SQS client with the endpoint override and wire protocol
// applied before optFns.
func (c *Clients) SQS(optFns ...func(*sqs.Options)) *sqs.Client {
	return sqs.NewFromConfig(c.aws, append([]func(*sqs.Options){func(o *sqs.Options) {
		o.BaseEndpoint = c.endpoint()
		if c.cfg.SQSProtocol == SQSQuery {
			o.Protocol = awsquery.New(sqsschemas.AmazonSQS)
		}
	}}, optFns...)...)
}

// SecretsManager returns a Secrets Manager client with the endpoint
// override applied before optFns.
func (c *Clients) SecretsManager(optFns ...func(*secretsmanager.Options)) *secretsmanager.Client {
	return secretsmanager.NewFromConfig(c.aws, append([]func(*secretsmanager.Options){func(o *secretsmanager.Options) {
		o.BaseEndpoint = c.endpoint()
	}}, optFns...)...)
}

// STS returns an STS client with the endpoint override applied before
// optFns.
func (c *Clients) STS(optFns ...func(*sts.Options)) *sts.Client {
	return sts.NewFromConfig(c.aws, append([]func(*sts.Options){func(o *sts.Options) {
		o.BaseEndpoint = c.endpoint()
	}}, optFns...)...)
}

// InRegion returns Clients whose clients use region instead of the
// shared config's ("" returns c itself). drcopy reaches the DR bucket
// through one: the SDK does not follow S3's 301 to a bucket's own region,
// and the STS of an assume-role is better regional too (it keeps working
// in the DR region when the function's own region is the one that is out).
func (c *Clients) InRegion(region string) *Clients {
	if region == "" || region == c.aws.Region {
		return c
	}
	ac := c.aws.Copy()
	ac.Region = region
	return &Clients{aws: ac, cfg: c.cfg}
}

// Region is the region the clients use.
func (c *Clients) Region() string { return c.aws.Region }

// S3AsRole returns an S3 client whose credentials come from assuming
// roleARN (through STS with the endpoint override, in the clients'
// region), as drcopy writes to a bucket of another account.
func (c *Clients) S3AsRole(roleARN, session string, optFns ...func(*s3.Options)) *s3.Client {
	provider := stscreds.NewAssumeRoleProvider(c.STS(), roleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = session
	})
	creds := aws.NewCredentialsCache(provider)
	return c.S3(append([]func(*s3.Options){func(o *s3.Options) { o.Credentials = creds }}, optFns...)...)
}

// Lambda returns a Lambda client; endpoint, when set, overrides the
// service endpoint (tests).
func (c *Clients) Lambda(endpoint string, optFns ...func(*lambda.Options)) *lambda.Client {
	return lambda.NewFromConfig(c.aws, append([]func(*lambda.Options){func(o *lambda.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}}, optFns...)...)
}
