package ctl

import "github.com/spf13/cobra"

func utilityCommands(g *globals) []*cobra.Command { return nil }
