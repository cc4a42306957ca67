package tunnel_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike/certtest"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// certSetup: a CA, a server certificate for vpn.example.test and
// 127.0.0.1 with a 4096-bit key (MM6 then exceeds the 1200-byte fragment
// size, as with real servers), a client certificate; the client trusts
// caFor.
func certSetup(t *testing.T, trustOther bool, remoteID string) (testserver.Config, tunnel.Config) {
	ca := certtest.NewCA("l2tpproxy test CA", 0)
	srvID := ca.Issue("vpn.example.test", 5, 4096, []string{"vpn.example.test"}, net.ParseIP("127.0.0.1"))
	cliID := ca.Issue("client", 3, 0, nil)
	trusted := ca.Cert
	if trustOther {
		trusted = certtest.NewCA("some other CA", 1).Cert
	}
	scfg := testserver.Config{Cert: &ike.Certificates{Chain: []*x509.Certificate{srvID.Cert}, Key: srvID.Key, CAs: []*x509.Certificate{ca.Cert}}}
	return scfg, tunnel.Config{
		Cert:         &ike.Certificates{Chain: []*x509.Certificate{cliID.Cert}, Key: cliID.Key, CAs: []*x509.Certificate{trusted}},
		CertRemoteID: remoteID,
	}
}

func certClient(t *testing.T, scfg testserver.Config, c tunnel.Config) tunnel.Config {
	cfg := clientConfig(t, startServer(t, scfg))
	cfg.PSK, cfg.Cert, cfg.CertRemoteID = nil, c.Cert, c.CertRemoteID
	return cfg
}

// TestCertEndToEnd: RSA signatures with certificates in both roles, IKE
// fragments both ways (the client's MM5 and the server's MM6 are larger
// than 1200 bytes), and then the whole tunnel up to DNS through it.
func TestCertEndToEnd(t *testing.T) {
	scfg, c := certSetup(t, false, "")
	cfg := certClient(t, scfg, c)
	cl := dial(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.LookupHost(ctx, testserver.TargetName); err != nil {
		t.Fatalf("DNS through the tunnel: %v", err)
	}
}

func TestCertFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		trustOther bool
		remoteID   string
		want       error
		hint       string
	}{
		{"wrong CA", true, "", ike.ErrCertUntrusted, "--ca"},
		{"wrong identity", false, "gw.example.test", ike.ErrIdentityMismatch, "--remote-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scfg, c := certSetup(t, tc.trustOther, tc.remoteID)
			cfg := certClient(t, scfg, c)
			start := time.Now()
			cl, err := tunnel.Dial(context.Background(), cfg)
			if err == nil {
				cl.Close()
				t.Fatal("Dial succeeded")
			}
			var te *tunnel.Error
			if !errors.As(err, &te) || !errors.Is(err, tunnel.ErrIKE) || !errors.Is(err, tc.want) || !strings.Contains(te.Hint, tc.hint) {
				t.Fatalf("error %q (hint %q), want %v with a hint naming %s", err, te.Hint, tc.want, tc.hint)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v to fail", d)
			}
			t.Logf("%v", err)
		})
	}
}
