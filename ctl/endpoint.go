package ctl

import "github.com/spf13/cobra"

func endpointCommands(g *globals) []*cobra.Command { return nil }
