package serverless

import (
	"context"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

func TestConnectR2(t *testing.T) {
	ctx := context.Background()
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	if err := e.AddObjects(ctx, edgebasetest.Object{Key: "a/b", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	url, _, _ := e.ServeS3(t)
	value := func(v string) func(context.Context, string) (sensitive.String, error) {
		return func(context.Context, string) (sensitive.String, error) { return sensitive.String(v), nil }
	}
	cfg := Config{R2Endpoint: url, R2Bucket: e.S3Bucket(), R2Secret: "r2-secret"}

	if s, err := ConnectR2(ctx, Config{}, value("")); s != nil || err != nil {
		t.Errorf("without a bucket: %v %v, want the admin API (nil)", s, err)
	}
	if _, err := ConnectR2(ctx, cfg, value("not-json topsecret")); err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("a malformed secret: %v", err)
	}
	s, err := ConnectR2(ctx, cfg, value(`{"accessKeyId":"`+edgebasetest.S3AccessKeyID+`","secretAccessKey":"`+edgebasetest.S3SecretAccessKey+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ListPages(ctx, "", "", 0, func(p []edgebase.Object) error { n += len(p); return nil }); err != nil || n != 1 {
		t.Errorf("listed %d objects: %v", n, err)
	}

	c := Config{Function: "worker", R2Bucket: "b"}
	var missing []string
	c.needEdgeBase(func(v, name string) {
		if v == "" {
			missing = append(missing, name)
		}
	})
	if got := strings.Join(missing, ","); !strings.Contains(got, "EDGEVAULT_R2_ENDPOINT") || !strings.Contains(got, "EDGEVAULT_R2_SECRET") {
		t.Errorf("missing %s", got)
	}
}
