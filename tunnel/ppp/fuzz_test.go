package ppp

import (
	"bytes"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/crypto/mschap"
)

func addCaptureSeeds(f *testing.F, info bool) {
	for _, frames := range allCaptures(f) {
		for _, fr := range frames {
			if !info {
				f.Add(fr.ppp)
				continue
			}
			if p, in, err := DecodeFrame(fr.ppp); err == nil && p >= 0x8000 {
				f.Add(in)
			}
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	addCaptureSeeds(f, false)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, info, err := DecodeFrame(b)
		if err != nil {
			return
		}
		if len(info) >= len(b) || p == 0 {
			t.Fatalf("info %d of %d, proto %#x", len(info), len(b), p)
		}
	})
}

// FuzzControlPacket covers the LCP/IPCP option, CHAP and PAP parsers.
func FuzzControlPacket(f *testing.F) {
	addCaptureSeeds(f, true)
	f.Add([]byte{1, 1, 0, 12, 1, 4, 5, 0, 3, 4, 0xc0, 0x23})
	f.Add([]byte{1, 1, 0, 20, 7, 'v', 'p', 'n', 'u', 's', 'e', 'r', 7, 'v', 'p', 'n', 'p', 'a', 's', 's'})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePacket(b)
		if err != nil {
			return
		}
		if err := checkOptions(p.data); err == nil {
			n := 0
			for rest := p.data; len(rest) > 0; n++ {
				_, val, raw, r, err := nextOption(rest)
				if err != nil || len(raw) != len(val)+2 || len(r) >= len(rest) {
					t.Fatalf("option iteration broke: %v", err)
				}
				rest = r
				parseAuthOption(val)
			}
		}
		if v, err := parseCHAPValue(p.data); err == nil {
			mschap.ParseResponseValue(v.value)
			mschap.ParseSuccess(v.name)
		}
		parsePAPRequest(p.data)
		parsePAPReply(p.data)
		mschap.ParseFailure(p.data)
	})
}

// splitFrames cuts fuzz input into frames with a 1-byte length prefix.
func splitFrames(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := int(b[0])
		b = b[1:]
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func joinFrames(frames [][]byte) []byte {
	var out []byte
	for _, f := range frames {
		if len(f) > 255 {
			continue
		}
		out = append(out, byte(len(f)))
		out = append(out, f...)
	}
	return out
}

// FuzzClientInput drives the client state machine with arbitrary frames in
// every phase; it must never panic.
func FuzzClientInput(f *testing.F) {
	for _, frames := range allCaptures(f) {
		var srv [][]byte
		for _, fr := range frames {
			if fr.fromServer {
				srv = append(srv, fr.ppp)
			}
		}
		f.Add(uint8(0), joinFrames(srv))
		f.Add(uint8(2), joinFrames(srv))
	}
	f.Fuzz(func(t *testing.T, mode uint8, b []byte) {
		cfg := Config{User: "DOM\\vpnuser", Password: []byte("vpnpass"), Clock: newFake(), Rand: newSeeded(mode)}
		c := NewClient(cfg, func([]byte) error { return nil })
		c.lcp.open()
		switch mode % 5 {
		case 1, 2, 3, 4:
			c.lcp.state = stOpened
			c.authMethod = []AuthMethod{AuthPAP, AuthCHAPMD5, AuthMSCHAPv2, AuthEAP}[mode%5-1]
			c.lcpUp()
		}
		for _, fr := range splitFrames(b) {
			if err := c.input(fr); err != nil {
				return
			}
			c.timeouts(c.clk.Now().Add(c.restart))
		}
		s := NewServer(ServerConfig{Auth: AuthMSCHAPv2, Users: map[string][]byte{"vpnuser": []byte("x")},
			Local: testLocal, Peer: testPeer, DNS: testDNS, Clock: newFake(), Rand: newSeeded(mode)}, func([]byte) error { return nil })
		s.lcp.open()
		if mode&4 != 0 {
			s.lcp.state = stOpened
			s.lcpUp()
		}
		for _, fr := range splitFrames(b) {
			if err := s.input(fr); err != nil {
				return
			}
		}
	})
}

// FuzzEAP covers the EAP parsers (RFC 3748 §4, EAP-MSCHAPv2) and drives the
// client's EAP conversation with arbitrary Requests, Successes and Failures:
// it must never panic, and every Response it sends must parse.
func FuzzEAP(f *testing.F) {
	f.Add([]byte{5, 1, 1, 0, 5, 1, 22, 1, 2, 0, 22, 4, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 4, 3, 2, 0, 4})
	f.Add(joinFrames([][]byte{
		{1, 1, 0, 5, 1},
		append([]byte{1, 2, 0, 30, 26, 1, 9, 0, 25, 16}, make([]byte, 20)...),
		append([]byte{1, 3, 0, 55, 26, 3, 9, 0, 50}, "S=407A5589115FD0D6209F510FE9C04566932CDA56 M=hello"[:46]...),
		{3, 3, 0, 4},
	}))
	f.Add(joinFrames([][]byte{{1, 1, 0, 6, 13, 0x20}, {4, 1, 0, 4}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sent [][]byte
		c := NewClient(Config{User: "DOM\\vpnuser", Password: []byte("vpnpass"), Clock: newFake(), Rand: newSeeded(1)},
			func(fr []byte) error { sent = append(sent, bytes.Clone(fr)); return nil })
		c.lcp.state = stOpened
		c.authMethod = AuthEAP
		c.lcpUp()
		for _, fr := range splitFrames(b) {
			if p, err := parsePacket(fr); err == nil {
				if typ, td, err := parseEAPTyped(p.data); err == nil && typ == eapTypeMSCHAPv2 {
					if ms, err := parseEAPMSCHAPv2(td); err == nil && len(ms.data) > len(td) {
						t.Fatalf("MS-CHAPv2 data %d of %d", len(ms.data), len(td))
					}
				}
			}
			err := c.input(append([]byte{0xc2, 0x27}, fr...))
			for _, out := range sent {
				proto, info, derr := DecodeFrame(out)
				if derr != nil {
					t.Fatalf("sent a bad frame %x", out)
				}
				if proto != protoEAP {
					continue
				}
				p, perr := parsePacket(info)
				if perr != nil || p.code != eapResponse {
					t.Fatalf("sent a bad EAP packet %x", info)
				}
				if _, _, perr := parseEAPTyped(p.data); perr != nil {
					t.Fatalf("sent an EAP Response without Type %x", info)
				}
			}
			sent = sent[:0]
			if err != nil {
				return
			}
		}
	})
}
