package s3

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

// newBucket creates a fresh bucket on the shared moto server.
func newBucket(t *testing.T) (*s3.Client, string) {
	t.Helper()
	client := motoserver.Clients(t).S3()
	bucket := motoserver.Name(t, "bucket")
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return client, bucket
}

func newStore(t *testing.T, prefix string, o Options) *Store {
	t.Helper()
	client, bucket := newBucket(t)
	s, err := New(client, bucket, prefix, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// small parts and pages keep the suite fast while covering multipart
// uploads and several list pages.
var testOptions = Options{PartSize: MinPartSize, Concurrency: 2, PageSize: 7}

func TestSuite(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) pipeline.BlobStore { return newStore(t, "", testOptions) })
}

func TestSuitePrefixCRC32C(t *testing.T) {
	o := testOptions
	o.Checksum = ChecksumCRC32C
	blobtest.Run(t, func(t *testing.T) pipeline.BlobStore { return newStore(t, "edgevault/", o) })
}
