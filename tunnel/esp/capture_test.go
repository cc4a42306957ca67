package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/capture"
)

var captureDirs = []string{
	"a-libreswan-server_strongswan-client",
	"b-strongswan-server_libreswan-client",
	"c-softether-server_strongswan-client",
}

// captureInbounds builds an Inbound for each direction of the capture's SA.
func captureInbounds(t testing.TB, dir string) map[uint32]*Inbound {
	t.Helper()
	ck, err := capture.LoadKeys(filepath.Join(testdataDir, "captures", dir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]*Inbound{}
	for name, e := range ck.ESP {
		if e.EncAlg != "cbc(aes)" || e.AuthAlg != "hmac(sha1)" || e.ICVBits != 96 {
			t.Fatalf("%s %s: unexpected suite %s/%s/%d", dir, name, e.EncAlg, e.AuthAlg, e.ICVBits)
		}
		in, err := NewInbound(Keys{
			SPI:     e.SPI,
			Alg:     Algorithm{Enc: EncAESCBC, EncKeyBits: len(e.EncKey) * 8, Auth: AuthHMACSHA1},
			EncKey:  e.EncKey,
			AuthKey: e.AuthKey,
		})
		if err != nil {
			t.Fatal(err)
		}
		out[e.SPI] = in
	}
	if len(out) != 2 {
		t.Fatalf("%s: %d ESP SAs in keys.json", dir, len(out))
	}
	return out
}

// captureFile returns the UDP datagrams of one of the capture's pcap files.
func captureFile(t testing.TB, dir, file string) []capture.Datagram {
	t.Helper()
	ds, err := capture.Datagrams(filepath.Join(testdataDir, "captures", dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// captureDatagrams returns the UDP 4500 payloads of outer.pcap, in order
// (fresh copies: Open decrypts in place).
func captureDatagrams(t testing.TB, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range captureFile(t, dir, "outer.pcap") {
		if d.Src.Port() != 4500 && d.Dst.Port() != 4500 {
			continue
		}
		out = append(out, append([]byte(nil), d.Payload...))
	}
	return out
}

// Every ESP packet real implementations (strongSwan/Libreswan kernels,
// SoftEther) sent in the three sessions opens with Inbound, and the
// plaintext equals what verify.py independently decrypted.
func TestCaptures(t *testing.T) {
	for _, dir := range captureDirs {
		t.Run(dir, func(t *testing.T) {
			ins := captureInbounds(t, dir)
			dec := captureFile(t, dir, "decrypted-l2tp.pcap")
			counts := map[Kind]int{}
			perSA := map[uint32]int{}
			var got [][]byte
			for _, d := range captureDatagrams(t, dir) {
				k := Classify(d)
				counts[k]++
				if k != KindESP {
					continue
				}
				spi, _ := PeekSPI(d)
				in := ins[spi]
				if in == nil {
					t.Fatalf("ESP with unknown SPI %#x", spi)
				}
				payload, nh, err := in.Open(d)
				if err != nil {
					t.Fatalf("packet %d of SA %#x: %v", perSA[spi]+1, spi, err)
				}
				if nh != 17 {
					t.Fatalf("next header %d, want 17 (UDP)", nh)
				}
				if len(payload) < 8 || binary.BigEndian.Uint16(payload) != 1701 || binary.BigEndian.Uint16(payload[2:]) != 1701 {
					t.Fatalf("payload is not UDP 1701->1701: %x", payload[:min(8, len(payload))])
				}
				if int(binary.BigEndian.Uint16(payload[4:])) != len(payload) {
					t.Fatalf("inner UDP length %d, payload %d", binary.BigEndian.Uint16(payload[4:]), len(payload))
				}
				perSA[spi]++
				got = append(got, payload)
			}
			if counts[KindIKE] == 0 || counts[KindInvalid] != 0 {
				t.Errorf("datagram kinds %v", counts)
			}
			if len(got) != len(dec) {
				t.Fatalf("%d ESP packets opened, decrypted-l2tp.pcap has %d", len(got), len(dec))
			}
			for i, d := range dec {
				// The inner UDP header and payload as verify.py wrote them.
				want := binary.BigEndian.AppendUint16(nil, d.Src.Port())
				want = binary.BigEndian.AppendUint16(want, d.Dst.Port())
				want = binary.BigEndian.AppendUint16(want, uint16(8+len(d.Payload)))
				want = binary.BigEndian.AppendUint16(want, d.Checksum)
				want = append(want, d.Payload...)
				if !bytes.Equal(got[i], want) {
					t.Fatalf("packet %d:\n got %x\nwant %x", i, got[i], want)
				}
			}
			// Replaying the whole capture is refused packet by packet.
			replays := 0
			for _, d := range captureDatagrams(t, dir) {
				if Classify(d) == KindESP {
					spi, _ := PeekSPI(d)
					if _, _, err := ins[spi].Open(d); err != ErrReplay {
						t.Fatalf("replayed capture packet: %v", err)
					}
					replays++
				}
			}
			t.Logf("%d ESP packets (%v per SA), %d IKE, %d keepalives; %d replays refused",
				len(got), fmt.Sprintf("%x", perSA), counts[KindIKE], counts[KindKeepalive], replays)
		})
	}
}
