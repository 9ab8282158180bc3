package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/edgevault/edgevault/internal/cli"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
)

// remoteRun runs `edgevault remote ...` in-process with the process
// environment (the default AWS credential chain reads it) plus extra.
func remoteRun(t *testing.T, extra map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := cli.OSEnv()
	env.Stdin, env.Stdout, env.Stderr = strings.NewReader(""), &stdout, &stderr
	env.IsTerminal = func(any) bool { return false }
	env.Getenv = func(k string) string {
		if v, ok := extra[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := cli.Run(ctx, args, env)
	return code, stdout.String(), stderr.String()
}

// TestE2ERemote: `edgevault remote` against the api function behind a
// gateway that verifies SigV4 as API Gateway does. A missing or wrong
// signature is refused before the handler; a correct one starts the job;
// --watch follows it to its end and exits non-zero when it fails; the API
// URL is found from the stack's outputs.
func TestE2ERemote(t *testing.T) {
	gate(t)
	src := newTarget(t, true)
	src.fingerprint(t) // wakes the instance DOs, so list-dos names them
	d := deploy(t, src, deployOptions{})
	stop := d.run()
	defer stop()

	const region = "eu-west-1"
	key, secret := newAccessKey(), "remote-test-secret"
	gw := &Gateway{Region: region, Stage: "prod", Now: time.Now,
		Callers: map[string]Caller{key: {Credentials: aws.Credentials{AccessKeyID: key, SecretAccessKey: secret}, ARN: apiCaller}},
		Handler: func(ctx context.Context, req awsevents.APIGatewayProxyRequest) (awsevents.APIGatewayProxyResponse, error) {
			ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
			return d.api.Handle(ctx, req)
		}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: gw}}
	srv.Start()
	defer srv.Close()
	api := srv.URL + "/prod/"

	// The default credential chain, from the environment only.
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", region)
	t.Setenv("AWS_ACCESS_KEY_ID", key)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("EDGEVAULT_API", "")

	// No signature: refused by the gateway, no job.
	resp, err := http.Post(api+"backups", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned POST: %d; want 403", resp.StatusCode)
	}
	// A wrong secret: refused, exit non-zero, no job.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	code, out, errOut := remoteRun(t, nil, "remote", "backup", "--api", api, "--json")
	if code == 0 || !strings.Contains(out, "remote_forbidden") || !strings.Contains(out, "signature") {
		t.Fatalf("wrong signature: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	// Signed for another region: refused too.
	if code, out, _ := remoteRun(t, nil, "remote", "list", "--api", api, "--region", "us-west-2", "--json"); code == 0 || !strings.Contains(out, "remote_forbidden") {
		t.Fatalf("wrong region: exit %d\n%s", code, out)
	}
	if st, list := d.call("GET", "/backups", "", nil); st != 200 || len(list["items"].([]any)) != 0 {
		t.Fatalf("a refused request started a job: %v", list)
	}

	// Signed: the backup runs; --watch ends with its final state.
	code, out, errOut = remoteRun(t, nil, "remote", "backup", "--api", api, "--include-storage", "--watch", "--interval", "300ms", "--json")
	if code != 0 {
		t.Fatalf("remote backup --watch: exit %d\n%s\n%s", code, out, errOut)
	}
	var done struct {
		Status string `json:"status"`
		Job    struct {
			ID      string `json:"id"`
			State   string `json:"state"`
			Archive struct {
				Key string `json:"key"`
			} `json:"archive"`
		} `json:"job"`
	}
	if err := json.Unmarshal([]byte(out), &done); err != nil || done.Job.State != "done" || !strings.HasPrefix(done.Job.Archive.Key, "backups/edgebase-backup-") {
		t.Fatalf("remote backup --watch printed %s (%v)", out, err)
	}

	// list and status, the API found from the stack's outputs.
	cfn := motoserver.Clients(t).InRegion(region).CloudFormation() // the stack lives in the API's region
	stackName := motoserver.Name(t, "EdgeVault")
	tmpl := `{"Resources":{"Topic":{"Type":"AWS::SNS::Topic"}},"Outputs":{"ApiUrl":{"Value":"` + api + `"}}}`
	if _, err := cfn.CreateStack(context.Background(), &cloudformation.CreateStackInput{StackName: aws.String(stackName), TemplateBody: aws.String(tmpl)}); err != nil {
		t.Fatal(err)
	}
	viaStack := map[string]string{lambdaenv.AWSEndpoint: motoserver.Start(t)}
	code, out, errOut = remoteRun(t, viaStack, "remote", "list", "--stack", stackName)
	if code != 0 || !strings.Contains(out, done.Job.ID) || !strings.Contains(out, done.Job.Archive.Key) {
		t.Fatalf("remote list --stack: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = remoteRun(t, viaStack, "remote", "status", done.Job.ID, "--stack", stackName, "--watch")
	if code != 0 || !strings.Contains(out, "backup job "+done.Job.ID+": done") {
		t.Fatalf("remote status --watch: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := remoteRun(t, viaStack, "remote", "list", "--stack", "no-such-stack", "--json"); code == 0 || !strings.Contains(out, "no-such-stack") {
		t.Fatalf("a missing stack: exit %d\n%s", code, out)
	}

	// A job that fails: a restore of an archive that is not one.
	bad := "backups/edgebase-backup-2026-01-02T03-04-06.json"
	if err := d.store().Put(context.Background(), bad, strings.NewReader("not an archive")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = remoteRun(t, nil, "remote", "restore", "--api", api, "--archive", bad, "--skip-secrets", "--yes", "--watch", "--interval", "300ms")
	if code == 0 || !strings.Contains(out, ": failed") {
		t.Fatalf("a failing restore --watch: exit %d; want non-zero\n%s\n%s", code, out, errOut)
	}
	// Without --yes nothing is started.
	if code, out, _ := remoteRun(t, nil, "remote", "restore", "--api", api, "--archive", bad, "--json"); code != 2 || !strings.Contains(out, "confirmation_required") {
		t.Fatalf("restore without --yes: exit %d\n%s", code, out)
	}
}
