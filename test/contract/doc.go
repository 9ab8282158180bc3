// Package contract holds the EdgeBase contract tests: one table of
// requests against the admin backup API and the public REST subset, whose
// answers (status, key headers, body with ids and timestamps normalized)
// must equal the goldens in testdata, which were recorded from a real
// EdgeBase 0.2.8 server. They always run against the emulator
// (pkg/edgebase/edgebasetest) in both of its profiles and, with
// EDGEVAULT_PEER=1, also against a freshly started real server
// (internal/peer). A difference is a bug in the emulator, except for the
// few steps newerAnswers lists, where the 0.4.x-0.5.x profile answers as
// Appendix B describes (DIFFERENCES.md lists them too);
// TestContractNewer checks the rest of Appendix B against that profile.
package contract
