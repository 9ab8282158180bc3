package motoserver

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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

// Concurrent create-if-absent PUTs of one key: exactly one wins, as on S3.
// moto alone let two win in about 1 round of 100 (16 writers each).
func TestConditionalPutsHaveOneWinner(t *testing.T) {
	c := Clients(t).S3()
	ctx := context.Background()
	bucket := Name(t, "bucket")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	for round := range 25 {
		key := fmt.Sprint("race/", round)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
					Body: bytes.NewReader(make([]byte, 1024)), IfNoneMatch: aws.String("*")})
				if err == nil {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d writers won", round, n)
		}
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
