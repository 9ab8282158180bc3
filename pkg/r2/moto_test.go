package r2_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

// The adapter against an AWS-faithful S3 server: paging with StartAfter
// and continuation tokens, DeleteObjects (whose required checksum the SDK
// adds even with "when required"), MD5 ETags, and NoSuchBucket.
func TestAgainstMoto(t *testing.T) {
	ctx := context.Background()
	mc := motoserver.Config(t)
	bucket := motoserver.Name(t, "r2")
	clients := motoserver.Clients(t)
	if _, err := clients.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	cfg := r2.Config{Endpoint: mc.Endpoint, Bucket: bucket, AccessKeyID: mc.AccessKeyID, SecretAccessKey: sensitive.String(mc.SecretAccessKey)}
	s, err := r2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1050 // more than one DeleteObjects call
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			body := []byte(fmt.Sprint(i))
			return s.PutObject(gctx, fmt.Sprintf("k/%05d.json", i), "application/json", int64(len(body)), func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(body)), nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	pages := 0
	err = s.ListPages(ctx, "", "", 100, func(p []edgebase.Object) error {
		pages++
		if len(p) > 100 {
			t.Errorf("a page of %d keys", len(p))
		}
		for _, o := range p {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil || len(keys) != n || pages != 11 {
		t.Fatalf("listed %d keys in %d pages: %v", len(keys), pages, err)
	}
	var bounded []string
	err = s.ListPages(ctx, "k/00099.json", "k/00301.json", 100, func(p []edgebase.Object) error {
		for _, o := range p {
			bounded = append(bounded, o.Key)
		}
		return nil
	})
	if err != nil || len(bounded) != 202 || bounded[0] != "k/00100.json" || bounded[201] != "k/00301.json" {
		t.Fatalf("bounded listing: %d keys (%v): %v", len(bounded), bounded[:min(len(bounded), 2)], err)
	}
	err = s.GetObject(ctx, "k/00042.json", func(r io.Reader, info edgebase.ObjectInfo) error {
		b, err := io.ReadAll(r)
		sum := md5.Sum(b)
		if string(b) != "42" || info.ContentType != "application/json" || info.ETag != hex.EncodeToString(sum[:]) {
			t.Errorf("get: %q %+v", b, info)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteObjects(ctx, keys); err != nil {
		t.Fatal(err)
	}
	left := 0
	if err := s.ListPages(ctx, "", "", 0, func(p []edgebase.Object) error { left += len(p); return nil }); err != nil || left != 0 {
		t.Errorf("%d keys left after DeleteObjects: %v", left, err)
	}

	cfg.Bucket = motoserver.Name(t, "missing")
	missing, err := r2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = missing.ListPages(ctx, "", "", 0, func([]edgebase.Object) error { return nil })
	if !errors.Is(err, r2.ErrNoBucket) {
		t.Errorf("missing bucket: %v", err)
	}
}
