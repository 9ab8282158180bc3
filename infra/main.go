package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

func main() { os.Exit(run()) }

func run() int {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	if _, _, err := buildApp(app); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	app.Synth(nil)
	return 0
}

// buildApp adds the stacks the app's context asks for (always the backup
// stack; the DR destination stack when drSourceRoleArn is set) and the
// cdk-nag AwsSolutions checks, which turn unsuppressed findings into
// synth errors.
func buildApp(app awscdk.App) (*BackupStack, *DRDestinationStack, error) {
	cfg, err := ConfigFromContext(app.Node())
	if err != nil {
		return nil, nil, err
	}
	drCfg, withDR, err := DRDestinationFromContext(app.Node())
	if err != nil {
		return nil, nil, err
	}
	backup, err := NewBackupStack(app, cfg.StackName, &BackupStackProps{Config: cfg})
	if err != nil {
		return nil, nil, err
	}
	var dr *DRDestinationStack
	if withDR {
		if drCfg.StackName == cfg.StackName {
			return nil, nil, fmt.Errorf("%w: %s and %s are both %q", ErrConfig, ctxStackName, ctxDRStackName, cfg.StackName)
		}
		if dr, err = NewDRDestinationStack(app, drCfg.StackName, &DRDestinationStackProps{Config: drCfg}); err != nil {
			return nil, nil, err
		}
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return backup, dr, nil
}
