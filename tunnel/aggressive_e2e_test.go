package tunnel_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

func identity(t *testing.T, s string) *ike.Identity {
	t.Helper()
	id, err := ike.ParseIdentity(s)
	if err != nil {
		t.Fatal(err)
	}
	return &id
}

// aggressiveServer accepts only Aggressive Mode, as @vpn.example.test, from
// the client identity client@example.test.
func aggressiveServer(t *testing.T) *testserver.Server {
	return startServer(t, testserver.Config{IKEMode: ike.ModeAggressive,
		LocalID: identity(t, "@vpn.example.test"), ClientID: identity(t, "client@example.test")})
}

// TestAggressiveMode: the client in Aggressive Mode against the test server
// that accepts only it, with identities both ways: data moves.
func TestAggressiveMode(t *testing.T) {
	srv := aggressiveServer(t)
	cfg := clientConfig(t, srv)
	cfg.IKEMode = ike.ModeAggressive
	cfg.LocalID, cfg.RemoteID = identity(t, "client@example.test"), identity(t, "vpn.example.test")
	c := dial(t, cfg)
	if got := c.Info().IKESuite; got != "AES-CBC-256/HMAC-SHA2-512/MODP2048" {
		t.Errorf("IKE suite %q", got)
	}
	moveData(t, c, srv)
}

func dialFail(t *testing.T, cfg tunnel.Config) error {
	t.Helper()
	start := time.Now()
	c, err := tunnel.Dial(context.Background(), cfg)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to fail", d)
	}
	t.Logf("error: %v", err)
	return err
}

// TestAggressiveModeWrongRemoteID: --remote-id is not what the server
// sends: one IKE error naming both identities and --remote-id.
func TestAggressiveModeWrongRemoteID(t *testing.T) {
	cfg := clientConfig(t, aggressiveServer(t))
	cfg.IKEMode = ike.ModeAggressive
	cfg.LocalID, cfg.RemoteID = identity(t, "client@example.test"), identity(t, "@other.example.test")
	err := dialFail(t, cfg)
	if !errors.Is(err, tunnel.ErrIKE) || !errors.Is(err, ike.ErrRemoteID) ||
		!strings.Contains(err.Error(), "identifies as @vpn.example.test in AM2, expected @other.example.test") ||
		!strings.Contains(err.Error(), "check --remote-id") || strings.Contains(err.Error(), "ike-mode") {
		t.Fatalf("error %q", err)
	}
}

// TestMainModeAgainstAggressiveOnly: Main Mode against a server that
// accepts only Aggressive Mode fails with a hint naming --ike-mode
// aggressive (and the PSK is not blamed alone); Aggressive Mode's own
// failures do not get that hint.
func TestMainModeAgainstAggressiveOnly(t *testing.T) {
	err := dialFail(t, clientConfig(t, aggressiveServer(t)))
	if !errors.Is(err, tunnel.ErrIKE) || !strings.Contains(err.Error(), "--ike-mode aggressive") {
		t.Fatalf("error %q", err)
	}
	cfg := clientConfig(t, aggressiveServer(t))
	cfg.IKEMode = ike.ModeAggressive
	cfg.LocalID = identity(t, "client@example.test")
	cfg.PSK = []byte("not-the-psk-sEcReT1")
	err = dialFail(t, cfg)
	if !errors.Is(err, ike.ErrAuthFailed) || strings.Contains(err.Error(), "--ike-mode") || !strings.Contains(err.Error(), "pre-shared key") ||
		strings.Contains(err.Error(), "sEcReT1") {
		t.Fatalf("aggressive mode, wrong PSK: %q", err)
	}
}
