package ike

import (
	"bytes"
	"encoding/binary"
	"testing"
	"testing/synctest"
	"time"
)

// Both sides announce fragmentation and send every message over 300 bytes
// in fragments: MM5 and MM6 (a 4096-bit certificate and signature) arrive
// in pieces and are reassembled.
func TestCertFragmented(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pki := newTestPKI(4096)
		p := newPair(t, Config{Cert: pki.clientCerts("vpn.example.test"), FragmentSize: 300},
			ResponderConfig{Cert: pki.serverCerts(), FragmentSize: 300})
		p.start(t)
		ic := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child
		checkKeysMatch(t, ic, rc)
		count := func(pp *pipe) (frags, maxLen int) {
			msgs, _ := pp.messages()
			for _, m := range msgs[1:] { // MM1 and MM2 go before the peer's VID is known
				maxLen = max(maxLen, len(m))
				if h, err := ParseHeader(m); err == nil && h.NextPayload == PayloadFragment {
					frags++
				}
			}
			return
		}
		for name, pp := range map[string]*pipe{"client": p.toResp, "server": p.toIni} {
			n, ml := count(pp)
			if n < 4 || ml > 300 {
				t.Errorf("%s sent %d fragments, largest message %d bytes", name, n, ml)
			}
		}
	})
}

// Without the peer's vendor ID nothing is fragmented.
func TestFragmentOnlyWhenAnnounced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pki := newTestPKI(0)
		p := newPair(t, Config{Cert: pki.clientCerts("vpn.example.test"), FragmentSize: 300}, ResponderConfig{Cert: pki.serverCerts()})
		p.toResp.dropFn = nil
		// The responder's MM2 without the fragmentation VID: strip it.
		p.toIni.peer = func(b []byte) {
			if m, err := Parse(b); err == nil && m.Flags&FlagEncryption == 0 && hasFragmentationVID(m.Payloads) {
				b = stripVID(t, b)
			}
			p.ini.HandlePacket(b)
		}
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		msgs, _ := p.toResp.messages()
		for _, m := range msgs {
			if h, _ := ParseHeader(m); h.NextPayload == PayloadFragment {
				t.Fatal("fragments sent to a peer that did not announce them")
			}
		}
	})
}

// stripVID re-encodes a cleartext message without its fragmentation VID.
func stripVID(t *testing.T, b []byte) []byte {
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	nb := newBuilder()
	for _, p := range m.Payloads {
		if p.Type == PayloadVendorID && bytes.HasPrefix(p.Body, vidFragmentation[:16]) {
			continue
		}
		nb.add(p.Type, p.Body)
	}
	h := m.Header
	h.NextPayload = nb.first
	h.Length = uint32(HeaderLen + len(nb.buf))
	return append(h.AppendTo(nil), nb.buf...)
}

func fragMsgs(t testing.TB, msg []byte, size int, id uint16) []*Message {
	var out []*Message
	for _, f := range fragmentMessage(msg, size, id) {
		m, err := Parse(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func bigMessage(n int) []byte {
	h := Header{ICookie: [8]byte{1}, RCookie: [8]byte{2}, NextPayload: PayloadHash, Version: isakmpVersion, Exchange: ExchangeIdentityProtection, Flags: FlagEncryption}
	body := bytes.Repeat([]byte{0xab}, n)
	h.Length = uint32(HeaderLen + n)
	return append(h.AppendTo(nil), body...)
}

func TestReassembler(t *testing.T) {
	now := time.Unix(1700000000, 0)
	msg := bigMessage(3000)
	fs := fragMsgs(t, msg, 500, 7)
	if len(fs) != 7 {
		t.Fatalf("%d fragments", len(fs))
	}
	// Out of order, with a duplicate: one message, once.
	var f reassembler
	order := []int{3, 0, 6, 1, 1, 5, 2, 4}
	var got []byte
	for i, k := range order {
		out, err := f.add(fs[k], now)
		if err != nil {
			t.Fatal(err)
		}
		if out != nil {
			if i != len(order)-1 {
				t.Fatalf("complete after %d", i)
			}
			got = out
		}
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("reassembled message differs")
	}
	if n, b := f.held(); n != 0 || b != 0 {
		t.Fatalf("%d partial messages, %d bytes held after completion", n, b)
	}
	// Partial messages: at most maxReassemblies are held; old ones expire.
	for id := uint16(0); id < 20; id++ {
		if _, err := f.add(fragMsgs(t, msg, 500, id)[0], now); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := f.held(); n != maxReassemblies {
		t.Fatalf("%d partial messages held", n)
	}
	if out, _ := f.add(fs[1], now.Add(fragTimeout)); out != nil {
		t.Fatal("completed from nothing")
	}
	if n, _ := f.held(); n != 1 {
		t.Fatalf("%d partial messages after the timeout, want 1 (the new one)", n)
	}
	// Too large in all.
	var g reassembler
	huge := fragMsgs(t, bigMessage(maxReassembled), 4000, 1)
	var err error
	for _, m := range huge {
		if _, err = g.add(m, now); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("a message over the size bound was accepted")
	}
	// Fragment number 0 and beyond maxFragments.
	for _, num := range []byte{0, maxFragments + 1} {
		m := fs[0]
		body := append([]byte(nil), First(m.Payloads, PayloadFragment).Body...)
		body[2] = num
		mm := &Message{Header: m.Header, Payloads: []Payload{{Type: PayloadFragment, Body: body}}}
		if _, err := g.add(mm, now); err == nil {
			t.Errorf("fragment number %d accepted", num)
		}
	}
	if fragmentMessage(bigMessage(100), 500, 1) != nil {
		t.Error("a small message was fragmented")
	}
}

// FuzzReassembler feeds fragments with arbitrary IDs, numbers, flags and
// data: no panic, and the bytes held stay within the bounds.
func FuzzReassembler(f *testing.F) {
	for _, m := range fragmentMessage(bigMessage(1000), 300, 3) {
		f.Add(m[HeaderLen+4:])
	}
	f.Add([]byte{0, 1, 1, 1, 'x'})
	f.Fuzz(func(t *testing.T, in []byte) {
		var r reassembler
		now := time.Unix(0, 0)
		h := Header{ICookie: [8]byte{1}, RCookie: [8]byte{2}, NextPayload: PayloadFragment}
		// Cut the input into fragment bodies of ID(2) num(1) flags(1) len(1) data.
		for len(in) >= 5 {
			n := min(int(in[4]), len(in)-5)
			body := append([]byte(nil), in[:4]...)
			body = append(body, in[5:5+n]...)
			in = in[5+n:]
			h.ICookie[0] = body[0] & 3
			out, _ := r.add(&Message{Header: h, Payloads: []Payload{{Type: PayloadFragment, Body: body}}}, now)
			if len(out) > maxReassembled {
				t.Fatalf("%d bytes reassembled", len(out))
			}
			if m, b := r.held(); m > maxReassemblies || b > maxReassemblies*maxReassembled {
				t.Fatalf("%d messages, %d bytes held", m, b)
			}
			now = now.Add(time.Duration(binary.BigEndian.Uint16(body[:2])) * time.Millisecond)
		}
	})
}
