package ctl

import "github.com/spf13/cobra"

func leaseCommands(g *globals) []*cobra.Command { return nil }
