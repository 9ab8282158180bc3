package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

func (a *app) exportCommand() *cobra.Command {
	return &cobra.Command{Use: "export TABLE", Short: "Export one table as JSON",
		RunE: func(*cobra.Command, []string) error {
			return failure("export_failed", errors.New("export: in progress"))
		}}
}
