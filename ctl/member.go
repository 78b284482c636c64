package ctl

import "github.com/spf13/cobra"

func memberCommands(g *globals) []*cobra.Command { return nil }
