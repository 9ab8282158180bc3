package main

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"

	"github.com/edgevault/edgevault/internal/lambdaenv"
)

// newAlarms defines the backup stack's alarms. Two kinds: those that fire
// on a failure (a dead letter, a failed job, an error, a throttle; no data
// means nothing failed), and the freshness alarms, which fire when the
// success they wait for has not been seen for too long, whatever the
// reason, silence included. Every metric is the stack's own (its queues,
// functions and API, its metrics namespace), so stacks sharing an
// account do not set off each other's alarms. DEPLOY.md says what to do
// when each fires.
func (s *BackupStack) newAlarms() {
	c := s.Config
	s.AlarmTopic = newAlarmTopic(s.Stack, "Alarms", s.OpsKey, c.AlarmEmail)
	add := func(a alarmSpec) { s.Alarms[a.id] = newAlarm(s.Stack, s.AlarmTopic, a) }
	metric := func(name string, opts *awscloudwatch.MetricOptions) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String(c.Namespace()), MetricName: jsii.String(name),
			Period: opts.Period, Statistic: opts.Statistic,
		})
	}

	// Freshness.
	s.BackupsDone = awslogs.NewMetricFilter(s.Stack, jsii.String("BackupsDoneFilter"), &awslogs.MetricFilterProps{
		LogGroup:        s.Functions[lambdaenv.Assembler].LogGroup(),
		FilterPattern:   awslogs.FilterPattern_Literal(jsii.String(backupsDonePattern)),
		MetricNamespace: jsii.String(c.Namespace()),
		MetricName:      jsii.String(backupsDoneMetric),
		MetricValue:     jsii.String("1"),
	})
	add(freshness("BackupFreshnessAlarm",
		fmt.Sprintf("edgevault: no backup finished in the last %d hours (failing, not started, or its metrics lost)", c.BackupMaxAgeHours),
		s.BackupsDone.Metric(sum(oneHour)), c.BackupMaxAgeHours))
	if c.DR.Enabled() {
		add(freshness("DRCopyFreshnessAlarm",
			fmt.Sprintf("edgevault: no archive copied to the DR bucket and verified in the last %d hours", c.DRCopyMaxAgeHours),
			metric(drCopiesMetric, sum(oneHour)), c.DRCopyMaxAgeHours))
	}

	// A restore replaces the target's data: whoever receives the alarms
	// hears of every one as it starts, whoever started it.
	s.RestoresStarted = awslogs.NewMetricFilter(s.Stack, jsii.String("RestoresStartedFilter"), &awslogs.MetricFilterProps{
		LogGroup:        s.Functions[lambdaenv.Scheduler].LogGroup(),
		FilterPattern:   awslogs.FilterPattern_Literal(jsii.String(restoresStartedPattern)),
		MetricNamespace: jsii.String(c.Namespace()),
		MetricName:      jsii.String(restoresStartedMetric),
		MetricValue:     jsii.String("1"),
	})
	add(anyAbove("RestoreStartedAlarm", "edgevault: a restore started; it replaces the target's data (expected only when someone started one through the API)",
		s.RestoresStarted.Metric(sum(fiveMinutes))))

	// Failures.
	dlqDepth := func(q awssqs.Queue) awscloudwatch.IMetric {
		return q.MetricApproximateNumberOfMessagesVisible(maximum(fiveMinutes))
	}
	add(anyAbove("TaskDLQAlarm", "edgevault: tasks failed for good (task dead-letter queue not empty)", dlqDepth(s.TaskDLQ)))
	add(anyAbove("ControlDLQAlarm", "edgevault: job checks failed for good (control dead-letter queue not empty)", dlqDepth(s.ControlDLQ)))
	add(anyAbove("InvokeDLQAlarm", "edgevault: a scheduled start, watchdog run, API start, DR copy, DR reconcile or maintain run failed for good (invoke dead-letter queue not empty)", dlqDepth(s.InvokeDLQ)))
	add(anyAbove("WorkerErrorsAlarm", "edgevault: worker invocations failed (crash or timeout)",
		s.Functions[lambdaenv.Worker].MetricErrors(sum(fiveMinutes))))
	add(anyAbove("JobsFailedAlarm", "edgevault: a backup or restore job failed", metric(jobsFailedMetric, sum(fiveMinutes))))
	specs := fnSpecs(c)
	for _, fn := range s.deployed() {
		add(anyAbove(specs[fn].id+"ThrottlesAlarm", "edgevault: invocations of the "+fn+" function were throttled (account or reserved concurrency exhausted)",
			s.Functions[fn].MetricThrottles(sum(fiveMinutes))))
	}
	add(anyAbove("Api5xxAlarm", "edgevault: the API answered with server errors (5XX)",
		s.API.MetricServerError(sum(fiveMinutes))))
	// Tasks wait while workers are busy; a task older than this means the
	// workers stopped taking them, or the job is far larger than the
	// stack is sized for.
	age := alarmSpec{
		id:          "TaskQueueAgeAlarm",
		description: fmt.Sprintf("edgevault: a task has waited in the task queue for more than %d minutes", c.TaskAgeAlarmMinutes),
		metric:      s.TaskQueue.MetricApproximateAgeOfOldestMessage(maximum(fiveMinutes)),
		threshold:   float64(c.TaskAgeAlarmMinutes * 60),
		cmp:         awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		missing:     awscloudwatch.TreatMissingData_NOT_BREACHING,
	}
	add(age)
	s.drillAlarms(add)
	s.maintainAlarms(add)
}
