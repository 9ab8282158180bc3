package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/repository"
	kmswrap "github.com/edgevault/edgevault/pkg/repository/kms"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Repository settings: a flag, or the environment.
const (
	envRepository   = "EDGEVAULT_REPOSITORY"
	envPassword     = "EDGEVAULT_PASSWORD"
	envPasswordFile = "EDGEVAULT_PASSWORD_FILE"
	envKMSKeyID     = "EDGEVAULT_KMS_KEY_ID"
)

// repoFlags are the flags of commands that read or write a repository.
type repoFlags struct {
	location     string
	passwordFile string
	kmsKeyID     string
}

func (f *repoFlags) register(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVar(&f.location, "repo", "", usage+": a directory or s3://bucket/prefix ("+envRepository+")")
	cmd.Flags().StringVar(&f.passwordFile, "password-file", "", "file holding the repository passphrase ("+envPasswordFile+"; or the passphrase itself in "+envPassword+")")
	cmd.Flags().StringVar(&f.kmsKeyID, "kms-key-id", "", "symmetric AWS KMS key (id, ARN or alias) that wraps the repository key: a new repository needs no passphrase, and one given too becomes a second way in ("+envKMSKeyID+")")
}

// kmsKey is the KMS key from the flag or the environment, "" when none.
func (f *repoFlags) kmsKey(a *app) string {
	if f.kmsKeyID != "" {
		return f.kmsKeyID
	}
	return a.env.Getenv(envKMSKeyID)
}

// where is the repository location from the flag or the environment, ""
// when none is configured.
func (f *repoFlags) where(a *app) string {
	if f.location != "" {
		return f.location
	}
	return a.env.Getenv(envRepository)
}

// openedRepo is an open repository and how to release its store.
type openedRepo struct {
	*repository.Repository
	location string
	close    func()
}

// openRepo opens the configured repository; with create, an empty
// location becomes a new repository (and the caller is told so).
func (a *app) openRepo(ctx context.Context, f *repoFlags, aws awsFlags, create bool) (*openedRepo, bool, error) {
	loc := f.where(a)
	if loc == "" {
		return nil, false, &cmdError{code: "invalid_arguments", exit: ExitError,
			msg: "no repository: pass --repo DIR|s3://bucket/prefix or set " + envRepository}
	}
	creds, err := a.repoCredentials(ctx, f, aws)
	if err != nil {
		return nil, false, err
	}
	var (
		store      pipeline.BlobStore
		closeStore = func() {}
	)
	if isS3(loc) {
		p, err := parseS3(loc)
		if err != nil {
			return nil, false, failure("invalid_arguments", err)
		}
		st, err := a.s3Store(ctx, aws, p)
		if err != nil {
			return nil, false, failure("invalid_arguments", err)
		}
		store, loc = st, p.String()
	} else {
		abs, err := filepath.Abs(loc)
		if err != nil {
			return nil, false, failure("invalid_arguments", err)
		}
		if !create {
			if _, err := os.Stat(abs); err != nil {
				return nil, false, failure("repository_not_found", fmt.Errorf("repository %s: %w", abs, err))
			}
		}
		st, err := fs.New(abs)
		if err != nil {
			return nil, false, failure("invalid_arguments", err)
		}
		store, loc, closeStore = st, abs, func() { _ = st.Close() }
	}
	var (
		r       *repository.Repository
		created bool
	)
	if create {
		r, created, err = repository.OpenOrInit(ctx, store, creds, repository.Options{})
	} else {
		r, err = repository.OpenWith(ctx, store, creds)
	}
	if err != nil {
		closeStore()
		return nil, false, repoFailure(loc, err)
	}
	// The passphrase KDF (scrypt) used 32 MiB that nothing needs now:
	// hand it back before the backup's own memory comes on top.
	repositoryMemoryLimit()
	debug.FreeOSMemory()
	return &openedRepo{Repository: r, location: loc, close: closeStore}, created, nil
}

// repoCredentials are the passphrase and, with --kms-key-id, the KMS key
// wrapper. With a KMS key the passphrase is optional.
func (a *app) repoCredentials(ctx context.Context, f *repoFlags, aws awsFlags) (repository.Credentials, error) {
	var c repository.Credentials
	pass, err := a.repoPassword(f)
	key := f.kmsKey(a)
	var ce *cmdError
	switch {
	case err == nil:
		c.Passphrase = sensitive.String(pass)
	case key == "" || !errors.As(err, &ce) || ce.code != "repository_password_required":
		return c, err
	}
	if key == "" {
		return c, nil
	}
	clients, err := a.awsClients(ctx, aws)
	if err != nil {
		return c, failure("invalid_arguments", err)
	}
	if clients.Region() == "" {
		return c, failure("invalid_arguments", errors.New("no AWS region for the KMS key "+key+": pass --region or set AWS_REGION (or a profile's region)"))
	}
	w, err := kmswrap.New(clients.KMS(), key)
	if err != nil {
		return c, failure("invalid_arguments", err)
	}
	c.Wrapper = w
	return c, nil
}

// repoPassword reads the passphrase: --password-file, then
// EDGEVAULT_PASSWORD_FILE, then EDGEVAULT_PASSWORD.
func (a *app) repoPassword(f *repoFlags) (string, error) {
	file := f.passwordFile
	if file == "" {
		file = a.env.Getenv(envPasswordFile)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", failure("invalid_arguments", fmt.Errorf("reading the repository passphrase: %w", err))
		}
		pass := strings.TrimRight(string(b), "\r\n")
		if pass == "" {
			return "", failure("invalid_arguments", fmt.Errorf("the passphrase file %s is empty", file))
		}
		return pass, nil
	}
	if pass := a.env.Getenv(envPassword); pass != "" {
		return pass, nil
	}
	return "", &cmdError{status: "needs_input", code: "repository_password_required", exit: ExitNeedsInput, field: "password",
		msg:  "the repository is encrypted: give its passphrase with --password-file or " + envPassword + ", or its KMS key with --kms-key-id or " + envKMSKeyID,
		hint: "a new repository takes the passphrase it is first used with; keep it safe, nothing can be read without it"}
}

// repoFailure names the repository in an error, with the code a script
// can branch on.
func repoFailure(loc string, err error) *cmdError {
	code := "repository_failed"
	switch {
	case errors.Is(err, repository.ErrWrongKey):
		code = "repository_wrong_key"
	case errors.Is(err, repository.ErrWrongPassphrase):
		code = "repository_wrong_password"
	case errors.Is(err, repository.ErrNotRepository):
		code = "repository_not_found"
	case errors.Is(err, repository.ErrVersion):
		code = "repository_version"
	case errors.Is(err, repository.ErrCorrupt), errors.Is(err, repository.ErrMissing):
		code = "repository_corrupt"
	}
	return failure(code, fmt.Errorf("repository %s: %w", loc, err))
}
