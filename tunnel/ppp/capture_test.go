package ppp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/capture"
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

// readCapture returns the PPP payloads of the L2TP data messages in a
// capture's decrypted-l2tp.pcap.
func readCapture(t testing.TB, dir string) []capturedFrame {
	t.Helper()
	ds, err := capture.Datagrams(filepath.Join("..", "..", "testdata", "captures", dir, "decrypted-l2tp.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddr(captureServers[dir])
	var out []capturedFrame
	for _, d := range ds {
		l2 := d.Payload
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
		out = append(out, capturedFrame{fromServer: d.Src.Addr() == server, ppp: bytes.Clone(l2[h:])})
	}
	return out
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
