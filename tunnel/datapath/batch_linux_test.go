//go:build linux

package datapath

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestGSOGrouping checks how datagrams are grouped into UDP_SEGMENT sends:
// a run ends at a larger datagram, after a shorter one, at the segment
// limit, or at the 64 KiB payload limit.
func TestGSOGrouping(t *testing.T) {
	mk := func(sizes ...int) [][]byte {
		var p [][]byte
		for _, n := range sizes {
			p = append(p, make([]byte, n))
		}
		return p
	}
	many := func(n, size int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = size
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		gso   bool
		want  []int // datagrams per message
	}{
		{"no gso", []int{10, 10, 10}, false, []int{1, 1, 1}},
		{"equal", []int{10, 10, 10}, true, []int{3}},
		{"shorter ends", []int{10, 10, 5, 10}, true, []int{3, 1}},
		{"larger starts new", []int{10, 20, 20}, true, []int{1, 2}},
		{"segment limit", many(maxGSOSegments+1, 10), true, []int{maxGSOSegments, 1}},
		{"byte limit", many(50, 1400), true, []int{46, 4}},
	} {
		var s sender
		s.build(mk(tc.sizes...), tc.gso)
		var got []int
		for _, h := range s.hdrs[:s.msgs] {
			got = append(got, int(h.Hdr.Iovlen))
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: messages %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: messages %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}

// TestGROSegment parses the UDP_GRO control message.
func TestGROSegment(t *testing.T) {
	if groSegment(nil) != 0 || groSegment(make([]byte, 3)) != 0 {
		t.Error("segment size from an empty control buffer")
	}
	bad := make([]byte, 64)
	bad[0] = 0xff // length beyond the buffer
	if groSegment(bad) != 0 {
		t.Error("segment size from a malformed control buffer")
	}
}

// TestSendSkipsBadDatagram checks that a datagram the kernel refuses does
// not take the rest of its batch with it, and that the error is reported.
func TestSendSkipsBadDatagram(t *testing.T) {
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	rxConn, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	defer rxConn.Close()
	txConn, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	defer txConn.Close()
	pkts := [][]byte{{1}, make([]byte, 70000), {2}, {3}}
	tx := newSender(txConn, true)
	if err := tx.write(pkts, rxConn.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
		t.Error("no error for an oversized datagram")
	}
	rx := NewReceiver(rxConn, 8)
	rxConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for len(got) < 3 {
		if err := rx.Read(func(dg []byte, _ netip.AddrPort) { got = append(got, dg...) }); err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
	}
	if string(got) != "\x01\x02\x03" {
		t.Errorf("received %v, want [1 2 3]", got)
	}
}
