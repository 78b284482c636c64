package ctl

import "github.com/spf13/cobra"

func concurrencyCommands(g *globals) []*cobra.Command { return nil }
