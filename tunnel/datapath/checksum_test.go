package datapath

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// naiveUDPChecksum is RFC 768/1071 written out word by word, as the
// reference for the 32-bit-word implementation.
func naiveUDPChecksum(src, dst [4]byte, u []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	sum += protoUDP + uint32(len(u))
	add(u)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	if cs == 0 {
		cs = 0xffff
	}
	return cs
}

func TestUDPChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src, dst := [4]byte{127, 0, 0, 1}, [4]byte{10, 231, 0, 2}
	for n := 8; n < 1600; n += 1 + n/16 {
		u := make([]byte, n)
		for i := range u {
			u[i] = byte(r.Uint32())
		}
		u[6], u[7] = 0, 0
		if got, want := udpChecksum(src, dst, u), naiveUDPChecksum(src, dst, u); got != want {
			t.Fatalf("len %d: %#04x, want %#04x", n, got, want)
		}
		// Summed with its checksum in place, a correct packet gives all ones,
		// whose complement 0 the helper maps to 0xffff.
		binary.BigEndian.PutUint16(u[6:], udpChecksum(src, dst, u))
		if v := naiveUDPChecksum(src, dst, u); v != 0xffff {
			t.Fatalf("len %d: verification gives %#04x", n, v)
		}
	}
	// Pseudo-header 0x0019 (protocol 17 + length 8) plus 0xffe6 sums to
	// 0xffff: the computed checksum is zero and must go out as 0xffff.
	if got := udpChecksum([4]byte{}, [4]byte{}, []byte{0xff, 0xe6, 0, 0, 0, 0, 0, 0}); got != 0xffff {
		t.Fatalf("zero checksum sent as %#04x, want 0xffff", got)
	}
}
