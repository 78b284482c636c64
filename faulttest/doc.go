// Package faulttest checks that a cluster of keel members stays linearizable
// and loses no acknowledged write while faults are injected: members killed
// with SIGKILL and restarted, the leader isolated, the cluster split into a
// minority and a majority, peer traffic delayed, and a member removed and
// added back, all under concurrent load from the official client.
//
// The members run as child processes. Their peer traffic goes through
// proxies in the test process (Net): every member advertises its proxy's
// address as its peer URL, so a proxy sees every stream sent to its member
// and, from the transport's "keel-from"/"keel-to" metadata, which pair of
// members it belongs to. Partitions and delays are rules on those pairs.
//
// The workload's history (puts, txns with compares, ranges, deletes, each
// with its header revision) is checked with porcupine against a model of
// etcd's key-value store that includes the revision. Writes whose outcome a
// client did not learn are resolved afterwards from the cluster's full
// history, read with a watch from revision 1. After healing, every member's
// KV hash at the converged revision must be the same.
//
// The same harness runs against real etcd (KEEL_FAULT_TARGET=etcd) to show
// that the harness, the model and the checker are right. etcd's peer traffic
// is HTTP/1.1 without pair metadata, so for etcd the proxies work at the TCP
// level (delays only) and partitions are made by stopping members with
// SIGSTOP until healed.
//
// The package's only non-test code is the proxy (proxy.go); the harness and
// checker are in its tests. See TestLinearizableUnderFaults for the knobs.
package faulttest
