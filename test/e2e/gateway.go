package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Gateway stands in front of the api function the way API Gateway with
// IAM authorization does: it verifies each request's SigV4 signature by
// recomputing the canonical request with the caller's known credentials,
// refuses a missing, stale or wrong signature with 403 (the handler never
// sees the request), strips the stage from the path and hands the request
// to the handler as a proxy integration event with the caller's ARN.
type Gateway struct {
	Handler func(context.Context, awsevents.APIGatewayProxyRequest) (awsevents.APIGatewayProxyResponse, error)
	// Callers maps access key ids to their credentials and principal ARN.
	Callers map[string]Caller
	Region  string
	Stage   string // e.g. "prod": requests go to /prod/...
	Now     func() time.Time
}

// Caller is one IAM principal allowed to invoke the API.
type Caller struct {
	Credentials aws.Credentials
	ARN         string
}

// maxSkew is how far a request's X-Amz-Date may be from the gateway's
// clock.
const maxSkew = 5 * time.Minute

func (g *Gateway) refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", "IncompleteSignatureException")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		g.refuse(w, http.StatusBadRequest, "could not read the body")
		return
	}
	caller, msg := g.verify(r, body)
	if msg != "" {
		g.refuse(w, http.StatusForbidden, msg)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/"+g.Stage)
	if !ok || (path != "" && !strings.HasPrefix(path, "/")) {
		g.refuse(w, http.StatusForbidden, "Missing Authentication Token")
		return
	}
	if path == "" {
		path = "/"
	}
	req := awsevents.APIGatewayProxyRequest{HTTPMethod: r.Method, Path: path, Resource: "/{proxy+}", Body: string(body),
		Headers: map[string]string{}, QueryStringParameters: map[string]string{}}
	for k, vs := range r.Header {
		req.Headers[k] = vs[0]
	}
	for k, vs := range r.URL.Query() {
		req.QueryStringParameters[k] = vs[0]
	}
	req.RequestContext.RequestID = NewRequestID()
	req.RequestContext.Stage = g.Stage
	req.RequestContext.Identity.UserArn = caller.ARN
	req.RequestContext.Identity.AccessKey = caller.Credentials.AccessKeyID
	resp, err := g.Handler(r.Context(), req)
	if err != nil {
		g.refuse(w, http.StatusBadGateway, "Internal server error")
		return
	}
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.WriteString(w, resp.Body)
}

// verify recomputes the request's signature; it returns the caller or
// API Gateway's message for a refusal.
func (g *Gateway) verify(r *http.Request, body []byte) (Caller, string) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return Caller{}, "Missing Authentication Token"
	}
	algo, rest, _ := strings.Cut(auth, " ")
	if algo != "AWS4-HMAC-SHA256" {
		return Caller{}, "Authorization header requires the AWS4-HMAC-SHA256 algorithm"
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return Caller{}, "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'"
	}
	caller, ok := g.Callers[scope[0]]
	if !ok {
		return Caller{}, "The security token included in the request is invalid."
	}
	if scope[2] != g.Region || scope[3] != "execute-api" || scope[4] != "aws4_request" {
		return Caller{}, fmt.Sprintf("Credential should be scoped to a valid region and service, not %s/%s", scope[2], scope[3])
	}
	signed, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || signed.Format("20060102") != scope[1] {
		return Caller{}, "Authorization header requires a valid X-Amz-Date matching the credential scope"
	}
	if d := g.Now().Sub(signed); d > maxSkew || d < -maxSkew {
		return Caller{}, "Signature expired: " + signed.Format("20060102T150405Z") + " is not within 5 minutes of the server time"
	}
	names := strings.Split(fields["SignedHeaders"], ";")
	if !slices.Contains(names, "host") || !slices.Contains(names, "x-amz-date") {
		return Caller{}, "SignedHeaders must include host and x-amz-date"
	}
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payload && h != "UNSIGNED-PAYLOAD" {
		return Caller{}, "The provided 'x-amz-content-sha256' header does not match what was computed."
	}
	// The canonical request, rebuilt from what was received: the same
	// method, path, query and signed headers.
	u := url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	re, err := http.NewRequest(r.Method, u.String(), nil)
	if err != nil {
		return Caller{}, "invalid request"
	}
	re.Host = r.Host
	re.ContentLength = int64(len(body))
	for _, n := range names {
		if n == "host" || n == "content-length" {
			continue
		}
		if vs := r.Header.Values(n); len(vs) > 0 {
			re.Header[http.CanonicalHeaderKey(n)] = vs
		}
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), caller.Credentials, re, payload, "execute-api", g.Region, signed); err != nil {
		return Caller{}, "could not recompute the signature"
	}
	_, want, _ := strings.Cut(re.Header.Get("Authorization"), "Signature=")
	if subtle.ConstantTimeCompare([]byte(want), []byte(fields["Signature"])) != 1 {
		return Caller{}, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
	}
	return caller, ""
}

// newAccessKey returns a fresh access key id for a test caller.
func newAccessKey() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "AKIA" + strings.ToUpper(hex.EncodeToString(b[:]))
}
