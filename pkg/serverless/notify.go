package serverless

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/pkg/notify"
	"github.com/edgevault/edgevault/pkg/secrets/secretsmanager"
)

// notifyWebhook reads the webhook's signing secret at cold start. A secret
// that cannot be read does not stop the function (backups matter more than
// their notifications): the webhook then refuses to send unsigned, and
// every job end logs that error.
func notifyWebhook(ctx context.Context, cfg Config, clients *awsconfig.Clients) (*notify.Webhook, error) {
	h := &notify.Webhook{URL: cfg.NotifyURL, Attempts: 3, Backoff: time.Second}
	if cfg.NotifySecret == "" {
		return h, nil
	}
	sm, err := secretsmanager.New(clients.SecretsManager())
	if err != nil {
		return nil, err
	}
	if v, err := sm.GetString(ctx, cfg.NotifySecret); err == nil {
		h.Secret = v
	}
	return h, nil
}

// notifyEnd tells the webhook that job ended, once per job end (the
// notifier's marker). It returns false when the caller should retry its
// message so the notification is sent later (at least once); a refusal
// that retrying cannot fix is logged and not retried.
func (b *base) notifyEnd(ctx context.Context, log *slog.Logger, job *events.Job) bool {
	if b.notifier == nil || job == nil || !job.State.Terminal() {
		return true
	}
	sent, err := b.notifier.JobEnded(ctx, job)
	switch {
	case err == nil:
		if sent {
			log.Info("job end notified", "state", job.State)
		}
		return true
	case errors.Is(err, notify.ErrPermanent):
		log.Error("the job end could not be notified; not retried", "err", err)
		return true
	default:
		log.Warn("the job end could not be notified yet; retrying", "err", err)
		return false
	}
}
