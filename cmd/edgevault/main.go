// Command edgevault backs up and restores EdgeBase deployments.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgevault/edgevault/internal/cli"
)

func main() {
	cli.SetMemoryLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.OSEnv())
	stop()
	os.Exit(code)
}
