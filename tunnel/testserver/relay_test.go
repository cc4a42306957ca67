package testserver

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
)

// TestLossyRelay: the relay refuses a target off loopback, forwards both
// ways, and drops about the fraction asked for, the same datagrams for the
// same seed.
func TestLossyRelay(t *testing.T) {
	if _, err := StartLossyRelay(netip.MustParseAddrPort("192.0.2.1:4500"), 0.05, 1); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("relay to 192.0.2.1: %v, want ErrNotLoopback", err)
	}
	run := func(seed uint64) (gotBack []byte) {
		lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
		server, err := net.ListenUDP("udp4", lo)
		if err != nil {
			t.Fatal(err)
		}
		defer server.Close()
		datapath.SetReceiveBuffer(server, 4<<20)
		r, err := StartLossyRelay(server.LocalAddr().(*net.UDPAddr).AddrPort(), 0.2, seed)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		client, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(r.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		datapath.SetReceiveBuffer(client, 4<<20)
		// The server echoes; what comes back crossed the relay twice.
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := server.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				server.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
		const n = 500
		for i := range n {
			client.Write([]byte{byte(i), byte(i >> 8)})
		}
		seen := make([]byte, n)
		buf := make([]byte, 64)
		for {
			client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			m, err := client.Read(buf)
			if err != nil {
				break
			}
			if m == 2 {
				seen[int(buf[0])|int(buf[1])<<8] = 1
			}
		}
		if r.ToServer.Load()+r.DroppedToServer.Load() != n {
			t.Errorf("relay saw %d datagrams to the server, want %d", r.ToServer.Load()+r.DroppedToServer.Load(), n)
		}
		lost := r.DroppedToServer.Load() + r.DroppedToClient.Load()
		if lost < 100 || lost > 260 { // expected 0.2*500 + 0.2*400 = 180
			t.Errorf("dropped %d of %d datagrams each way at 20 %%, want about 180", lost, n)
		}
		return seen
	}
	a, b := run(7), run(7)
	if string(a) != string(b) {
		t.Error("the same seed dropped different datagrams")
	}
	if c := run(8); string(a) == string(c) {
		t.Error("another seed dropped the same datagrams")
	}
}
