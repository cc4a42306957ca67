package ppp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// capturedFrame is one PPP frame from a decrypted-l2tp.pcap.
type capturedFrame struct {
	fromServer bool
	ppp        []byte // as on the wire, with or without FF 03
}

var captureServers = map[string]string{
	"a-libreswan-server_strongswan-client": "10.0.2.15",
	"b-strongswan-server_libreswan-client": "10.0.2.15",
	"c-softether-server_strongswan-client": "10.231.0.2",
}

// readCapture reads a little-endian pcap with linktype 101 (raw IPv4) and
// returns the PPP payloads of the L2TP data messages.
func readCapture(t testing.TB, dir string) []capturedFrame {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "captures", dir, "decrypted-l2tp.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 101 {
		t.Fatalf("%s: not a LE pcap with linktype 101", dir)
	}
	server := captureServers[dir]
	var out []capturedFrame
	for off := 24; off+16 <= len(b); {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		pkt := b[off+16 : off+16+incl]
		off += 16 + incl
		ihl := int(pkt[0]&15) * 4
		if pkt[9] != 17 {
			continue
		}
		src := pkt[12:16]
		l2 := pkt[ihl+8:]
		flags := binary.BigEndian.Uint16(l2)
		if flags&0x8000 != 0 || flags&0x000f != 2 { // control message or not L2TPv2
			continue
		}
		h := 2
		if flags&0x4000 != 0 {
			h += 2
		}
		h += 4
		if flags&0x0800 != 0 {
			h += 4
		}
		if flags&0x0200 != 0 {
			h += 2 + int(binary.BigEndian.Uint16(l2[h:]))
		}
		fs := bytes.Equal(src, ipv4Bytes(server))
		out = append(out, capturedFrame{fromServer: fs, ppp: bytes.Clone(l2[h:])})
	}
	return out
}

func ipv4Bytes(s string) []byte {
	var a [4]byte
	var i, n int
	for _, c := range s + "." {
		if c == '.' {
			a[i] = byte(n)
			i, n = i+1, 0
			continue
		}
		n = n*10 + int(c-'0')
	}
	return a[:]
}

func allCaptures(t testing.TB) map[string][]capturedFrame {
	m := map[string][]capturedFrame{}
	for dir := range captureServers {
		m[dir] = readCapture(t, dir)
	}
	return m
}

// TestCapturedFramesParse checks that every PPP frame the real
// implementations sent decodes, and every control packet parses.
func TestCapturedFramesParse(t *testing.T) {
	for dir, frames := range allCaptures(t) {
		if len(frames) < 20 {
			t.Fatalf("%s: only %d PPP frames", dir, len(frames))
		}
		counts := map[uint16]int{}
		for i, fr := range frames {
			proto, info, err := DecodeFrame(fr.ppp)
			if err != nil {
				t.Errorf("%s #%d: %v (%x)", dir, i, err, fr.ppp)
				continue
			}
			counts[proto]++
			switch proto {
			case protoLCP, protoIPCP, protoIPV6CP, protoCHAP, protoPAP:
			default:
				continue
			}
			p, err := parsePacket(info)
			if err != nil {
				t.Errorf("%s #%d: %v", dir, i, err)
				continue
			}
			switch {
			case (proto == protoLCP || proto == protoIPCP || proto == protoIPV6CP) && p.code >= codeConfReq && p.code <= codeConfRej:
				if err := checkOptions(p.data); err != nil {
					t.Errorf("%s #%d: options: %v", dir, i, err)
				}
			case proto == protoCHAP && (p.code == 1 || p.code == 2):
				v, err := parseCHAPValue(p.data)
				if err != nil {
					t.Errorf("%s #%d: CHAP: %v", dir, i, err)
				} else if p.code == 2 && (len(v.value) != 49 || string(v.name) != "vpnuser") {
					t.Errorf("%s #%d: MS-CHAPv2 response value %d bytes, name %q", dir, i, len(v.value), v.name)
				}
			}
		}
		if counts[protoLCP] == 0 || counts[protoCHAP] < 3 || counts[protoIPCP] == 0 {
			t.Errorf("%s: unexpected protocol counts %v", dir, counts)
		}
	}
}

// firstFrame returns the first captured frame from the given side whose
// decoded protocol and packet start as given.
func firstFrame(t *testing.T, dir string, fromServer bool, proto uint16, code byte) []byte {
	t.Helper()
	for _, fr := range readCapture(t, dir) {
		p, info, err := DecodeFrame(fr.ppp)
		if err == nil && fr.fromServer == fromServer && p == proto && len(info) > 0 && info[0] == code {
			return fr.ppp
		}
	}
	t.Fatalf("%s: no frame proto %#x code %d", dir, proto, code)
	return nil
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
