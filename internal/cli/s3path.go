package cli

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/awsconfig"
	s3blob "github.com/edgevault/edgevault/pkg/blob/s3"
)

// s3Scheme marks a path in S3: s3://bucket/prefix (a directory of
// archives) or s3://bucket/key (one archive).
const s3Scheme = "s3://"

// Part size and uploads in flight of the CLI's S3 writes: the smallest
// part S3 allows and two in flight keep a backup's memory small even with
// every task uploading at once.
const (
	cliS3PartSize    = s3blob.MinPartSize
	cliS3Concurrency = 1
)

// s3Path is a parsed s3:// URL.
type s3Path struct {
	Bucket string
	Key    string // without a leading slash; a directory prefix has no trailing one
}

func isS3(p string) bool { return strings.HasPrefix(p, s3Scheme) }

// parseS3 splits s3://bucket/key.
func parseS3(raw string) (s3Path, error) {
	rest, ok := strings.CutPrefix(raw, s3Scheme)
	if !ok {
		return s3Path{}, fmt.Errorf("%q is not an s3:// URL", raw)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" || strings.ContainsAny(bucket, " \\?#") {
		return s3Path{}, fmt.Errorf("%q: no valid bucket name after s3://", raw)
	}
	key = strings.Trim(key, "/")
	if strings.Contains(key, "//") {
		return s3Path{}, fmt.Errorf("%q: empty path segment", raw)
	}
	return s3Path{Bucket: bucket, Key: key}, nil
}

// String is the canonical URL.
func (p s3Path) String() string {
	if p.Key == "" {
		return s3Scheme + p.Bucket
	}
	return s3Scheme + p.Bucket + "/" + p.Key
}

// Join names key under p.
func (p s3Path) Join(key string) string {
	return s3Path{Bucket: p.Bucket, Key: strings.Trim(path.Join(p.Key, key), "/")}.String()
}

// Dir is the directory prefix of p as a store prefix ("" or "a/b/").
func (p s3Path) Dir() string {
	if p.Key == "" {
		return ""
	}
	return p.Key + "/"
}

// awsFlags are the flags of commands that may use s3:// paths.
type awsFlags struct{ region string }

func (f *awsFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.region, "region", "", "AWS region of s3:// paths (default: the AWS credential chain's, AWS_REGION or the profile's)")
}

// awsClients resolves the AWS configuration: the default credential chain
// (AWS_PROFILE, environment, SSO, instance roles), --region, and the
// endpoint override of the environment (emulators).
func (a *app) awsClients(ctx context.Context, f awsFlags) (*awsconfig.Clients, error) {
	var c awsconfig.Config
	if a.env.aws != nil {
		c = *a.env.aws
	}
	if f.region != "" {
		c.Region = f.region
	}
	if err := c.ApplyEnv(a.env.Getenv); err != nil {
		return nil, err
	}
	return awsconfig.Load(ctx, c)
}

// s3Store opens the S3 directory prefix p as a blob store.
func (a *app) s3Store(ctx context.Context, f awsFlags, p s3Path) (*s3blob.Store, error) {
	clients, err := a.awsClients(ctx, f)
	if err != nil {
		return nil, err
	}
	if clients.Region() == "" {
		return nil, errors.New("no AWS region for " + p.String() + ": pass --region or set AWS_REGION (or a profile's region)")
	}
	return s3blob.New(clients.S3(), p.Bucket, p.Dir(), s3blob.Options{PartSize: cliS3PartSize, Concurrency: cliS3Concurrency})
}

// s3Object opens the store holding one object URL and returns its key.
func (a *app) s3Object(ctx context.Context, f awsFlags, raw string) (*s3blob.Store, string, error) {
	p, err := parseS3(raw)
	if err != nil {
		return nil, "", err
	}
	if p.Key == "" {
		return nil, "", fmt.Errorf("%s names a bucket, not an archive", raw)
	}
	dir, name := path.Split(p.Key)
	st, err := a.s3Store(ctx, f, s3Path{Bucket: p.Bucket, Key: strings.TrimSuffix(dir, "/")})
	return st, name, err
}

// embedOutput wires the embedded pipeline over an output: a local
// directory or an s3:// prefix. It returns the output as reports name it
// (an absolute directory or the canonical URL).
func (a *app) embedOutput(ctx context.Context, output string, f awsFlags, o embedOptions) (*embedded, string, error) {
	if !isS3(output) {
		out, err := filepath.Abs(output)
		if err != nil {
			return nil, "", err
		}
		e, err := a.embed(out, o)
		return e, out, err
	}
	p, err := parseS3(output)
	if err != nil {
		return nil, "", err
	}
	st, err := a.s3Store(ctx, f, p)
	if err != nil {
		return nil, "", err
	}
	e, err := a.embedStore(st, func() error { return nil }, o)
	return e, p.String(), err
}

// outPath names a store key of an output for reports.
func outPath(out, key string) string {
	if isS3(out) {
		p, err := parseS3(out)
		if err == nil {
			return p.Join(key)
		}
	}
	return filepath.Join(out, filepath.FromSlash(key))
}
