package lambdaenv

import (
	"strings"
	"testing"
)

func TestRefuseTestOverrides(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		fail bool
	}{
		{env: map[string]string{AWSEndpoint: "http://127.0.0.1:5000"}},
		{env: map[string]string{Deployed: "false", CloudflareAPIURL: "http://127.0.0.1:1"}},
		{env: map[string]string{Deployed: "true"}},
		{env: map[string]string{Deployed: "true", AWSEndpoint: "http://127.0.0.1:5000"}, fail: true},
		{env: map[string]string{Deployed: "1", S3PathStyle: "true"}, fail: true},
		{env: map[string]string{Deployed: "true", LambdaEndpoint: "http://x"}, fail: true},
		{env: map[string]string{Deployed: "true", CloudflareAPIURL: "http://x"}, fail: true},
		// A value that is not a boolean fails closed.
		{env: map[string]string{Deployed: "yes", AWSEndpoint: "http://x"}, fail: true},
	} {
		err := RefuseTestOverrides(func(k string) string { return tc.env[k] })
		if (err != nil) != tc.fail {
			t.Errorf("%v: err = %v, want failure %v", tc.env, err, tc.fail)
		}
		if err != nil && !strings.Contains(err.Error(), Deployed) {
			t.Errorf("%v: %v does not name %s", tc.env, err, Deployed)
		}
	}
}

// The test-only variables are never part of a function's contract.
func TestReadsListNoTestOverride(t *testing.T) {
	for _, fn := range append(append([]string(nil), Functions...), Optional...) {
		names := Reads[fn]
		for _, o := range TestOverrides {
			for _, n := range names {
				if n == o {
					t.Errorf("%s reads test-only %s", fn, o)
				}
			}
		}
		found := false
		for _, n := range names {
			found = found || n == Deployed
		}
		if !found {
			t.Errorf("%s does not read %s", fn, Deployed)
		}
	}
}
