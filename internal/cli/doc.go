// Package cli is the edgevault command line: backup create|restore|verify|
// list and export. It wires the pipeline of pkg/backup and pkg/restore to
// the embedded runtime (an in-process queue and a local directory) and
// renders progress, summaries and the official CLI's --json shapes.
package cli
