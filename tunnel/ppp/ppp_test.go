package ppp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

func TestDecodeFrame(t *testing.T) {
	for _, tc := range []struct {
		in    string
		proto uint16
		info  string
		ok    bool
	}{
		{"ff03c021010100", 0xc021, "010100", true},
		{"c0210900000857b885f6", 0xc021, "0900000857b885f6", true},
		{"2145", 0x0021, "45", true},     // PFC
		{"ff032145", 0x0021, "45", true}, // PFC with address/control
		{"00214500", 0x0021, "4500", true},
		{"ff03", 0, "", false},
		{"", 0, "", false},
		{"c0", 0, "", false},
		{"c022", 0, "", false}, // even low octet
	} {
		p, info, err := DecodeFrame(mustHex(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.in, err)
			continue
		}
		if tc.ok && (p != tc.proto || !bytes.Equal(info, mustHex(tc.info))) {
			t.Errorf("%s: got %#x %x", tc.in, p, info)
		}
		if !tc.ok && !errIs(err, ErrMalformed) {
			t.Errorf("%s: want ErrMalformed, got %v", tc.in, err)
		}
	}
	frame := mustHex("ff0300214500")
	if n := testing.AllocsPerRun(100, func() { DecodeFrame(frame) }); n != 0 && !raceEnabled {
		t.Errorf("DecodeFrame allocates %v times", n)
	}
}

func TestEachAuthMethod(t *testing.T) {
	for _, m := range []AuthMethod{AuthPAP, AuthCHAPMD5, AuthMSCHAPv2} {
		t.Run(m.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cc, sc := baseConfigs(clock.Real)
				cc.Auth = policyBit(m)
				sc.Auth = m
				w := &wire{addFF03: true}
				ss := start(t, cc, sc, w)
				up := ss.waitUp(0)
				if up.Local != testPeer || up.Peer != testLocal || !slices.Equal(up.DNS, testDNS) || up.PeerMRU != 1280 {
					t.Errorf("IPUp = %+v", up)
				}
				a, _ := ss.event(false, func(e Event) bool { _, ok := e.(AuthUp); return ok }).(AuthUp)
				if a.Method != m {
					t.Errorf("client AuthUp %+v", a)
				}
				sa, _ := ss.event(true, func(e Event) bool { _, ok := e.(AuthUp); return ok }).(AuthUp)
				if sa.Method != m || sa.User != "vpnuser" {
					t.Errorf("server AuthUp %+v", sa)
				}
				if ss.event(false, func(e Event) bool { _, ok := e.(LinkUp); return ok }) == nil {
					t.Error("no LinkUp")
				}
				// The client sent no Auth-Protocol and only MRU (+Magic) in LCP.
				for _, p := range w.frames(0, protoLCP) {
					if p.code != codeConfReq {
						continue
					}
					var types []byte
					for rest := p.data; len(rest) > 0; {
						typ, _, _, r, err := nextOption(rest)
						if err != nil {
							t.Fatal(err)
						}
						types, rest = append(types, typ), r
					}
					if !bytes.Equal(types, []byte{lcpOptMRU, lcpOptMagic}) {
						t.Errorf("unexpected LCP request %x", p.data)
					}
				}
			})
		})
	}
}

// authNaks returns the Auth-Protocol values the client put in LCP Naks.
func authNaks(w *wire) [][]byte {
	var out [][]byte
	for _, p := range w.frames(0, protoLCP) {
		if p.code != codeConfNak {
			continue
		}
		for rest := p.data; len(rest) > 0; {
			typ, val, _, r, err := nextOption(rest)
			if err != nil {
				break
			}
			rest = r
			if typ == lcpOptAuth {
				out = append(out, val)
			}
		}
	}
	return out
}

// hwdsl2's xl2tpd "require chap" makes pppd offer CHAP-MD5 first, though it
// also accepts MS-CHAPv2: the default policy accepts CHAP-MD5 as offered; a
// policy without it Naks toward MS-CHAPv2 and the server follows.
func TestServerOffersCHAPMD5(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		sc.Auth = AuthCHAPMD5
		w := &wire{}
		ss := start(t, cc, sc, w)
		ss.waitUp(0)
		if naks := authNaks(w); len(naks) != 0 {
			t.Errorf("client Naks %x, want none", naks)
		}
		if a := ss.event(true, func(e Event) bool { _, ok := e.(AuthUp); return ok }).(AuthUp); a.Method != AuthCHAPMD5 {
			t.Errorf("method %v", a.Method)
		}
	})
}

func TestServerOffersCHAPMD5ClientNaksMSCHAPv2(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		cc.Auth = AllowMSCHAPv2 | AllowEAP
		sc.Auth = AuthCHAPMD5
		w := &wire{}
		ss := start(t, cc, sc, w)
		ss.waitUp(0)
		naks := authNaks(w)
		if len(naks) != 1 || !bytes.Equal(naks[0], mustHex("c22381")) {
			t.Errorf("client Naks %x, want one c22381", naks)
		}
		if a := ss.event(true, func(e Event) bool { _, ok := e.(AuthUp); return ok }).(AuthUp); a.Method != AuthMSCHAPv2 {
			t.Errorf("method %v", a.Method)
		}
	})
}

func TestServerInsistsOnCHAPMD5(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		sc.Auth = AuthCHAPMD5
		sc.Accept = []AuthMethod{AuthCHAPMD5} // cannot do MS-CHAPv2: re-offers MD5, client accepts
		ss := start(t, cc, sc, &wire{})
		ss.waitUp(0)
		if a := ss.event(false, func(e Event) bool { _, ok := e.(AuthUp); return ok }).(AuthUp); a.Method != AuthCHAPMD5 {
			t.Errorf("method %v", a.Method)
		}
	})
}

func TestEAPFirstSoftEtherStyle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client AuthPolicy
		want   AuthMethod
		naks   []string
	}{
		// Default: EAP accepted; SoftEther 5.01 asks for EAP-TLS, we EAP-Nak,
		// it renegotiates LCP with MS-CHAPv2: no LCP Nak at all.
		{"default", 0, AuthMSCHAPv2, nil},
		{"no-eap", AllowMSCHAPv2 | AllowCHAP, AuthMSCHAPv2, []string{"c22381"}},
		{"pap-only", AllowPAP, AuthPAP, []string{"c023"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cc, sc := baseConfigs(clock.Real)
				cc.Auth = tc.client
				sc.EAPFirst = true
				sc.Accept = []AuthMethod{AuthMSCHAPv2, AuthPAP} // SoftEther: no CHAP-MD5
				w := &wire{}
				ss := start(t, cc, sc, w)
				ss.waitUp(0)
				var got []string
				for _, n := range authNaks(w) {
					got = append(got, strings.ToLower(strings.TrimSpace(string(hexs(n)))))
				}
				if !slices.Equal(got, tc.naks) {
					t.Errorf("naks %v, want %v", got, tc.naks)
				}
				if a := ss.event(false, func(e Event) bool { _, ok := e.(AuthUp); return ok }).(AuthUp); a.Method != tc.want {
					t.Errorf("method %v", a.Method)
				}
			})
		})
	}
}

func hexs(b []byte) string { return strings.ToLower(strings.TrimSpace(fmtHex(b))) }
func fmtHex(b []byte) string {
	const d = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(d[c>>4])
		sb.WriteByte(d[c&15])
	}
	return sb.String()
}

func TestNoAcceptableAuthMethod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		cc.Auth = AllowCHAP
		sc.EAPFirst = true
		sc.Accept = []AuthMethod{AuthMSCHAPv2, AuthPAP}
		ss := start(t, cc, sc, &wire{})
		err := waitErr(t, 0, ss.cErr)
		if !errIs(err, ErrAuthRejected) {
			t.Fatalf("client: %v", err)
		}
	})
}

func TestWrongPassword(t *testing.T) {
	for _, m := range []AuthMethod{AuthPAP, AuthCHAPMD5, AuthMSCHAPv2, AuthEAPMD5, AuthEAPMSCHAPv2} {
		t.Run(m.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cc, sc := baseConfigs(clock.Real)
				cc.Auth = policyBit(m)
				cc.Password = []byte("Secret-Wrong-Pw")
				sc.Auth = m
				ss := start(t, cc, sc, &wire{})
				err := waitErr(t, 0, ss.cErr)
				if !errIs(err, ErrAuthFailed) {
					t.Fatalf("client: %v", err)
				}
				if strings.Contains(err.Error(), "Secret-Wrong-Pw") {
					t.Errorf("password leaked into error: %v", err)
				}
				if (m == AuthMSCHAPv2 || m == AuthEAPMSCHAPv2) && (!strings.Contains(err.Error(), "E=691 R=0") || !strings.Contains(err.Error(), "M=Authentication failed")) {
					t.Errorf("error lacks server message: %v", err)
				}
				if !errIs(waitErr(t, 0, ss.sErr), ErrAuthFailed) {
					t.Error("server did not fail authentication")
				}
				if ss.clientIPUp() != nil {
					t.Error("IPUp after failure")
				}
			})
		})
	}
}

func TestServerWithBadAuthenticator(t *testing.T) {
	for _, m := range []AuthMethod{AuthMSCHAPv2, AuthEAPMSCHAPv2} {
		t.Run(m.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cc, sc := baseConfigs(clock.Real)
				sc.Auth = m
				sc.badAuthenticator = true
				ss := start(t, cc, sc, &wire{})
				err := waitErr(t, 0, ss.cErr)
				if !errIs(err, ErrAuthFailed) || !strings.Contains(err.Error(), "failed to prove") {
					t.Fatalf("client: %v", err)
				}
				if ss.event(false, func(e Event) bool { _, ok := e.(AuthUp); return ok }) != nil {
					t.Error("AuthUp despite bad S=")
				}
			})
		})
	}
}

func TestVJRejectedAndDNS2Dropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		sc.AskVJ = true
		sc.RejectDNS2 = true
		w := &wire{}
		ss := start(t, cc, sc, w)
		up := ss.waitUp(0)
		if !ss.s.VJRejected() {
			t.Error("client did not reject VJ")
		}
		if !slices.Equal(up.DNS, testDNS[:1]) {
			t.Errorf("DNS %v", up.DNS)
		}
		var rejects [][]byte
		for _, p := range w.frames(0, protoIPCP) {
			if p.code == codeConfRej {
				rejects = append(rejects, p.data)
			}
		}
		if len(rejects) != 1 || !bytes.Equal(rejects[0], mustHex("0206002d0f01")) {
			t.Errorf("client IPCP rejects %x", rejects)
		}
		reqs := w.frames(0, protoIPCP)
		var last []byte
		for _, p := range reqs {
			if p.code == codeConfReq {
				last = p.data
			}
		}
		if !bytes.Equal(last, mustHex("0306c0a82a0a8106c0a82a01")) {
			t.Errorf("last IPCP request %x", last)
		}
	})
}

func TestTerminateByClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		ss := start(t, cc, sc, &wire{})
		ss.waitUp(0)
		ss.cancelC()
		if err := waitErr(t, 0, ss.cErr); err != nil {
			t.Errorf("client: %v", err)
		}
		if err := waitErr(t, 0, ss.sErr); !errIs(err, ErrTerminated) {
			t.Errorf("server: %v", err)
		}
	})
}

func TestTerminateByServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		ss := start(t, cc, sc, &wire{})
		ss.waitUp(0)
		ss.cancelS()
		if err := waitErr(t, 0, ss.cErr); !errIs(err, ErrTerminated) {
			t.Errorf("client: %v", err)
		}
		if err := waitErr(t, 0, ss.sErr); err != nil {
			t.Errorf("server: %v", err)
		}
	})
}

func TestTerminateWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		w := &wire{}
		ss := start(t, cc, sc, w)
		ss.waitUp(0)
		w.mu.Lock()
		w.drop = func(int, []byte) bool { return true } // server unreachable now
		w.mu.Unlock()
		ss.cancelC()
		before := time.Now()
		if err := waitErr(t, time.Minute, ss.cErr); err != nil {
			t.Errorf("client: %v", err)
		}
		if d := time.Since(before); d > 3*time.Second {
			t.Errorf("terminate took %v of fake time", d)
		}
		var terms int
		for _, p := range w.frames(0, protoLCP) {
			if p.code == codeTermReq {
				terms++
			}
		}
		if terms != DefaultMaxTerminate {
			t.Errorf("%d Terminate-Requests, want %d", terms, DefaultMaxTerminate)
		}
	})
}

func TestLostFramesRetransmitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		w := &wire{}
		lost := map[string]int{}
		w.drop = func(dir int, f []byte) bool {
			p, info, _ := DecodeFrame(f)
			key := string(rune('0'+dir)) + fmtHex([]byte{byte(p >> 8), byte(p), info[0]})
			// Lose the first two client LCP requests, the first server CHAP
			// Challenge, the first client CHAP Response and the first server IPCP Nak.
			limit := map[string]int{"0c02101": 2, "1c22301": 1, "0c22302": 1, "1802103": 1}[key]
			if lost[key] < limit {
				lost[key]++
				return true
			}
			return false
		}
		ss := start(t, cc, sc, w)
		ss.waitUp(500 * time.Millisecond)
		// The retransmitted Challenge got an identical Response.
		var resp [][]byte
		for _, p := range w.frames(0, protoCHAP) {
			if p.code == 2 {
				resp = append(resp, p.data)
			}
		}
		if len(resp) != 2 || !bytes.Equal(resp[0], resp[1]) {
			t.Errorf("responses %x", resp)
		}
		if lost["0c02101"] != 2 || lost["1802103"] != 1 {
			t.Errorf("losses %v", lost)
		}
	})
}

func TestNoAnswerTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, _ := baseConfigs(clock.Real)
		var sent int
		c := NewClient(cc, func([]byte) error { sent++; return nil })
		errc := make(chan error, 1)
		var done sync.WaitGroup
		done.Go(func() { errc <- c.Run(t.Context()) })
		t.Cleanup(done.Wait) // Run ends before the bubble, even if the test fails early
		err := waitErr(t, time.Minute, errc)
		if !errIs(err, ErrTimeout) {
			t.Fatalf("got %v", err)
		}
		if sent != DefaultMaxConfigure {
			t.Errorf("sent %d requests, want %d", sent, DefaultMaxConfigure)
		}
	})
}

// clientAlone runs a Client whose output is collected for direct checks.
type clientAlone struct {
	c    *Client
	out  chan []byte
	errc chan error
}

func newClientAlone(t *testing.T, cfg Config) *clientAlone {
	ca := &clientAlone{out: make(chan []byte, 64), errc: make(chan error, 1)}
	ca.c = NewClient(cfg, func(b []byte) error { ca.out <- bytes.Clone(b); return nil })
	go func() { ca.errc <- ca.c.Run(t.Context()) }()
	return ca
}

// next returns the next frame the client sent with proto, skipping others.
func (ca *clientAlone) next(t *testing.T, proto uint16) packet {
	t.Helper()
	for {
		select {
		case b := <-ca.out:
			p, info, err := DecodeFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if p != proto {
				continue
			}
			pk, err := parsePacket(info)
			if err != nil {
				t.Fatal(err)
			}
			return pk
		case err := <-ca.errc:
			t.Fatalf("client ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no frame")
		}
	}
}

func TestEchoAnsweredBeforeAndAfterOpen(t *testing.T) {
	clk := newFake()
	cc, _ := baseConfigs(clk)
	ca := newClientAlone(t, cc)
	req := ca.next(t, protoLCP)
	if req.code != codeConfReq || !bytes.HasPrefix(req.data, mustHex("01040578")) || len(req.data) != 10 {
		t.Fatalf("first LCP request %x", req.data)
	}
	magic := req.data[6:10]
	// SoftEther's Echo-Request, sent before LCP is open (capture c).
	ca.c.HandleFrame(firstFrame(t, "c-softether-server_strongswan-client", true, protoLCP, codeEchoReq))
	rep := ca.next(t, protoLCP)
	if rep.code != codeEchoReply || rep.id != 0 || !bytes.Equal(rep.data, mustHex("0000000041686f2042616b61204d616e756b6500")) {
		t.Fatalf("echo reply %d %x", rep.code, rep.data)
	}
	// Open LCP: Ack our request, send a pppd-like request (capture a).
	ack := appendPacket(nil, protoLCP, codeConfAck, req.id, req.data)
	ca.c.HandleFrame(ack)
	srvReq := firstFrame(t, "a-libreswan-server_strongswan-client", true, protoLCP, codeConfReq)
	ca.c.HandleFrame(bytes.Clone(srvReq))
	got := ca.next(t, protoLCP)
	_, info, _ := DecodeFrame(srvReq)
	if got.code != codeConfAck || !bytes.Equal(got.data, info[4:]) || got.id != info[1] {
		t.Fatalf("pppd request not acked byte for byte: %d %x", got.code, got.data)
	}
	// Echo after open carries our magic; pppd echo from capture a.
	ca.c.HandleFrame(mustHex("c0210900000857b885f6"))
	rep = ca.next(t, protoLCP)
	if rep.code != codeEchoReply || !bytes.Equal(rep.data, magic) {
		t.Fatalf("echo reply after open %x, want magic %x", rep.data, magic)
	}
	// Discard-Request and Identification are ignored; unknown code is Code-Rejected.
	ca.c.HandleFrame(mustHex("c0210b01000800000000"))
	ca.c.HandleFrame(mustHex("c0210c0100084142"))
	ca.c.HandleFrame(mustHex("c021200100060102"))
	rep = ca.next(t, protoLCP)
	if rep.code != codeCodeRej || !bytes.Equal(rep.data, mustHex("200100060102")) {
		t.Fatalf("code reject %d %x", rep.code, rep.data)
	}
}

func TestSoftEtherLCPAgainstClient(t *testing.T) {
	const dir = "c-softether-server_strongswan-client"
	clk := newFake()
	cc, _ := baseConfigs(clk)
	ca := newClientAlone(t, cc)
	req := ca.next(t, protoLCP)
	// SoftEther rejects Magic-Number: the client drops it.
	rej := appendPacket(nil, protoLCP, codeConfRej, req.id, req.data[4:])
	ca.c.HandleFrame(rej)
	req2 := ca.next(t, protoLCP)
	if req2.code != codeConfReq || !bytes.Equal(req2.data, mustHex("01040578")) || req2.id == req.id {
		t.Fatalf("request after reject %d %x", req2.code, req2.data)
	}
	// SoftEther's first request: Auth-Protocol EAP alone. The default policy
	// allows EAP, but SoftEther 5.01 can only do EAP-TLS inside it and
	// cannot fall back after an EAP Nak: the client Naks toward MS-CHAPv2.
	seReq := firstFrame(t, dir, true, protoLCP, codeConfReq)
	ca.c.HandleFrame(bytes.Clone(seReq))
	nak := ca.next(t, protoLCP)
	if nak.code != codeConfNak || !bytes.Equal(nak.data, mustHex("0305c22381")) {
		t.Fatalf("nak %d %x", nak.code, nak.data)
	}
	// Ack ours, offer MS-CHAPv2: client acks; then a CHAP challenge gets a 49-byte response.
	ca.c.HandleFrame(appendPacket(nil, protoLCP, codeConfAck, req2.id, req2.data))
	ca.c.HandleFrame(mustHex("ff03c021010100090305c22381"))
	if a := ca.next(t, protoLCP); a.code != codeConfAck || a.id != 1 {
		t.Fatalf("ack %d %x", a.code, a.data)
	}
	ch := firstFrame(t, dir, true, protoCHAP, 1)
	ca.c.HandleFrame(ch)
	r := ca.next(t, protoCHAP)
	v, err := parseCHAPValue(r.data)
	if r.code != 2 || r.id != 2 || err != nil || len(v.value) != 49 || string(v.name) != "vpnuser" || !bytes.Equal(v.value[16:24], make([]byte, 8)) {
		t.Fatalf("response %d %x %v", r.code, r.data, err)
	}
	// IPV6CP before authentication finished is dropped silently, not Protocol-Rejected.
	ca.c.HandleFrame(mustHex("ff0380570101000e010a8fa5cafeff8fa5c8"))
	// The real Success carries an S= for a different peer challenge: rejected.
	ca.c.HandleFrame(firstFrame(t, dir, true, protoCHAP, 3))
	select {
	case err := <-ca.errc:
		if !errIs(err, ErrAuthFailed) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client accepted a foreign authenticator response")
	}
	for len(ca.out) > 0 {
		b := <-ca.out
		if p, info, _ := DecodeFrame(b); p == protoLCP && info[0] == codeProtoRej {
			t.Error("Protocol-Reject sent before authentication")
		}
	}
}

func TestProtocolRejectAfterAuth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		cc.NoIPv6 = true
		w := &wire{}
		ss := start(t, cc, sc, w)
		ss.waitUp(0)
		ipv6cp := mustHex("ff0380570101000e010a8fa5cafeff8fa5c8")
		ss.c.HandleFrame(bytes.Clone(ipv6cp))
		ss.c.HandleFrame(mustHex("ff03005760000000")) // IPv6 data: silently dropped
		ss.c.HandleFrame(mustHex("ff0380fd0101000412060000"))
		pump(t, 0, func() bool {
			n := 0
			for _, p := range w.frames(0, protoLCP) {
				if p.code == codeProtoRej {
					n++
				}
			}
			return n == 2
		})
		var rej []packet
		for _, p := range w.frames(0, protoLCP) {
			if p.code == codeProtoRej {
				rej = append(rej, p)
			}
		}
		if binary.BigEndian.Uint16(rej[0].data) != protoIPV6CP || !bytes.Equal(rej[0].data[2:], ipv6cp[4:]) {
			t.Errorf("protocol reject %x", rej[0].data)
		}
		if binary.BigEndian.Uint16(rej[1].data) != protoCCP {
			t.Errorf("protocol reject %x", rej[1].data)
		}
		// Still up: an Echo-Request is answered.
		ss.c.HandleFrame(mustHex("c0210977000800000000"))
		pump(t, 0, func() bool {
			for _, p := range w.frames(0, protoLCP) {
				if p.code == codeEchoReply && p.id == 0x77 {
					return true
				}
			}
			return false
		})
	})
}

func TestIPCPAgainstPPPDRequest(t *testing.T) {
	// The client side of a pppd session: feed the real IPCP exchange of capture a.
	c := NewClient(Config{User: "vpnuser", Password: []byte("vpnpass"), Clock: newFake(), Rand: newSeeded(3)}, func([]byte) error { return nil })
	var sent [][]byte
	c.send = func(b []byte) error { sent = append(sent, bytes.Clone(b)); return nil }
	c.phase = phaseNetwork
	c.ipcp.open()
	srvReq := firstFrame(t, "a-libreswan-server_strongswan-client", true, protoIPCP, codeConfReq)
	if err := c.input(srvReq); err != nil {
		t.Fatal(err)
	}
	last := sent[len(sent)-1]
	if !bytes.Equal(last, mustHex("80210401000a0206002d0f01")) {
		t.Fatalf("VJ not rejected: %x", last)
	}
	// pppd's Nak (capture a) gives address and both DNS.
	nak := firstFrame(t, "a-libreswan-server_strongswan-client", true, protoIPCP, codeConfNak)
	nak = bytes.Clone(nak)
	_, info, _ := DecodeFrame(nak)
	info[1] = c.ipcp.id
	if err := c.input(nak); err != nil {
		t.Fatal(err)
	}
	if c.local != netip.MustParseAddr("192.168.42.10") || c.dns1 != netip.MustParseAddr("192.168.42.1") {
		t.Errorf("after nak: %v %v", c.local, c.dns1)
	}
}

// TestLateServerGetsOurRequestAgain: xl2tpd starts pppd only once the L2TP
// session is up, so our first LCP Configure-Request is often lost. When the
// server's first request arrives well after ours and nothing answered ours,
// we resend it at once (same Identifier) instead of waiting out the 3 s
// Restart timer; a server that answers promptly gets no duplicate.
func TestLateServerGetsOurRequestAgain(t *testing.T) {
	clk := newFake()
	cc, _ := baseConfigs(clk)
	ca := newClientAlone(t, cc)
	req := ca.next(t, protoLCP)
	srvReq := firstFrame(t, "a-libreswan-server_strongswan-client", true, protoLCP, codeConfReq)
	clk.Advance(time.Second) // pppd starts a second later
	ca.c.HandleFrame(bytes.Clone(srvReq))
	again := ca.next(t, protoLCP)
	if again.code != codeConfReq || again.id != req.id || !bytes.Equal(again.data, req.data) {
		t.Fatalf("after the late server's request: code %d id %d %x, want our request %d %x again", again.code, again.id, again.data, req.id, req.data)
	}
	if ack := ca.next(t, protoLCP); ack.code != codeConfAck {
		t.Fatalf("then code %d, want the Ack of the server's request", ack.code)
	}

	// A prompt server: its request 10 ms after ours brings only our Ack.
	clk2 := newFake()
	cc2, _ := baseConfigs(clk2)
	ca2 := newClientAlone(t, cc2)
	ca2.next(t, protoLCP)
	clk2.Advance(10 * time.Millisecond)
	ca2.c.HandleFrame(bytes.Clone(srvReq))
	if p := ca2.next(t, protoLCP); p.code != codeConfAck {
		t.Fatalf("prompt server: code %d, want only the Ack", p.code)
	}
}

// TestPeerRTTShortensTheResend: with PeerRTT known (10 ms, a server VM),
// the server's first request 100 ms after ours (pppd starting on ICCN)
// shows ours was lost: resent at once. Without it, 100 ms is within the
// 250 ms default and the client would wait out the 3 s Restart timer. A
// request within two round trips still brings only our Ack.
func TestPeerRTTShortensTheResend(t *testing.T) {
	srvReq := firstFrame(t, "a-libreswan-server_strongswan-client", true, protoLCP, codeConfReq)
	for _, tc := range []struct {
		after  time.Duration
		resend bool
	}{{100 * time.Millisecond, true}, {15 * time.Millisecond, false}} {
		clk := newFake()
		cc, _ := baseConfigs(clk)
		cc.PeerRTT = 10 * time.Millisecond
		ca := newClientAlone(t, cc)
		req := ca.next(t, protoLCP)
		clk.Advance(tc.after)
		ca.c.HandleFrame(bytes.Clone(srvReq))
		p := ca.next(t, protoLCP)
		if got := p.code == codeConfReq && p.id == req.id; got != tc.resend {
			t.Errorf("server's request %v after ours (RTT 10 ms): code %d id %d, resent %v, want %v", tc.after, p.code, p.id, got, tc.resend)
		}
	}
}
