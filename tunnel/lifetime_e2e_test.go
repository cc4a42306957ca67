package tunnel_test

import (
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestClientHonoursKilobyteLifetime: the server answers our Quick Modes with
// an ESP SA lifetime of 1,024 kilobytes (RFC 2407 §4.5 SA Life Type
// kilobytes), which we did not offer. An 8 MiB upload must then be carried
// by a new IPsec SA before each 1 MiB, make-before-break, and arrive intact
// on the same tunnel.
func TestClientHonoursKilobyteLifetime(t *testing.T) {
	const lifeKB = 1024
	srv := startServer(t, testserver.Config{Phase2LifeKilobytes: lifeKB})
	c := dial(t, clientConfig(t, srv))
	sent := uploadIntact(t, c, srv, "l2tpproxy kilobyte lifetimes ")
	// 8 MiB of payload in ESP datagrams is over 8 lifetimes of 1 MiB; we
	// ask for a rekey at 90 %, but on loopback the upload runs at tens of
	// MB/s, so while a Quick Mode is under way (longer on a loaded
	// machine) the SA carries on: 9 SAs alone, 5 under `make test`'s
	// parallel load. Without the byte lifetime there is 1.
	n := srv.IPsecSAs()
	t.Logf("%d IPsec SAs for %d bytes with a %d KB lifetime", n, sent, lifeKB)
	if n < 4 {
		t.Errorf("%d IPsec SAs after an 8 MiB upload with a 1 MiB byte lifetime, want >= 4", n)
	}
}
