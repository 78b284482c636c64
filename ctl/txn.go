package ctl

import "github.com/spf13/cobra"

func txnCommands(g *globals) []*cobra.Command { return nil }
