package tunnel_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestPPPAuthPolicy: the whole client against a test server that requires
// exactly one PPP method. An allowed method connects and is reported in
// Info; a refused one is a PPP-class error that names the method and the
// --ppp-auth word that would allow it.
func TestPPPAuthPolicy(t *testing.T) {
	for _, tc := range []struct {
		server ppp.AuthMethod
		policy ppp.AuthPolicy
		want   string // "" = connects; else in the error
	}{
		{ppp.AuthPAP, ppp.AllowPAP, ""},
		{ppp.AuthPAP, 0, "the server requires PAP, which the authentication policy does not allow (add pap to --ppp-auth; PAP sends the password in clear"},
		{ppp.AuthEAPMSCHAPv2, 0, ""},
		{ppp.AuthCHAPMD5, ppp.AllowMSCHAPv2, "the server requires CHAP-MD5, which the authentication policy does not allow (add chap to --ppp-auth)"},
	} {
		t.Run(tc.server.String()+"/"+tc.policy.String(), func(t *testing.T) {
			cfg := clientConfig(t, startServer(t, testserver.Config{Auth: tc.server, AuthOnly: true}))
			cfg.Auth = tc.policy
			c, err := tunnel.Dial(context.Background(), cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if got := c.Info().PPPAuth; got != tc.server.String() {
					t.Errorf("PPPAuth %q, want %v", got, tc.server)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, tunnel.ErrPPP) || !errors.Is(err, ppp.ErrAuthRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want ErrPPP with %q", err, tc.want)
			}
		})
	}
}
