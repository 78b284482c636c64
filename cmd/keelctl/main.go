// Command keelctl is keel's operator CLI. It takes etcdctl's commands, flags
// and ETCDCTL_* variables and prints what etcdctl prints, so that scripts
// written for etcdctl keep working with the binary renamed.
package main

import (
	"os"

	"github.com/keeldb/keel/ctl"
)

func main() {
	os.Exit(ctl.Main(os.Args[1:], ctl.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
