package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/internal/lambdaenv"
)

// apiStage is the API Gateway stage (part of the URL, not a resource name).
const apiStage = "v1"

// Resources of the API's resource policy ("execute-api:/stage/METHOD/path";
// API Gateway fills in the API's ARN). A restore is started by a POST to
// /restores; the pattern also catches its variants ("/restores/",
// "//restores") so no spelling of the path gets past the restore callers.
const (
	apiEverything    = "execute-api:/*"
	apiReads         = "execute-api:/" + apiStage + "/GET/*"
	apiStartBackup   = "execute-api:/" + apiStage + "/POST/backups"
	apiStartRestore  = "execute-api:/" + apiStage + "/POST/restores"
	apiAnyRestorePut = "execute-api:/*/POST/*restores*"
)

func (s *BackupStack) newAPI() {
	c := s.Config
	accessLogs := awslogs.NewLogGroup(s.Stack, jsii.String("ApiAccessLogs"), &awslogs.LogGroupProps{
		Retention:     retentionEnum[c.LogRetentionDays],
		EncryptionKey: s.OpsKey,
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
	// Assumed by principals of this account whose IAM policies allow
	// sts:AssumeRole on them: who may start what is decided once, here
	// and in the resource policy, not by every execute-api grant.
	role := func(id, desc string) awsiam.Role {
		return awsiam.NewRole(s.Stack, jsii.String(id), &awsiam.RoleProps{
			AssumedBy:          awsiam.NewAccountRootPrincipal(),
			Description:        jsii.String(desc),
			MaxSessionDuration: awscdk.Duration_Hours(jsii.Number(1)),
		})
	}
	s.APIOperatorRole = role("ApiOperatorRole", "edgevault API: read jobs and start backups")
	s.APIRestoreRole = role("ApiRestoreRole", "edgevault API: read jobs, start backups and restores (replaces the target's data)")

	p := &awsapigateway.LambdaRestApiProps{
		Handler: s.Functions[lambdaenv.API],
		Proxy:   jsii.Bool(true),
		// The API's name is the ApiName dimension of its metrics: one per
		// stack, so the 5XX alarms of two stacks stay apart.
		RestApiName: jsii.String(*s.Stack.StackName() + "-api"),
		Description: jsii.String("edgevault API: start backups and restores, read job state (SigV4 / IAM auth)"),
		EndpointConfiguration: &awsapigateway.EndpointConfiguration{
			Types: &[]awsapigateway.EndpointType{awsapigateway.EndpointType_REGIONAL},
		},
		DefaultMethodOptions: &awsapigateway.MethodOptions{AuthorizationType: awsapigateway.AuthorizationType_IAM},
		Policy:               s.apiPolicy(),
		CloudWatchRole:       jsii.Bool(c.APICloudWatchRole),
		DeployOptions: &awsapigateway.StageOptions{
			StageName:            jsii.String(apiStage),
			ThrottlingRateLimit:  jsii.Number(c.APIRateLimit),
			ThrottlingBurstLimit: jsii.Number(float64(c.APIBurstLimit)),
			AccessLogDestination: awsapigateway.NewLogGroupLogDestination(accessLogs),
			AccessLogFormat: awsapigateway.AccessLogFormat_JsonWithStandardFields(&awsapigateway.JsonWithStandardFieldProps{
				Caller: jsii.Bool(true), HttpMethod: jsii.Bool(true), Ip: jsii.Bool(true), Protocol: jsii.Bool(true),
				RequestTime: jsii.Bool(true), ResourcePath: jsii.Bool(true), ResponseLength: jsii.Bool(true),
				Status: jsii.Bool(true), User: jsii.Bool(true),
			}),
			LoggingLevel:     awsapigateway.MethodLoggingLevel_ERROR,
			DataTraceEnabled: jsii.Bool(false), // bodies may hold restore options; never log them
			MetricsEnabled:   jsii.Bool(true),
			TracingEnabled:   jsii.Bool(c.Tracing),
		},
	}
	if c.APICloudWatchRole {
		// The API Gateway account setting outlives the stack: other APIs
		// of the account may rely on it.
		p.CloudWatchRoleRemovalPolicy = awscdk.RemovalPolicy_RETAIN
	}
	s.API = awsapigateway.NewLambdaRestApi(s.Stack, jsii.String("RestApi"), p)
	suppress(s.API, true,
		nag("AwsSolutions-APIG2",
			"Proxy integration: the api function decodes and validates every request body itself (strict JSON into typed requests); an API Gateway validator without models would check nothing."),
		nag("AwsSolutions-APIG3",
			"Every method requires SigV4 (IAM) authorization, a resource policy admits only the named roles, and the stage is throttled; the API is for a handful of operators and automation, so WAF adds cost without reducing the exposure left."),
		nag("AwsSolutions-COG4",
			"Methods use IAM (SigV4) authorization instead of a Cognito user pool: callers are IAM principals (operators, CI) that the API's resource policy names."),
	)
	if c.APICloudWatchRole {
		suppress(s.API, true, nag("AwsSolutions-IAM4",
			"The API Gateway account-level CloudWatch role is shared by every REST API of the account and region, so it cannot be limited to this stack's log groups; AmazonAPIGatewayPushToCloudWatchLogs is the AWS-documented policy for it. Disable with apiGatewayCloudWatchRole=false if the account already has one.", "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"))
	}
}

// apiPolicy is the API's resource policy. In the API's own account an
// IAM policy allowing execute-api:Invoke would be enough to call it, so the
// callers are limited by explicit denies, which no IAM policy overrides:
// only the stack's roles and the ARNs of apiBackupRoleArns and
// apiRestoreRoleArns may call the API at all, and of them only the restore
// role and apiRestoreRoleArns may start a restore. The allows let the
// named callers in without an IAM policy of their own (and are what
// principals of other accounts need besides theirs).
func (s *BackupStack) apiPolicy() awsiam.PolicyDocument {
	backupARNs, restoreARNs := s.Config.APIPrincipals()
	restorers := []any{s.APIRestoreRole.RoleArn()}
	for _, a := range restoreARNs {
		restorers = append(restorers, a)
	}
	callers := append([]any{s.APIOperatorRole.RoleArn()}, restorers...)
	for _, a := range backupARNs {
		callers = append(callers, a)
	}
	principals := func(arns []any) *[]awsiam.IPrincipal {
		out := make([]awsiam.IPrincipal, len(arns))
		for i, a := range arns {
			switch v := a.(type) {
			case string:
				out[i] = awsiam.NewArnPrincipal(jsii.String(v))
			case *string:
				out[i] = awsiam.NewArnPrincipal(v)
			}
		}
		return &out
	}
	st := func(sid string, effect awsiam.Effect, p *[]awsiam.IPrincipal, resources []string, cond map[string]any) awsiam.PolicyStatement {
		props := &awsiam.PolicyStatementProps{
			Sid: jsii.String(sid), Effect: effect, Principals: p,
			Actions: jsii.Strings("execute-api:Invoke"), Resources: jsii.Strings(resources...),
		}
		if cond != nil {
			props.Conditions = &cond
		}
		return awsiam.NewPolicyStatement(props)
	}
	anyone := &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()}
	notIn := func(arns []any) map[string]any {
		return map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": arns}}
	}
	doc := awsiam.NewPolicyDocument(nil)
	doc.AddStatements(
		st("NamedCallersReadAndBackUp", awsiam.Effect_ALLOW, principals(callers), []string{apiReads, apiStartBackup}, nil),
		st("RestoreCallersRestore", awsiam.Effect_ALLOW, principals(restorers), []string{apiStartRestore}, nil),
		st("NobodyElse", awsiam.Effect_DENY, anyone, []string{apiEverything}, notIn(callers)),
		st("NoRestoresButRestoreCallers", awsiam.Effect_DENY, anyone, []string{apiAnyRestorePut}, notIn(restorers)),
	)
	return doc
}
