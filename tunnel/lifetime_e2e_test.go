package tunnel_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestClientHonoursKilobyteLifetime: the server answers our Quick Modes with
// an ESP SA lifetime of 1,024 kilobytes (RFC 2407 §4.5 SA Life Type
// kilobytes), which we did not offer. An 8 MiB upload must then be carried
// by a new IPsec SA before each 1 MiB, make-before-break, and arrive intact
// on the same tunnel; no SA may carry a byte over its lifetime (the server
// counts what arrives per SPI), and no packet may be lost on the way:
// none failed to send, none dropped by the server for an unknown SPI.
func TestClientHonoursKilobyteLifetime(t *testing.T) {
	const lifeKB = 1024
	srv := startServer(t, testserver.Config{Phase2LifeKilobytes: lifeKB})
	c := dial(t, clientConfig(t, srv))
	sent := uploadIntact(t, c, srv, "l2tpproxy kilobyte lifetimes ")
	// 8 MiB of payload in ESP datagrams is over 8 lifetimes of 1 MiB.
	// Without the byte lifetime there is 1 SA.
	n := srv.IPsecSAs()
	cs, ss := c.Stats(), srv.DataStats()
	t.Logf("%d IPsec SAs for %d bytes with a %d KB lifetime; client: %d rekeys, %d holds (%v), TCP %+v",
		n, sent, lifeKB, cs.ESPRekeys, cs.Holds, cs.HoldTime, c.Stack().TCPStats())
	if n < 9 {
		t.Errorf("%d IPsec SAs after an 8 MiB upload with a 1 MiB byte lifetime, want >= 9", n)
	}
	most := uint64(0)
	for spi, b := range srv.ESPBytesIn() {
		most = max(most, b)
		if b > lifeKB<<10 {
			t.Errorf("SA %08x carried %d bytes, over its lifetime of %d", spi, b, lifeKB<<10)
		}
	}
	t.Logf("the fullest SA carried %d bytes of %d; drops: client %v, server %v", most, lifeKB<<10, cs.Drops, ss.Drops)
	if cs.SendFailed.Packets != 0 || cs.HoldTimeouts != 0 {
		t.Errorf("client: %d packets failed to send, %d holds timed out; want 0", cs.SendFailed.Packets, cs.HoldTimeouts)
	}
	// (DropNoSA is not counted: the client's first SCCRQ may overtake the
	// server's install of the first SA, which L2TP repairs; no rekey.)
	for _, r := range []datapath.DropReason{datapath.DropUnknownSPI, datapath.DropReplay, datapath.DropAuth} {
		if d := ss.Drops[r]; d != 0 {
			t.Errorf("server dropped %d datagrams (%v)", d, r)
		}
	}
}

// TestExhaustedSAFailsTunnel: when the server stops answering (frozen)
// while we send, the outbound SA reaches its 64 KB lifetime and the
// rekey never completes: senders are held for the hold timeout (here
// 500 ms), then the tunnel goes down with datapath.ErrSAExhausted (which
// `up` answers by reconnecting), well before dead-peer detection.
func TestExhaustedSAFailsTunnel(t *testing.T) {
	const lifeKB = 64
	srv := startServer(t, testserver.Config{Phase2LifeKilobytes: lifeKB})
	cfg := clientConfig(t, srv)
	tunnel.SetESPHoldTimeout(&cfg, 500*time.Millisecond)
	c := dial(t, cfg)
	conn, err := c.DialContext(context.Background(), "udp", net.JoinHostPort(testserver.ServerIP.String(), strconv.Itoa(testserver.UDPEchoPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	payload := make([]byte, 1000)
	for c.Err() == nil && time.Since(frozen) < 5*time.Second {
		conn.Write(payload) // held at the exhausted SA, then failing
	}
	err = c.Err()
	took := time.Since(frozen)
	if !errors.Is(err, datapath.ErrSAExhausted) || !errors.Is(err, tunnel.ErrIKE) {
		t.Fatalf("tunnel error %v after %v, want datapath.ErrSAExhausted (class IKE)", err, took)
	}
	s := c.Stats()
	t.Logf("down %v after the freeze: %v; %d holds (%v), %d timed out, %d packets failed", took.Round(time.Millisecond), err,
		s.Holds, s.HoldTime.Round(time.Millisecond), s.HoldTimeouts, s.SendFailed.Packets)
	if s.HoldTimeouts == 0 || s.ESPOut.Bytes == 0 {
		t.Errorf("HoldTimeouts %d, ESP out %d bytes", s.HoldTimeouts, s.ESPOut.Bytes)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Error("the tunnel was not down 5 s after it failed")
	}
}
