package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
)

// rieFunction is one function's real bootstrap, run by the Lambda Runtime
// Interface Emulator (a tool dependency in go.mod), which serves Lambda's
// Invoke API on URL for the function named "function".
type rieFunction struct {
	name string
	url  string
	cmd  *exec.Cmd
	out  *syncBuffer
	mu   sync.Mutex // the emulator runs one invocation at a time
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func goBuild(t *testing.T, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startRIE runs bootstrap under the emulator with the environment env.
func startRIE(t *testing.T, rie, bootstrap, name string, env map[string]string) *rieFunction {
	t.Helper()
	addr := freeAddr(t)
	f := &rieFunction{name: name, url: "http://" + addr, out: &syncBuffer{}}
	f.cmd = exec.Command(rie, "--log-level", "error", "--runtime-interface-emulator-address", addr,
		"--runtime-api-address", freeAddr(t), bootstrap)
	f.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + t.TempDir()}
	for k, v := range env {
		f.cmd.Env = append(f.cmd.Env, k+"="+v)
	}
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = f.cmd.Process.Kill()
		_ = f.cmd.Wait()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, tail(f.out.String(), 30))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the emulator does not listen: %v\n%s", name, err, f.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// invoke calls the function synchronously, as Lambda's Invoke API does.
func (f *rieFunction) invoke(ctx context.Context, in, out any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", f.url+"/2015-03-31/functions/function/invocations", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Amz-Function-Error") != "" {
		return fmt.Errorf("%s: %d %s", f.name, resp.StatusCode, body)
	}
	if bytes.Contains(body, []byte(`"errorType"`)) || bytes.Contains(body, []byte(`"errorMessage"`)) {
		return fmt.Errorf("%s: function error %s", f.name, body)
	}
	return json.Unmarshal(body, out)
}

func (f *rieFunction) sqsHandler() SQSHandler {
	return func(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error) {
		var resp awsevents.SQSEventResponse
		err := f.invoke(ctx, ev, &resp)
		return resp, err
	}
}

// TestE2ERuntimeInterfaceEmulator drives the real bootstrap binaries of
// every function (built for this machine with -tags lambda.norpc, as
// `make lambdas` builds them for arm64) through the Lambda Runtime
// Interface Emulator: a backup started with POST /backups on the api
// function (which invokes the scheduler function asynchronously through
// Lambda's Invoke API), run by the worker and assembler functions from
// SQS, then copied by drcopy.
func TestE2ERuntimeInterfaceEmulator(t *testing.T) {
	gate(t)
	bin := t.TempDir()
	rie := filepath.Join(bin, "aws-lambda-rie")
	goBuild(t, nil, "build", "-o", rie, "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie")
	// One go command for all five: they share most packages. Each binary
	// is named after its function directory.
	goBuild(t, []string{"CGO_ENABLED=0"}, "build", "-tags", "lambda.norpc", "-trimpath", "-o", bin+string(filepath.Separator), "./functions/...")

	src := newTarget(t, true)
	src.fingerprint(t)
	clients := motoserver.Clients(t)
	stack, err := SetupStack(context.Background(), clients, StackOptions{Name: motoserver.Name(t, "rie"), DR: true,
		EdgeBaseURL: src.emu.URL(), ServiceKey: src.emu.ServiceKey(), CloudflareAccount: src.cf.AccountID(), CloudflareToken: "cloudflaretest-token"})
	if err != nil {
		t.Fatal(err)
	}
	aws := motoserver.Config(t)
	fns := map[string]*rieFunction{}
	for _, fn := range []string{lambdaenv.Scheduler, lambdaenv.Worker, lambdaenv.Assembler, lambdaenv.DRCopy, lambdaenv.API} {
		extra := map[string]string{
			lambdaenv.AWSEndpoint: aws.Endpoint, lambdaenv.S3PathStyle: "true", lambdaenv.CloudflareAPIURL: src.cf.URL(),
			"AWS_ACCESS_KEY_ID": aws.AccessKeyID, "AWS_SECRET_ACCESS_KEY": aws.SecretAccessKey.Reveal(), "AWS_REGION": aws.Region,
			"AWS_LAMBDA_FUNCTION_NAME": fn, "AWS_LAMBDA_FUNCTION_TIMEOUT": "60", "AWS_LAMBDA_LOG_LEVEL": "INFO",
		}
		if fn == lambdaenv.API {
			extra[lambdaenv.LambdaEndpoint] = fns[lambdaenv.Scheduler].url
		}
		fns[fn] = startRIE(t, rie, filepath.Join(bin, fn), fn, stack.Env(fn, extra))
	}

	sq := clients.SQS()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range []*Poller{
		{Client: sq, QueueURL: stack.TaskQueueURL, BatchSize: 5, Timeout: 60 * time.Second, Handler: fns[lambdaenv.Worker].sqsHandler()},
		{Client: sq, QueueURL: stack.ControlQueueURL, BatchSize: 1, Timeout: 60 * time.Second, Handler: fns[lambdaenv.Assembler].sqsHandler()},
	} {
		wg.Go(func() { _ = p.Run(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()

	api := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		var resp awsevents.APIGatewayProxyResponse
		req := awsevents.APIGatewayProxyRequest{HTTPMethod: method, Path: path, Resource: "/{proxy+}", Body: body,
			Headers: map[string]string{"Content-Type": "application/json"}}
		if err := fns[lambdaenv.API].invoke(context.Background(), req, &resp); err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(resp.Body), &out); err != nil {
			t.Fatalf("api body %q: %v", resp.Body, err)
		}
		return resp.StatusCode, out
	}
	status, accepted := api("POST", "/backups", `{"includeStorage":true}`)
	if status != 202 {
		t.Fatalf("POST /backups: %d %v", status, accepted)
	}
	id := accepted["id"].(string)
	var job map[string]any
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		status, job = api("GET", "/backups/"+id, "")
		if status == 200 && (job["state"] == string(events.StateDone) || job["state"] == string(events.StateFailed)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %d %v", id, status, job)
		}
	}
	if job["state"] != "done" {
		t.Fatalf("job: %v", job)
	}
	key := job["archive"].(map[string]any)["key"].(string)

	var copied struct {
		Copied []struct{ Archive, Verified string }
	}
	if err := fns[lambdaenv.DRCopy].invoke(context.Background(), manifestEvent(t, stack.Bucket, archive.ManifestName(key)), &copied); err != nil {
		t.Fatal(err)
	}
	if len(copied.Copied) != 1 || copied.Copied[0].Archive != key {
		t.Fatalf("drcopy: %+v", copied)
	}
	// Every function logged JSON lines carrying the request id, and EMF.
	for name, f := range fns {
		out := f.out.String()
		if !strings.Contains(out, `"requestId":"`) || !strings.Contains(out, `"_aws":{`) {
			t.Errorf("%s wrote no request-id JSON logs or EMF metrics:\n%s", name, tail(out, 10))
		}
	}
}
