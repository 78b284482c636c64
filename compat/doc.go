// Package compat holds differential tests that run real etcd beside keel and
// assert that both give the same answers. It is a separate module so that the
// product's go.mod never depends on etcd's server.
package compat
