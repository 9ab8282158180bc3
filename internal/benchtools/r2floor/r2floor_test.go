package r2floor_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/edgevault/edgevault/internal/benchtools/r2floor"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Every object is listed and read, across pages, once.
func TestReadsEveryObject(t *testing.T) {
	ctx := context.Background()
	emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	objs := make([]edgebasetest.Object, 2500)
	var want int64
	for i := range objs {
		objs[i] = edgebasetest.Object{Key: fmt.Sprintf("files/%05d", i), Size: int64(10 + i%50)}
		want += objs[i].Size
	}
	if err := emu.AddObjects(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	url, _, _ := emu.ServeS3(t)
	s, err := r2.New(r2.Config{Endpoint: url, Bucket: emu.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
		SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey)})
	if err != nil {
		t.Fatal(err)
	}
	n, bytes, err := r2floor.Read(ctx, s, 4)
	if err != nil || n != 2500 || bytes != want {
		t.Fatalf("read %d objects, %d bytes (%v); want 2500, %d", n, bytes, err, want)
	}
}
