package motoserver

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestStartServesS3(t *testing.T) {
	c := Clients(t)
	bucket := Name(t, "bucket")
	ctx := context.Background()
	if _, err := c.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	out, err := c.S3().ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatalf("list buckets: %v", err)
	}
	found := false
	for _, b := range out.Buckets {
		found = found || aws.ToString(b.Name) == bucket
	}
	if !found {
		t.Fatalf("bucket %s not listed", bucket)
	}
}

func TestMissingBinarySkipsOutsideCI(t *testing.T) {
	t.Setenv("MOTO_SERVER", "")
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "")
	if _, err := binary(); err == nil {
		t.Fatal("binary found on an empty PATH")
	}
	ran := false
	t.Run("skips", func(t *testing.T) {
		defer func() { ran = true }()
		Start(t)
		t.Error("Start returned without a binary")
	})
	if !ran {
		t.Fatal("subtest did not run")
	}
}
