package ctl

import (
	"github.com/spf13/cobra"
	etcdversion "go.etcd.io/etcd/api/v3/version"

	"github.com/keeldb/keel/version"
)

func utilityCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{versionCommand(g)}
}

// versionCommand prints keelctl's own version and the etcd API version it
// speaks (that of the etcd API package it is built with, as etcdctl), in
// etcdctl's two-line shape: scripts parse the "API version" line.
// As etcdctl, it ignores its arguments, the output format and the
// environment.
func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Prints keelctl's version and the API version",
		GroupID: groupUtility,
		Run: func(cmd *cobra.Command, args []string) {
			p := &printer{w: g.stdio.Out}
			p.println("keelctl version:", version.Version)
			p.println("API version:", etcdversion.APIVersion)
		},
	}
}
