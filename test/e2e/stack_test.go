package e2e

import (
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// Env gives each function what the stack sets (EDGEVAULT_DEPLOYED among
// it), and a deployed function refuses the test-only overrides: pointed
// at emulators, the environment says it is not deployed.
func TestStackEnv(t *testing.T) {
	st := &Stack{Options: StackOptions{DR: true, DRRegion: "eu-central-1", APIAllowSecrets: true, MetricsNamespace: "NS"}, Bucket: "b", DRBucket: "dr"}
	if env := st.Env(lambdaenv.DRCopy, nil); env[lambdaenv.DRRegion] != "eu-central-1" || env[lambdaenv.Deployed] != "true" {
		t.Fatalf("drcopy env %v", env)
	}
	if env := st.Env(lambdaenv.API, nil); env[lambdaenv.APIAllowSecrets] != "true" {
		t.Fatalf("api env %v", env)
	}
	for _, fn := range lambdaenv.Functions {
		env := st.Env(fn, nil)
		if len(env) != len(lambdaenv.Reads[fn]) {
			t.Errorf("%s: %d variables, lambdaenv lists %d", fn, len(env), len(lambdaenv.Reads[fn]))
		}
		env[lambdaenv.AWSEndpoint] = "http://127.0.0.1:1"
		if _, err := serverless.ConfigFromEnv(fn, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), lambdaenv.Deployed+" is set") {
			t.Errorf("%s: a deployed function accepted a test-only override", fn)
		}
	}
	if env := st.Env(lambdaenv.DRCopy, map[string]string{lambdaenv.AWSEndpoint: "http://127.0.0.1:1"}); env[lambdaenv.Deployed] != "false" {
		t.Fatalf("overrides with the deployed marker: %v", env)
	}
}
