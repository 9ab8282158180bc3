// Package metrics writes CloudWatch embedded metric format (EMF) documents:
// one JSON object per line on a writer (stdout in Lambda), from which
// CloudWatch Logs extracts metrics without any API call or agent. Every
// document also rolls its metrics up without dimensions, so alarms can
// watch a total (JobsFailed) whatever function emitted it.
package metrics
