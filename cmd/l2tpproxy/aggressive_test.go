package main

import (
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestCheckAggressiveMode: the flags reach the client. Against a test
// server that accepts only Aggressive Mode as @vpn.example.test:
// --ike-mode aggressive with the right --remote-id connects; a wrong one
// exits 4 naming both identities; Main Mode exits with a hint naming
// --ike-mode aggressive; bad values of the flags are configuration
// errors (exit 2).
func TestCheckAggressiveMode(t *testing.T) {
	id, err := ike.ParseIdentity("@vpn.example.test")
	if err != nil {
		t.Fatal(err)
	}
	aggr := func() *testserver.Server {
		return newServer(t, testserver.Config{IKEMode: ike.ModeAggressive, LocalID: &id})
	}
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  string
	}{
		{"aggressive", []string{"--ike-mode", "aggressive", "--remote-id", "vpn.example.test", "--local-id", "alice@example.test"}, 0, `"ike_suite":"AES-CBC-256/HMAC-SHA2-512/MODP2048"`},
		{"wrong remote id", []string{"--ike-mode", "aggressive", "--remote-id", "@#6b6579"}, exitIKE, "identifies as @vpn.example.test in AM2, expected @#6b6579 (check --remote-id"},
		{"main mode", nil, exitIKE, "try --ike-mode aggressive"},
		{"bad mode", []string{"--ike-mode", "quick"}, exitConfig, "--ike-mode must be main or aggressive"},
		{"bad id", []string{"--local-id", "@#zz"}, exitConfig, "--local-id: ike: invalid configuration: KEY_ID @#zz is not hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCheckCmd(t, aggr(), append(tc.flags, "--json")...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}
