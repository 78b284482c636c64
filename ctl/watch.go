package ctl

import "github.com/spf13/cobra"

func watchCommands(g *globals) []*cobra.Command { return nil }
