package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: `l2tpproxy version` names our version, the Go toolchain and
// the module (with its VCS revision when the build recorded one); -X
// main.version wins over the module version.
func TestVersion(t *testing.T) {
	out := captureStdout(t, func() {
		if code := run([]string{"l2tpproxy", "version"}); code != 0 {
			t.Errorf("exit code %d", code)
		}
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "l2tpproxy ") ||
		lines[1] != "go "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH ||
		!strings.HasPrefix(lines[2], "module github.com/l2tpproxy/l2tpproxy ") {
		t.Errorf("output:\n%s", out)
	}

	old, oldInfo := version, buildInfo
	defer func() { version, buildInfo = old, oldInfo }()
	buildInfo = func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/l2tpproxy/l2tpproxy", Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "f815f56"}, {Key: "vcs.time", Value: "2026-11-27T20:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	want := "l2tpproxy v1.2.3\ngo " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH +
		"\nmodule github.com/l2tpproxy/l2tpproxy v1.2.3\nrevision f815f56 2026-11-27T20:00:00Z (modified)\n"
	if got := versionText(); got != want {
		t.Errorf("with a module version:\n%s\nwant\n%s", got, want)
	}
	version = "v9.9.9-ci"
	if got := versionText(); !strings.HasPrefix(got, "l2tpproxy v9.9.9-ci\n") || !strings.Contains(got, "module github.com/l2tpproxy/l2tpproxy v1.2.3\n") {
		t.Errorf("with -X main.version:\n%s", got)
	}
}

// TestVersionLdflags builds the binary with -ldflags -X main.version and
// runs it: the variable is really settable that way.
func TestVersionLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command")
		}
	}
	bin := filepath.Join(t.TempDir(), "l2tpproxy")
	build := exec.Command(gobin, "build", "-ldflags", "-X main.version=v0.0.0-ldflags-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || !strings.Contains(string(out), "v0.0.0-ldflags-test") {
			t.Errorf("%s %v: %q, %v", bin, args, out, err)
		}
	}
}
