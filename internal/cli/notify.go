package cli

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/notify"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// NotifySecretEnv holds the webhook's HMAC secret for --notify.
const NotifySecretEnv = "EDGEVAULT_NOTIFY_SECRET"

func registerNotify(cmd *cobra.Command, url *string) {
	cmd.Flags().StringVar(url, "notify", "", "webhook URL told when the job ends (Slack-compatible JSON, signed with HMAC-SHA256 of $"+NotifySecretEnv+" in X-EdgeVault-Signature)")
}

// webhook checks --notify before any work: a URL without a secret to sign
// with is refused.
func (a *app) webhook(url string) (*notify.Webhook, error) {
	if url == "" {
		return nil, nil
	}
	h := &notify.Webhook{URL: url, Secret: sensitive.String(a.env.Getenv(NotifySecretEnv))}
	if err := h.Validate(); err != nil {
		ce := failure("invalid_arguments", err)
		ce.hint = "set " + NotifySecretEnv + " to the secret the receiver checks signatures with"
		return nil, ce
	}
	return h, nil
}

// notifyEnd tells the webhook that job ended (once: the marker lives in
// the job's store). A failed notification is a warning: the job's own
// outcome stands.
func (a *app) notifyEnd(ctx context.Context, e *embedded, hook *notify.Webhook, job *events.Job) {
	if hook == nil || job == nil {
		return
	}
	if cur, err := e.jobs.ReadJob(context.WithoutCancel(ctx), job.ID); err == nil {
		job = cur
	}
	if !job.State.Terminal() {
		return
	}
	n := &notify.Notifier{Store: e.store, Prefix: StagingPrefix, Hook: hook}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, err := n.JobEnded(nctx, job); err != nil && !errors.Is(err, notify.ErrInProgress) {
		a.warn("could not notify the webhook that job %s ended: %v", job.ID, err)
	}
}
