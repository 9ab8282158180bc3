// Package restore restores a v1.1 archive into an EdgeBase deployment in
// the protocol's order (control D1, auth D1, orphan DO wipe, DB DOs, data
// namespaces, R2 wipe and puts, _users_public resync, secrets last); R2
// objects the target already holds unchanged are kept, not uploaded again. Its
// Planner validates the whole archive and checks the target's schema
// before anything is written; its Coordinator opens one phase at a time on
// top of pkg/backup's queue, workers and job records, so the same restore
// runs embedded and on Lambda, and a wipe can never run after the writes
// of a later phase.
package restore
