package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is the release name, set at build time with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/l2tpproxy
//
// Without it, the module version from the build information is used.
var version string

// buildInfo is debug.ReadBuildInfo, replaceable in tests.
var buildInfo = debug.ReadBuildInfo

// versionString is the version to show: -X main.version, else the main
// module's version (a tag or pseudo-version when built from a module or a
// VCS checkout), else "devel".
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := buildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// versionText is what `l2tpproxy version` prints: our version, the Go
// toolchain, the module and, when the build recorded it, the VCS revision.
func versionText() string {
	s := fmt.Sprintf("l2tpproxy %s\ngo %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	bi, ok := buildInfo()
	if !ok {
		return s + "module: no build information in this binary\n"
	}
	mv := bi.Main.Version
	if mv == "" {
		mv = "(devel)"
	}
	s += fmt.Sprintf("module %s %s\n", bi.Main.Path, mv)
	var rev, at, modified string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	if rev != "" {
		s += fmt.Sprintf("revision %s %s%s\n", rev, at, modified)
	}
	return s
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version of l2tpproxy, of Go it was built with, and of its module",
		Action: func(cx *cli.Context) error {
			_, err := fmt.Fprint(cx.App.Writer, versionText())
			return err
		},
	}
}
