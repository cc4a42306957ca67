package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var captureDirs = []string{
	"a-libreswan-server_strongswan-client",
	"b-strongswan-server_libreswan-client",
	"c-softether-server_strongswan-client",
}

// readPcap returns the link type and the frames of a classic little-endian
// microsecond pcap file (what tcpdump wrote for the captures).
func readPcap(t testing.TB, path string) (linkType uint32, frames [][]byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 24 || binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian pcap", path)
	}
	linkType = binary.LittleEndian.Uint32(data[20:])
	for p := data[24:]; len(p) > 0; {
		if len(p) < 16 {
			t.Fatalf("%s: truncated record header", path)
		}
		n := int(binary.LittleEndian.Uint32(p[8:]))
		if n != int(binary.LittleEndian.Uint32(p[12:])) || len(p) < 16+n {
			t.Fatalf("%s: truncated or snapped record", path)
		}
		frames = append(frames, p[16:16+n])
		p = p[16+n:]
	}
	return linkType, frames
}

// ipv4UDP returns the UDP header+payload of an IPv4/UDP packet.
func ipv4UDP(ip []byte) (udp []byte, ok bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 17 {
		return nil, false
	}
	ihl := int(ip[0]&0xF) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total > len(ip) || ihl+8 > total {
		return nil, false
	}
	return ip[ihl:total], true
}

type captureKeys struct {
	ESP map[string]struct {
		SPI     string `json:"spi"`
		EncAlg  string `json:"enc_alg"`
		EncKey  string `json:"enc_key"`
		AuthAlg string `json:"auth_alg"`
		AuthKey string `json:"auth_key"`
		ICVBits int    `json:"icv_bits"`
	} `json:"esp"`
}

// captureInbounds builds an Inbound for each direction of the capture's SA.
func captureInbounds(t testing.TB, dir string) map[uint32]*Inbound {
	var ck captureKeys
	loadJSON(t, filepath.Join("captures", dir, "keys.json"), &ck)
	out := map[uint32]*Inbound{}
	for name, e := range ck.ESP {
		if e.EncAlg != "cbc(aes)" || e.AuthAlg != "hmac(sha1)" || e.ICVBits != 96 {
			t.Fatalf("%s %s: unexpected suite %s/%s/%d", dir, name, e.EncAlg, e.AuthAlg, e.ICVBits)
		}
		spi, err := strconv.ParseUint(e.SPI, 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		enc := unhex(t, e.EncKey)
		in, err := NewInbound(Keys{
			SPI:     uint32(spi),
			Alg:     Algorithm{Enc: EncAESCBC, EncKeyBits: len(enc) * 8, Auth: AuthHMACSHA1},
			EncKey:  enc,
			AuthKey: unhex(t, e.AuthKey),
		})
		if err != nil {
			t.Fatal(err)
		}
		out[uint32(spi)] = in
	}
	if len(out) != 2 {
		t.Fatalf("%s: %d ESP SAs in keys.json", dir, len(out))
	}
	return out
}

// captureDatagrams returns the UDP 4500 payloads of outer.pcap, in order.
func captureDatagrams(t testing.TB, dir string) [][]byte {
	lt, frames := readPcap(t, filepath.Join(testdataDir, "captures", dir, "outer.pcap"))
	if lt != 1 {
		t.Fatalf("%s outer.pcap: link type %d, want Ethernet", dir, lt)
	}
	var out [][]byte
	for _, f := range frames {
		if len(f) < 14 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
			continue
		}
		udp, ok := ipv4UDP(f[14:])
		if !ok {
			continue
		}
		if binary.BigEndian.Uint16(udp[0:]) != 4500 && binary.BigEndian.Uint16(udp[2:]) != 4500 {
			continue
		}
		out = append(out, append([]byte(nil), udp[8:]...))
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
			lt, dec := readPcap(t, filepath.Join(testdataDir, "captures", dir, "decrypted-l2tp.pcap"))
			if lt != 101 {
				t.Fatalf("decrypted-l2tp.pcap link type %d, want 101 (raw IP)", lt)
			}
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
			for i := range got {
				want, ok := ipv4UDP(dec[i])
				if !ok {
					t.Fatalf("decrypted frame %d is not IPv4/UDP", i)
				}
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
