package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/notify"
)

// TestE2ENotify: the assembler notifies the webhook when a backup ends,
// signed with the secret from Secrets Manager, and redelivered check
// messages of the finished job send nothing more.
func TestE2ENotify(t *testing.T) {
	gate(t)
	ctx := context.Background()
	const secret = "webhook-signing-secret"
	var mu sync.Mutex
	var got []map[string]any
	var ids []string
	calls := 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if !notify.Verify(secret, body, r.Header.Get(notify.SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if calls == 1 { // the first delivery fails: retried with backoff
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var doc map[string]any
		_ = json.Unmarshal(body, &doc)
		got = append(got, doc)
		ids = append(ids, r.Header.Get(notify.DeliveryHeader))
	})}}
	srv.Start()
	defer srv.Close()

	sm := motoserver.Clients(t).SecretsManager()
	name := motoserver.Name(t, "notify")
	in := secretsInput(name)
	in.SecretString = aws.String(secret)
	if _, err := sm.CreateSecret(ctx, in); err != nil {
		t.Fatal(err)
	}
	src := newTarget(t, true)
	src.fingerprint(t)
	d := deploy(t, src, deployOptions{override: map[string]string{lambdaenv.NotifyURL: srv.URL + "/hook", lambdaenv.NotifySecret: name}})
	stop := d.run()
	started := d.schedule(`{"kind":"backup","options":{"includeStorage":false}}`, NewRequestID())
	job := d.wait(events.KindBackup, started.JobID, 3*time.Minute)
	d.drain(time.Minute)
	stop()
	if job["state"] != "done" {
		t.Fatalf("backup: %v", job)
	}

	// Redelivered check messages of the finished job.
	body, _ := events.Envelope{Check: &events.Check{Job: started.JobID}}.Encode()
	for i := range 3 {
		lctx := lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
		ev := awsevents.SQSEvent{Records: []awsevents.SQSMessage{{MessageId: NewRequestID(), Body: string(body),
			Attributes: map[string]string{"ApproximateReceiveCount": "1"}, ReceiptHandle: "redelivery-" + string(rune('a'+i))}}}
		if _, err := d.assembler.Handle(lctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || calls != 2 {
		t.Fatalf("receiver accepted %d notifications in %d calls; want exactly one after one retry", len(got), calls)
	}
	ev := got[0]["edgevault"].(map[string]any)
	if ev["job"] != started.JobID || ev["state"] != "done" || ids[0] != started.JobID+"/done" {
		t.Fatalf("notification %v (delivery %s)", got[0], ids[0])
	}
}
