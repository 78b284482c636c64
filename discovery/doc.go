// Package discovery finds the initial cluster of a new member the two ways
// etcd 3.7 does besides a static --initial-cluster:
//
//   - DNS SRV records (--discovery-srv, --discovery-srv-name): SRVCluster
//     reads _etcd-server-ssl._tcp.<domain> (https peers) and
//     _etcd-server._tcp.<domain> (http peers) and finds this member among
//     their targets by address.
//   - v3 discovery (--discovery-token, --discovery-endpoints): JoinCluster
//     registers this member under /_etcd/registry/<token>/members/ on an
//     existing cluster and waits until as many members as
//     /_etcd/registry/<token>/_config/size says have registered.
//
// Both return the initial cluster in --initial-cluster's form. Lookups go
// through a *net.Resolver so tests can point them at a DNS server of their
// own (see Resolver).
package discovery
