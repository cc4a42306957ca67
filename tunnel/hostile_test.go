package tunnel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/memnet"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// outcome is what a hostile-server case must end in.
type outcome int

const (
	mustFail    outcome = iota // Dial fails with a *tunnel.Error of the class given
	mustConnect                // Dial succeeds and the tunnel carries a request
	either                     // no panic, no hang; a failure is a *tunnel.Error
)

// Rewrites of what the server sends, by layer. IKE messages are mangled on
// both of the server's sockets (port 500, and 4500 after the non-ESP
// marker), ESP on the NAT-T socket; L2TP control messages and PPP frames
// before ESP seals them (testserver.Faults), so they arrive authentic.
type hostileCase struct {
	name  string
	ike   func(msg []byte) [][]byte // an ISAKMP message (no marker)
	esp   func(dg []byte) [][]byte  // an ESP datagram
	l2tp  func(pkt []byte) [][]byte // an L2TP control message
	ppp   func(frame []byte) [][]byte
	want  outcome
	class error  // with mustFail
	text  string // with mustFail: in the error message
}

func truncate(b []byte) [][]byte { return [][]byte{b[:len(b)/2], b[:min(len(b), 3)]} }

func oversize(b []byte) [][]byte {
	return [][]byte{append(b, bytes.Repeat([]byte{0xA5}, 30000)...)}
}

func flipLast(b []byte) [][]byte {
	b[len(b)-1] ^= 0x40
	return [][]byte{b}
}

// replayer sends each message, then again the one before it (an old
// message replayed by an attacker, or a confused server).
func replayer() func([]byte) [][]byte {
	var mu sync.Mutex
	var prev []byte
	return func(b []byte) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		out := [][]byte{b, b}
		if prev != nil {
			out = append(out, prev)
		}
		prev = append([]byte(nil), b...)
		return out
	}
}

// ikeOversize grows an ISAKMP message by 30000 bytes of junk and sets its
// length field to match, so the junk reaches the payload parsers.
func ikeOversize(b []byte) [][]byte {
	b = append(b, bytes.Repeat([]byte{0xA5}, 30000)...)
	if len(b) >= 28 {
		binary.BigEndian.PutUint32(b[24:], uint32(len(b)))
	}
	return [][]byte{b}
}

// ikeFlipEncrypted corrupts the last byte of encrypted messages (MM5/MM6
// on, Quick Mode, Informational): their hash no longer verifies.
func ikeFlipEncrypted(b []byte) [][]byte {
	if len(b) >= 28 && b[19]&1 != 0 {
		b[len(b)-1] ^= 0x40
	}
	return [][]byte{b}
}

// chapSuccessForged changes the server's MS-CHAPv2 authenticator response
// (S=...), which the client must check (RFC 2759 §5): a server that does
// not know the password.
func chapSuccessForged(f []byte) [][]byte {
	if i := bytes.Index(f, []byte("S=")); i >= 0 && bytes.Contains(f, []byte{0xc2, 0x23, 0x03}) {
		if f[i+2] == '0' { // another hex digit, same length
			f[i+2] = '1'
		} else {
			f[i+2] = '0'
		}
	}
	return [][]byte{f}
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "IKE truncated", ike: truncate, want: mustFail, class: tunnel.ErrIKE, text: "malformed"},
		{name: "IKE oversized", ike: ikeOversize, want: mustFail, class: tunnel.ErrIKE, text: "malformed"},
		{name: "IKE wrongly authenticated", ike: ikeFlipEncrypted, want: mustFail, class: tunnel.ErrIKE, text: "HASH_R"},
		{name: "IKE replayed", ike: replayer(), want: mustConnect},
		{name: "ESP truncated", esp: truncate, want: mustFail, class: tunnel.ErrL2TP, text: "none authenticated"},
		{name: "ESP oversized", esp: oversize, want: mustFail, class: tunnel.ErrL2TP, text: "none authenticated"},
		{name: "ESP wrongly authenticated", esp: flipLast, want: mustFail, class: tunnel.ErrL2TP, text: "none authenticated"},
		{name: "ESP replayed", esp: replayer(), want: mustConnect},
		{name: "L2TP truncated", l2tp: truncate, want: mustFail, class: tunnel.ErrL2TP, text: "no answer from the L2TP server"},
		{name: "L2TP oversized", l2tp: func(b []byte) [][]byte { return [][]byte{append(b, make([]byte, 1200)...)} }, want: either},
		{name: "L2TP replayed", l2tp: replayer(), want: mustConnect},
		{name: "PPP truncated", ppp: truncate, want: mustFail, class: tunnel.ErrPPP, text: "LCP"},
		{name: "PPP oversized", ppp: func(b []byte) [][]byte { return [][]byte{append(b, make([]byte, 1200)...)} }, want: either},
		{name: "PPP replayed", ppp: replayer(), want: either},
		{name: "PPP forged MS-CHAPv2 success", ppp: chapSuccessForged, want: mustFail, class: tunnel.ErrPPP, text: "prove"},
	}
}

// TestHostileServer: a server sending truncated, oversized, replayed or
// wrongly authenticated IKE, ESP, L2TP and PPP messages: the client never
// panics (a panic ends the test binary), never hangs (Dial is bounded),
// and fails with one clear error naming the layer, or copes (replays).
func TestHostileServer(t *testing.T) {
	for i, hc := range hostileCases() {
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			scfg := testserver.Config{}
			scfg.Faults.L2TPControl, scfg.Faults.PPPFrame = hc.l2tp, hc.ppp
			p := startMemPeers(t, uint64(100+i), scfg)
			p.mu.Lock()
			ikeConn, natt := p.server[0], p.server[1]
			p.mu.Unlock()
			if hc.ike != nil {
				ikeConn.SetImpairment(memnet.Impairment{Rewrite: hc.ike})
			}
			if hc.ike != nil || hc.esp != nil {
				natt.SetImpairment(memnet.Impairment{Rewrite: func(dg []byte) [][]byte {
					switch {
					case len(dg) >= 4 && binary.BigEndian.Uint32(dg) == 0: // non-ESP marker: IKE
						if hc.ike == nil {
							return [][]byte{dg}
						}
						var out [][]byte
						for _, m := range hc.ike(dg[4:]) {
							out = append(out, append([]byte{0, 0, 0, 0}, m...))
						}
						return out
					case len(dg) == 1 && dg[0] == 0xff, hc.esp == nil:
						return [][]byte{dg}
					}
					return hc.esp(dg)
				}})
			}
			cfg := p.cfg
			cfg.ReplyTimeout, cfg.L2TPTimeout, cfg.PPPTimeout = 3*time.Second, 3*time.Second, 3*time.Second
			cfg.ConnectTimeout = 8 * time.Second
			start := time.Now()
			c, err := tunnel.Dial(context.Background(), cfg)
			took := time.Since(start)
			if took > cfg.ConnectTimeout+2*time.Second {
				t.Errorf("Dial took %v, beyond its %v bound", took, cfg.ConnectTimeout)
			}
			if err != nil {
				var te *tunnel.Error
				if !errors.As(err, &te) || te.Layer == "" || strings.Contains(err.Error(), "testpsk") || strings.Contains(err.Error(), "vpnpass") {
					t.Fatalf("Dial error %q (%T) is not a clear tunnel.Error", err, err)
				}
				if hc.want == mustConnect {
					t.Fatalf("Dial failed: %v", err)
				}
				if hc.class != nil && !errors.Is(err, hc.class) {
					t.Errorf("Dial error %v, want class %v", err, hc.class)
				}
				if hc.text != "" && !strings.Contains(err.Error(), hc.text) {
					t.Errorf("Dial error %v, want it to mention %q", err, hc.text)
				}
				t.Logf("after %v: %v", took.Round(time.Millisecond), err)
				return
			}
			defer c.Close()
			if hc.want == mustFail {
				t.Fatalf("Dial succeeded against a server that sends %s", hc.name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if body, err := getThrough(ctx, c, p.srv.URL("/hello.txt")); err != nil || body != p.srv.HelloBody() {
				if hc.want == mustConnect {
					t.Fatalf("hello.txt through the tunnel = %q, %v", body, err)
				}
				t.Logf("connected, then the request failed: %v", err)
			}
			t.Logf("connected after %v", took.Round(time.Millisecond))
		})
	}
}

// TestHostileFlood: once the tunnel is up, the server's address floods the
// client with junk (IKE-looking messages with random cookies, garbage ESP,
// oversized datagrams, and the server's own setup datagrams replayed or with
// a byte changed: old Main Mode, Quick Mode and ESP with the right cookies
// and SPI): memory stays bounded, the tunnel stays up and carries a request
// afterwards.
func TestHostileFlood(t *testing.T) {
	p := startMemPeers(t, 9, testserver.Config{})
	p.mu.Lock()
	ikeConn, natt := p.server[0], p.server[1]
	p.mu.Unlock()
	// Record what the server sends during setup, to replay it afterwards
	// (old Main Mode and Quick Mode messages, with the right cookies).
	var recMu sync.Mutex
	var recorded [][]byte
	record := memnet.Impairment{Rewrite: func(dg []byte) [][]byte {
		recMu.Lock()
		recorded = append(recorded, append([]byte(nil), dg...))
		recMu.Unlock()
		return [][]byte{dg}
	}}
	natt.SetImpairment(record)
	ikeConn.SetImpairment(record)
	c, err := tunnel.Dial(context.Background(), p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	natt.SetImpairment(memnet.Impairment{})
	ikeConn.SetImpairment(memnet.Impairment{})
	recMu.Lock()
	old := recorded
	recMu.Unlock()
	to := p.client.AddrPort()
	rng := rand.New(rand.NewPCG(1, 2))
	junk := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	const rounds = 20000
	for i := range rounds {
		switch i % 5 {
		case 4: // a message the server sent during setup, replayed or corrupted
			m := append([]byte(nil), old[rng.IntN(len(old))]...)
			if rng.IntN(2) == 0 && len(m) > 0 {
				m[rng.IntN(len(m))] ^= byte(1 + rng.IntN(255))
			}
			natt.WriteToUDPAddrPort(m, to)
		case 0: // ISAKMP with random cookies, a plausible header, junk payloads
			m := junk(28 + rng.IntN(400))
			m[17], m[18] = 0x10, byte(2+rng.IntN(4))
			binary.BigEndian.PutUint32(m[24:], uint32(len(m)))
			ikeConn.WriteToUDPAddrPort(m, netip.AddrPortFrom(to.Addr(), to.Port()))
		case 1: // the same on the NAT-T port, behind the marker
			m := junk(32 + rng.IntN(400))
			copy(m, []byte{0, 0, 0, 0})
			natt.WriteToUDPAddrPort(m, to)
		case 2: // ESP-looking garbage
			natt.WriteToUDPAddrPort(junk(16+rng.IntN(1500)), to)
		case 3: // oversized
			natt.WriteToUDPAddrPort(junk(20000+rng.IntN(40000)), to)
		}
		if i%512 == 0 {
			time.Sleep(time.Millisecond) // let the client read: a flood, not a queue-overflow test
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if body, err := getThrough(ctx, c, p.srv.URL("/hello.txt")); err != nil || body != p.srv.HelloBody() {
		t.Fatalf("after the flood: %q, %v (tunnel err %v)", body, err, c.Err())
	}
	if err := c.Err(); err != nil {
		t.Fatalf("the flood ended the tunnel: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // the client's queue drains
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grew := int64(ms.HeapInuse) - int64(before)
	_, d1 := ikeConn.Stats()
	_, d2 := natt.Stats()
	t.Logf("heap in use grew by %d KiB over %d junk datagrams (%d of them dropped at the client's full queue)", grew>>10, rounds, d1+d2)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB after a flood of junk: unbounded state?", grew>>20)
	}
}
