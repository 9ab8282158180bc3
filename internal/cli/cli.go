package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// Env is the process environment the CLI runs in; tests substitute it.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// IsTerminal reports whether a stream is an interactive terminal
	// (progress bars on stderr, confirmation prompts on stdin).
	IsTerminal func(f any) bool
	// WorkDir is where relative local files (.dev.vars,
	// .edgebase/secrets.json) are read and written.
	WorkDir string

	// retry, when set, replaces the EdgeBase client's retry policies, so
	// in-package tests of persistent failures do not wait out real
	// backoffs.
	retry *edgebase.RetryPolicy
	// drillRestored, when set, runs after a drill's restore and before
	// its read-back (tests sabotage the target there).
	drillRestored func(context.Context) error
	// aws, when set, replaces the AWS configuration of s3:// paths (tests
	// point it at an emulator with static credentials).
	aws *awsconfig.Config
}

// OSEnv is the real environment.
func OSEnv() Env {
	wd, _ := os.Getwd()
	return Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, WorkDir: wd,
		IsTerminal: func(f any) bool {
			if fd, ok := f.(interface{ Fd() uintptr }); ok {
				return term.IsTerminal(int(fd.Fd()))
			}
			return false
		},
	}
}

// Exit codes, as the official CLI uses them.
const (
	ExitOK         = 0
	ExitError      = 1
	ExitNeedsInput = 2
)

// app carries what every command shares.
type app struct {
	env     Env
	jsonOut bool
	verbose bool
	// progressMode is --progress: auto, bar, json or none.
	progressMode string
	log          *slog.Logger
	exitCode     int
}

// Run executes the CLI with args (without the program name) and returns
// the process exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.IsTerminal == nil {
		env.IsTerminal = func(any) bool { return false }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	a := &app{env: env}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ce *cmdError
		if errors.As(err, &ce) {
			a.report(ce)
			return ce.exit
		}
		// Flag and usage errors from cobra itself.
		a.report(&cmdError{code: "invalid_arguments", msg: err.Error(), exit: ExitError})
		return ExitError
	}
	return a.exitCode
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "edgevault",
		Short:         "Back up and restore EdgeBase deployments",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelWarn
			if a.verbose {
				level = slog.LevelDebug
			}
			a.log = slog.New(slog.NewTextHandler(a.env.Stderr, &slog.HandlerOptions{Level: level}))
		},
	}
	root.PersistentFlags().BoolVar(&a.jsonOut, "json", false, "print only one JSON document on stdout")
	root.PersistentFlags().BoolVarP(&a.verbose, "verbose", "v", false, "log details to stderr")
	root.PersistentFlags().StringVar(&a.progressMode, "progress", progressAuto, "progress display on stderr: auto (a bar on a terminal), bar, json (one event per line, for other tools) or none")
	backup := &cobra.Command{Use: "backup", Short: "Create, restore, verify and list backups"}
	backup.AddCommand(a.createCommand(), a.restoreCommand(), a.verifyCommand(), a.listCommand())
	backup.AddCommand(a.repoExportCommand())
	root.AddCommand(backup, a.exportCommand(), a.versionCommand(), a.keygenCommand(), a.drillCommand())
	root.AddCommand(a.remoteCommand(), a.doctorCommand())
	root.AddCommand(a.snapshotsCommand())
	root.AddCommand(a.forgetCommand())
	root.AddCommand(a.pruneCommand())
	return root
}

// cmdError is a failure with the official CLI's structured shape.
type cmdError struct {
	status    string // "error" or "needs_input"
	code      string
	msg       string
	retryable bool
	hint      string
	field     string
	choices   []choice
	exit      int
	extra     map[string]any
}

type choice struct {
	Label string   `json:"label"`
	Value string   `json:"value"`
	Args  []string `json:"args"`
}

func (e *cmdError) Error() string { return e.msg }

func failure(code string, err error) *cmdError {
	return &cmdError{status: "error", code: code, msg: err.Error(), exit: ExitError}
}

// report prints a failure: one JSON line on stdout with --json, a message
// on stderr otherwise.
func (a *app) report(e *cmdError) {
	if e.status == "" {
		e.status = "error"
	}
	if a.jsonOut {
		doc := map[string]any{"status": e.status, "code": e.code, "message": e.msg, "retryable": e.retryable}
		if e.hint != "" {
			doc["hint"] = e.hint
		}
		if e.field != "" {
			doc["field"] = e.field
		}
		if len(e.choices) > 0 {
			doc["choices"] = e.choices
		}
		for k, v := range e.extra {
			doc[k] = v
		}
		a.printJSON(doc)
		return
	}
	fmt.Fprintf(a.env.Stderr, "error: %s\n", e.msg)
	if e.hint != "" {
		fmt.Fprintf(a.env.Stderr, "hint: %s\n", e.hint)
	}
}

func (a *app) printJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(a.env.Stderr, "error: encoding result: %v\n", err)
		return
	}
	fmt.Fprintln(a.env.Stdout, string(b))
}

// say prints human output (suppressed with --json).
func (a *app) say(format string, args ...any) {
	if a.jsonOut {
		return
	}
	fmt.Fprintf(a.env.Stdout, format, args...)
}

// warn prints to stderr (kept with --json: stdout stays one document).
func (a *app) warn(format string, args ...any) {
	fmt.Fprintf(a.env.Stderr, "warning: "+format+"\n", args...)
}

// flagOrEnv returns the flag value, else the first set environment variable.
func (a *app) flagOrEnv(v string, envs ...string) string {
	if v != "" {
		return v
	}
	for _, e := range envs {
		if x := a.env.Getenv(e); x != "" {
			return x
		}
	}
	return ""
}
