package main

import "github.com/urfave/cli/v2"

// tunnelFlagsByName are the settings one entry of the configuration file's
// tunnels list may have: the connection flags, its routes and domains, and
// a name for the logs.
func tunnelFlagsByName() map[string]cli.Flag {
	m := map[string]cli.Flag{}
	for _, f := range connectionFlags() {
		m[flagName(f)] = f
	}
	for _, f := range listenerFlags() {
		if n := flagName(f); n == "route" || n == "domain" {
			m[n] = f
		}
	}
	m["name"] = &cli.StringFlag{Name: "name"}
	return m
}
