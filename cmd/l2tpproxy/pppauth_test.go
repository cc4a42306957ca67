package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// A server that requires PAP: the default --ppp-auth refuses it with one
// line naming PAP and the flag, exit 6 (PPP), at once; `--ppp-auth pap` is
// what that line asks for.
func TestPPPAuthRefusedExit(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{Auth: ppp.AuthPAP, AuthOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var code int
	start := time.Now()
	out := captureStderr(t, func() {
		code = run([]string{"l2tpproxy", "up", "--server", srv.IKEAddr().String(), "--natt-port", strconv.Itoa(int(srv.NATTAddr().Port())),
			"--psk", "testpsk", "--user", "vpnuser", "--password", "vpnpass", "--socks5", "127.0.0.1:0", "--http", "", "--log-level", "error"})
	})
	if code != exitPPP {
		t.Errorf("exit code %d, want %d; output %q", code, exitPPP, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	const want = "l2tpproxy: PPP: ppp: the server requires PAP, which the authentication policy does not allow (add pap to --ppp-auth; PAP sends the password in clear to anyone who holds the PSK)"
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("output %q, want the one line %q", out, want)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}
