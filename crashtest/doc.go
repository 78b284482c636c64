// Package crashtest checks that keel survives crashes without losing or
// tearing an acknowledged write. It holds tests only:
//
//   - TestKillNineLosesNoAcknowledgedWrite runs the keel binary as a child
//     process under concurrent load from the official client and kills it
//     with SIGKILL at a random moment, round after round on one data dir.
//   - TestPowerLossLosesNoAcknowledgedWrite runs the keel server in-process
//     on Pebble's crashable in-memory filesystem (server.WithFS), under the
//     same load from the official client, and simulates power loss by
//     keeping only what was synced (plus, in some rounds, a random part of
//     what was not).
//   - TestPowerLossRightAfterBootstrapKeepsWrites and
//     TestPowerLossDuringBootstrapLeavesStartableMember lose power in the
//     first moments of a new member's life.
//
// After every crash the member is restarted and its whole history since the
// last check is read back revision by revision: every revision must be the
// complete effect of exactly one issued write (acknowledged writes at the
// revision they were acknowledged with), nothing verified before may change,
// and compactions must survive. Both tests are driven by a seed that is
// logged; -seed or KEEL_CRASH_SEED replays it, -rounds or KEEL_CRASH_ROUNDS
// sets the number of crashes (default 5).
package crashtest
