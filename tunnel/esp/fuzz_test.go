package esp

import (
	"bytes"
	"testing"
)

// FuzzOpen feeds arbitrary datagrams to Inbounds of several suites. Seeds:
// the real ESP packets of capture (a) plus sealed packets of each suite.
// Open must never panic, and whatever it accepts must be a subslice of the
// input that a second Open refuses as a replay.
func FuzzOpen(f *testing.F) {
	spis := captureInbounds(f, captureDirs[0])
	for _, d := range captureDatagrams(f, captureDirs[0]) {
		f.Add(d)
	}
	var ins []*Inbound
	for _, in := range spis {
		ins = append(ins, in)
	}
	for _, alg := range []Algorithm{
		{Enc: EncAESCBC, EncKeyBits: 128, Auth: AuthHMACSHA1},
		{Enc: Enc3DES, EncKeyBits: 192, Auth: AuthHMACMD5},
		{Enc: EncAESGCM16, EncKeyBits: 128},
		{Enc: EncAESGCM8, EncKeyBits: 256},
	} {
		o, in := newPair(f, alg)
		for _, n := range []int{0, 5, 40} {
			f.Add(sealCopy(f, o, bytes.Repeat([]byte{0x11}, n), 17))
		}
		ins = append(ins, in)
	}
	f.Add([]byte{})
	f.Add([]byte{0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range ins {
			pkt := append([]byte(nil), data...)
			payload, _, err := in.Open(pkt)
			if err != nil {
				continue
			}
			if len(payload) >= len(pkt) || cap(payload) > cap(pkt) {
				t.Fatal("payload not inside the packet")
			}
			if _, _, err := in.Open(append([]byte(nil), data...)); err != ErrReplay {
				t.Fatalf("accepted twice: %v", err)
			}
		}
	})
}

func FuzzClassify(f *testing.F) {
	for _, d := range captureDatagrams(f, captureDirs[2]) {
		f.Add(d)
	}
	f.Add([]byte{0xFF})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		k := Classify(data)
		spi, ok := PeekSPI(data)
		if ok != (k == KindESP) || (ok && spi < 256) {
			t.Fatalf("Classify %v, PeekSPI %#x %v", k, spi, ok)
		}
		if k == KindIKE && !bytes.Equal(data[:NonESPMarkerLen], []byte{0, 0, 0, 0}) {
			t.Fatal("IKE without marker")
		}
		if k == KindKeepalive && !bytes.Equal(data, NATKeepalive) {
			t.Fatal("keepalive")
		}
	})
}
