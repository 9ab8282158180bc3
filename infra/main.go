package main

import (
	"errors"
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

// buildApp adds the stacks the app's context asks for (the backup stack
// unless drOnly; the DR destination stack when drSourceRoleArn is set) and
// the cdk-nag AwsSolutions checks, which turn unsuppressed findings into
// synth errors. With drOnly the app needs neither the function assets nor
// the backup stack's context, so the DR account can synthesize and deploy
// its stack from a fresh clone.
func buildApp(app awscdk.App) (*BackupStack, *DRDestinationStack, error) {
	drOnly := false
	r := &contextReader{node: app.Node()}
	r.boolean(ctxDROnly, &drOnly)
	if len(r.errs) > 0 {
		return nil, nil, errors.Join(r.errs...)
	}
	drCfg, withDR, err := DRDestinationFromContext(app.Node())
	if err != nil {
		return nil, nil, err
	}
	if drOnly && !withDR {
		return nil, nil, fmt.Errorf("%w: %s=true needs %s (and the other keys of the DR stack)", ErrConfig, ctxDROnly, ctxDRSourceRoleARN)
	}
	var backup *BackupStack
	if !drOnly {
		cfg, err := ConfigFromContext(app.Node())
		if err != nil {
			return nil, nil, err
		}
		if withDR && drCfg.StackName == cfg.StackName {
			return nil, nil, fmt.Errorf("%w: %s and %s are both %q", ErrConfig, ctxStackName, ctxDRStackName, cfg.StackName)
		}
		if backup, err = NewBackupStack(app, cfg.StackName, &BackupStackProps{Config: cfg}); err != nil {
			return nil, nil, err
		}
	}
	var dr *DRDestinationStack
	if withDR {
		if dr, err = NewDRDestinationStack(app, drCfg.StackName, &DRDestinationStackProps{Config: drCfg}); err != nil {
			return nil, nil, err
		}
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return backup, dr, nil
}

// warn adds each warning to stack as a synth warning (the CDK CLI prints
// them; strict configurations have already failed on them).
func warn(stack awscdk.Stack, warnings []configWarning) {
	for _, w := range warnings {
		awscdk.Annotations_Of(stack).AddWarningV2(jsii.String("edgevault:"+w.key), jsii.String(w.String()), nil)
	}
}

// strictErrors turns warnings into errors when strict is set.
func strictErrors(strict bool, warnings []configWarning) []error {
	if !strict {
		return nil
	}
	var errs []error
	for _, w := range warnings {
		errs = append(errs, fmt.Errorf("%w: %s=true: %s", ErrConfig, ctxStrict, w))
	}
	return errs
}
