package netstack

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// sum1071 is the Internet checksum (RFC 1071) written out independently of
// gVisor's: the one's-complement sum of 16-bit big-endian words.
func sum1071(parts ...[]byte) uint16 {
	var s uint64
	var odd []byte
	for _, p := range parts {
		if len(odd) == 1 && len(p) > 0 {
			s += uint64(odd[0])<<8 | uint64(p[0])
			p, odd = p[1:], nil
		}
		for len(p) >= 2 {
			s += uint64(p[0])<<8 | uint64(p[1])
			p = p[2:]
		}
		if len(p) == 1 {
			odd = p
		}
	}
	if len(odd) == 1 {
		s += uint64(odd[0]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

const (
	tFIN = 0x01
	tSYN = 0x02
	tRST = 0x04
	tPSH = 0x08
	tACK = 0x10
	tCWR = 0x80
)

// gsoPacket builds an IPv4/TCP packet the way gVisor hands a GSO segment to
// the link: total length covering everything, the checksum field holding
// only a partial (here: garbage) value.
func gsoPacket(payload []byte, flags byte, seq uint32, id uint16) []byte {
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+32+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], id)
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:], []byte{10, 64, 0, 1})
	copy(ip[16:], []byte{192, 0, 2, 7})
	binary.BigEndian.PutUint16(ip[10:], 0xdead)
	tcp := make([]byte, 32)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 443)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 0x01020304)
	tcp[12] = 8 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 0xffff)
	binary.BigEndian.PutUint16(tcp[16:], 0xbeef) // partial sum, must be replaced
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	return append(append(ip, tcp...), payload...)
}

// chop cuts b into slices at the given offsets (like a PacketBuffer's
// header and data views).
func chop(b []byte, at ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, a := range at {
		out = append(out, b[prev:a])
		prev = a
	}
	return append(out, b[prev:])
}

func segmentAll(t *testing.T, src [][]byte, mss, mtu int) [][]byte {
	t.Helper()
	var g tcp4Segmenter
	if err := g.init(src, mss, mtu); err != nil {
		t.Fatalf("init: %v", err)
	}
	var segs [][]byte
	for range 1000 {
		buf := make([]byte, mtu)
		n := g.next(buf)
		if n == 0 {
			return segs
		}
		segs = append(segs, buf[:n])
	}
	t.Fatal("segmenter does not end")
	return nil
}

func TestTCP4SegmenterSplits64K(t *testing.T) {
	const mtu, mss = 1400, 1348 // 1400 - 20 (IPv4) - 32 (TCP + timestamps)
	payload := make([]byte, 65535-20-32)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name  string
		flags byte
		seq   uint32
	}{
		{"psh", tACK | tPSH, 1000},
		{"fin+cwr, seq wraps", tACK | tPSH | tFIN | tCWR, 0xffff_f000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := gsoPacket(payload, tc.flags, tc.seq, 0xfff0)
			// Headers straddle slices; data in uneven views.
			segs := segmentAll(t, chop(pkt, 7, 20, 45, 52, 3000, 40001), mss, mtu)
			want := (len(payload) + mss - 1) / mss
			if len(segs) != want {
				t.Fatalf("%d segments, want %d", len(segs), want)
			}
			var got []byte
			for i, s := range segs {
				last := i == len(segs)-1
				if len(s) > mtu {
					t.Fatalf("segment %d: %d bytes > MTU %d", i, len(s), mtu)
				}
				if !last && len(s) != mtu {
					t.Errorf("segment %d: %d bytes, want full %d", i, len(s), mtu)
				}
				if tl := int(binary.BigEndian.Uint16(s[2:])); tl != len(s) {
					t.Errorf("segment %d: total length %d, want %d", i, tl, len(s))
				}
				if id := binary.BigEndian.Uint16(s[4:]); id != uint16(0xfff0+i) {
					t.Errorf("segment %d: ID %#x, want %#x", i, id, uint16(0xfff0+i))
				}
				if sum1071(s[:20]) != 0xffff {
					t.Errorf("segment %d: bad IPv4 header checksum", i)
				}
				if !bytes.Equal(s[6:10], pkt[6:10]) || !bytes.Equal(s[12:20], pkt[12:20]) {
					t.Errorf("segment %d: IPv4 fields changed", i)
				}
				tcp := s[20:]
				pseudo := make([]byte, 12)
				copy(pseudo, s[12:20])
				pseudo[9] = 6
				binary.BigEndian.PutUint16(pseudo[10:], uint16(len(tcp)))
				if sum1071(pseudo, tcp) != 0xffff {
					t.Errorf("segment %d: bad TCP checksum", i)
				}
				if seq := binary.BigEndian.Uint32(tcp[4:]); seq != tc.seq+uint32(i*mss) {
					t.Errorf("segment %d: seq %d, want %d", i, seq, tc.seq+uint32(i*mss))
				}
				wantFlags := tc.flags
				if !last {
					wantFlags &^= tPSH | tFIN
				}
				if i > 0 {
					wantFlags &^= tCWR
				}
				if tcp[13] != wantFlags {
					t.Errorf("segment %d: flags %#x, want %#x", i, tcp[13], wantFlags)
				}
				// Ports, ack, data offset, window, options unchanged.
				if !bytes.Equal(tcp[:4], pkt[20:24]) || !bytes.Equal(tcp[8:13], pkt[28:33]) ||
					!bytes.Equal(tcp[14:16], pkt[34:36]) || !bytes.Equal(tcp[18:32], pkt[38:52]) {
					t.Errorf("segment %d: TCP fields changed", i)
				}
				got = append(got, tcp[32:]...)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("concatenated payloads differ from the input")
			}
		})
	}
}

// A segment that needs no cutting (and a pure ACK) still gets its
// checksums: gVisor left only a partial sum in the TCP checksum field.
func TestTCP4SegmenterSingle(t *testing.T) {
	for _, n := range []int{0, 1, 99, 1348} {
		pkt := gsoPacket(bytes.Repeat([]byte{0xa5}, n), tACK|tPSH, 7, 9)
		segs := segmentAll(t, [][]byte{pkt}, 1348, 1400)
		if len(segs) != 1 || len(segs[0]) != len(pkt) {
			t.Fatalf("payload %d: %d segments", n, len(segs))
		}
		s := segs[0]
		pseudo := append(append([]byte{}, s[12:20]...), 0, 6, byte((len(s)-20)>>8), byte(len(s)-20))
		if sum1071(s[:20]) != 0xffff || sum1071(pseudo, s[20:]) != 0xffff {
			t.Errorf("payload %d: bad checksum", n)
		}
		if s[33] != tACK|tPSH {
			t.Errorf("payload %d: flags %#x", n, s[33])
		}
	}
}

// The MTU caps the segment size even when the MSS would allow more.
func TestTCP4SegmenterMTUCapsMSS(t *testing.T) {
	pkt := gsoPacket(make([]byte, 5000), tACK, 0, 0)
	segs := segmentAll(t, [][]byte{pkt}, 1460, 600)
	if len(segs) != (5000+547)/548 {
		t.Fatalf("%d segments, want %d", len(segs), (5000+547)/548)
	}
	for i, s := range segs {
		if len(s) > 600 {
			t.Fatalf("segment %d: %d bytes > 600", i, len(s))
		}
	}
}

func TestTCP4SegmenterRejectsMalformed(t *testing.T) {
	good := gsoPacket(make([]byte, 3000), tACK, 0, 0)
	udp := append([]byte{}, good...)
	udp[9] = 17
	short := append([]byte{}, good...)
	binary.BigEndian.PutUint16(short[2:], 4000)
	badOff := append([]byte{}, good...)
	badOff[32] = 4 << 4
	frag := append([]byte{}, good...)
	frag[6] = 0x20
	for name, pkt := range map[string][]byte{
		"empty": nil, "ip only": good[:20], "tcp cut": good[:40], "udp": udp,
		"total length": short, "data offset": badOff, "fragment": frag,
	} {
		var g tcp4Segmenter
		if err := g.init([][]byte{pkt}, 1348, 1400); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var g tcp4Segmenter
	if err := g.init([][]byte{good}, 1348, 40); err == nil {
		t.Error("MTU below header length: accepted")
	}
}
