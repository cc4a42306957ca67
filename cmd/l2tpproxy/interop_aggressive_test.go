//go:build interop

package main

import (
	"strings"
	"testing"
	"time"
)

// runEdited is runWith with stdout and stderr together.
func runEdited(t *testing.T, p peer, edit func(map[string]string), timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	code, stdout, stderr := runWith(t, p, edit, timeout, args...)
	return code, stdout + stderr
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
