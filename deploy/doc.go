// Package deploy holds keel's deployment files: a systemd unit
// (keel.service), a configuration file in etcd's layout (keel.conf.yml), a
// Kubernetes static-pod manifest (keel-static-pod.yaml) and a Dockerfile
// building static binaries on scratch. Its tests check that the flags they
// pass are flags keel accepts and that the probes point at paths keel
// serves.
package deploy
