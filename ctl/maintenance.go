package ctl

import "github.com/spf13/cobra"

func maintenanceCommands(g *globals) []*cobra.Command { return nil }
