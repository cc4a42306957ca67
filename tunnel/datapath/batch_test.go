package datapath

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestBatchRoundTrip sends runs of equal-size datagrams (which the Linux
// sender coalesces with UDP GSO) mixed with odd sizes through loopback and
// checks that the batch receiver (UDP GRO) hands back exactly the same
// datagrams, boundaries included, in order.
func TestBatchRoundTrip(t *testing.T) {
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	rxConn, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	defer rxConn.Close()
	_ = rxConn.SetReadBuffer(4 << 20)
	txConn, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	defer txConn.Close()

	sizes := []int{1400, 1400, 1400, 1400, 900, 100, 100, 100, 1400, 60, 60}
	for range 70 { // longer than one GSO send may carry
		sizes = append(sizes, 1200)
	}
	sizes = append(sizes, 1, 65507-64, 1400, 1400)
	var want [][]byte
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*7 + j)
		}
		want = append(want, b)
	}
	tx := newSender(txConn, true)
	to := rxConn.LocalAddr().(*net.UDPAddr).AddrPort()
	from := txConn.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := tx.write(want, to); err != nil {
		t.Fatal(err)
	}

	rx := NewReceiver(rxConn, 8)
	var got [][]byte
	rxConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(want) {
		err := rx.Read(func(dg []byte, src netip.AddrPort) {
			if src != from {
				t.Errorf("datagram from %v, want %v", src, from)
			}
			got = append(got, bytes.Clone(dg))
		})
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d datagrams, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d: got %d bytes, want %d (or content differs)", i, len(got[i]), len(want[i]))
		}
	}
}
