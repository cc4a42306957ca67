//go:build !interop

package main

import "testing"

// TestInterop is the placeholder of the interop suite in builds without the
// interop tag, so that `go test -v ./...` says how to run it.
func TestInterop(t *testing.T) {
	t.Skip("interop tests against real servers (SoftEther, Libreswan, strongSwan) need root: run `sudo make interop` (see README)")
}
