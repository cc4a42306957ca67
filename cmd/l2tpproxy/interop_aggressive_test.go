//go:build interop

package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runEdited is runBinary with the environment edited first.
func runEdited(t *testing.T, p peer, edit func(map[string]string), timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := command(t, p, edit, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v still running after %v\n%s", args, timeout, out.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), p["PSK"]) || strings.Contains(out.String(), p["VPN_PASSWORD"]) {
		t.Fatalf("a secret appears in the output of %v", args)
	}
	return code, out.String()
}

// TestInteropAggressiveErrors runs against a server that accepts only
// Aggressive Mode (MODE=aggressive): Main Mode fails, and its one-line
// error names --ike-mode aggressive; Aggressive Mode with a --remote-id
// the server does not have fails with exit 4 naming both identities and
// --remote-id. Each within the time the README promises.
func TestInteropAggressiveErrors(t *testing.T) {
	p := loadPeer(t)
	if p["IKE_MODE"] != "aggressive" {
		t.Skipf("variant %s accepts Main Mode", p.label())
	}
	start := time.Now()
	code, out := runEdited(t, p, func(e map[string]string) {
		e["L2TPPROXY_IKE_MODE"] = "main"
		delete(e, "L2TPPROXY_REMOTE_ID")
	}, 60*time.Second, "check", "--log-level", "warn")
	d := time.Since(start)
	t.Logf("MAIN_MODE_REFUSED %s exit=%d in %.1fs: %s", p.label(), code, d.Seconds(), strings.TrimSpace(out))
	if (code != exitIKE && code != exitUnreachable) || !strings.Contains(out, "--ike-mode aggressive") || d > 15*time.Second {
		t.Errorf("Main Mode against an Aggressive-only server: exit %d after %v, want 3 or 4 naming --ike-mode aggressive within 15 s:\n%s", code, d, out)
	}

	start = time.Now()
	code, out = runEdited(t, p, func(e map[string]string) {
		e["L2TPPROXY_REMOTE_ID"] = "@wrong.example.test"
	}, 60*time.Second, "check", "--log-level", "warn")
	d = time.Since(start)
	t.Logf("WRONG_REMOTE_ID %s exit=%d in %.1fs: %s", p.label(), code, d.Seconds(), strings.TrimSpace(out))
	if code != exitIKE || !strings.Contains(out, "expected @wrong.example.test") || !strings.Contains(out, "identifies as "+p["REMOTE_ID"]) ||
		!strings.Contains(out, "--remote-id") || d > 15*time.Second {
		t.Errorf("wrong --remote-id: exit %d after %v, want 4 naming both identities:\n%s", code, d, out)
	}
	if !strings.Contains(out, "Aggressive Mode with a pre-shared key") {
		t.Errorf("no offline-guessing warning in:\n%s", out)
	}
}
