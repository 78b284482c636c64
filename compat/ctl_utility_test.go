package compat

import (
	"regexp"
	"testing"
)

// maskCtlVersion masks the CLI's own version: etcdctl prints etcd's, keelctl
// keel's. The "API version" line is compared as it is.
var maskCtlVersion = []*regexp.Regexp{regexp.MustCompile(`(?m)^keelctl version: (\S+)$`)}

func TestCtlVersion(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(
		twinStep{Args: []string{"version"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "extra", "args"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "-w", "json"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "-w", "yaml", "--hex"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version"}, NoEndpoints: true, Env: []string{"ETCDCTL_FOO=1"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "--bogus"}, Mask: maskCtlVersion},
	)
}
