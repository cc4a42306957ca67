package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// testDNS is a tiny authoritative responder for *.test names, run on a
// Stack (UDP and TCP port 53).
type testDNS struct {
	mu      sync.Mutex
	queries map[string]int
}

func mustName(s string) dnsmessage.Name { return dnsmessage.MustNewName(s) }

func aRes(name string, ttl uint32, ip string) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: mustName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()},
	}
}

func cnameRes(name, target string) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: mustName(name), Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET, TTL: 300},
		Body:   &dnsmessage.CNAMEResource{CNAME: mustName(target)},
	}
}

// answer builds the response for query q; overTCP selects the TCP view.
func (d *testDNS) answer(q []byte, overTCP bool) [][]byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qq, err := p.Question()
	if err != nil {
		return nil
	}
	name := qq.Name.String()
	d.mu.Lock()
	d.queries[name]++
	d.mu.Unlock()

	resp := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired},
		Questions: []dnsmessage.Question{qq},
	}
	var extra [][]byte
	switch name {
	case "example.test.":
		resp.Answers = []dnsmessage.Resource{aRes(name, 60, "10.64.0.2")}
	case "alias.test.":
		resp.Answers = []dnsmessage.Resource{
			cnameRes(name, "mid.test."), cnameRes("mid.test.", "example.test."),
			aRes("unrelated.test.", 60, "192.0.2.66"), aRes("example.test.", 30, "10.64.0.2"),
		}
	case "multi.test.":
		resp.Answers = []dnsmessage.Resource{aRes(name, 60, "10.64.0.2"), aRes(name, 60, "10.64.0.3")}
	case "missing.test.":
		resp.RCode = dnsmessage.RCodeNameError
	case "servfail.test.":
		resp.RCode = dnsmessage.RCodeServerFailure
	case "v6only.test.":
	case "big.test.":
		if overTCP {
			resp.Answers = []dnsmessage.Resource{aRes(name, 60, "10.64.0.77")}
		} else {
			resp.Truncated = true
		}
	case "spoof.test.":
		// A wrong-ID answer and an answer to another question first:
		// both must be ignored.
		bad := resp
		bad.ID ^= 0xFFFF
		bad.Answers = []dnsmessage.Resource{aRes(name, 60, "192.0.2.1")}
		b1, _ := bad.Pack()
		other := resp
		other.Questions = []dnsmessage.Question{{Name: mustName("other.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}
		other.Answers = []dnsmessage.Resource{aRes("other.test.", 60, "192.0.2.2")}
		b2, _ := other.Pack()
		extra = append(extra, b1, b2)
		resp.Answers = []dnsmessage.Resource{aRes(name, 60, "10.64.0.5")}
	default:
		resp.RCode = dnsmessage.RCodeNameError
	}
	b, err := resp.Pack()
	if err != nil {
		return nil
	}
	return append(extra, b)
}

func (d *testDNS) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[name]
}

func startTestDNS(t testing.TB, s *Stack, addr netip.Addr) *testDNS {
	t.Helper()
	d := &testDNS{queries: map[string]int{}}
	pc, err := s.ListenUDP(netip.AddrPortFrom(addr, 53))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.ListenTCP(netip.AddrPortFrom(addr, 53))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, r := range d.answer(buf[:n], false) {
				pc.WriteTo(r, from)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				rs := d.answer(q, true)
				r := rs[len(rs)-1]
				c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(r))))
				c.Write(r)
			}(c)
		}
	}()
	return d
}

func TestLookupHost(t *testing.T) {
	a, b := mustPipe(t)
	d := startTestDNS(t, b, addrB)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tests := []struct {
		host    string
		want    []string
		wantErr error
	}{
		{"example.test", []string{"10.64.0.2"}, nil},
		{"EXAMPLE.test.", []string{"10.64.0.2"}, nil},
		{"alias.test", []string{"10.64.0.2"}, nil},
		{"multi.test", []string{"10.64.0.2", "10.64.0.3"}, nil},
		{"big.test", []string{"10.64.0.77"}, nil},
		{"spoof.test", []string{"10.64.0.5"}, nil},
		{"missing.test", nil, ErrDNSNotFound},
		{"v6only.test", nil, ErrDNSNotFound},
		{"servfail.test", nil, ErrDNSFailed},
		{"192.0.2.9", []string{"192.0.2.9"}, nil},
		{"2001:db8::1", []string{"2001:db8::1"}, nil},
		{"", nil, ErrBadAddress},
		{"bad..name", nil, ErrBadAddress},
	}
	for _, tt := range tests {
		got, err := a.LookupHost(ctx, tt.host)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("LookupHost(%q) err = %v, want %v", tt.host, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("LookupHost(%q): %v", tt.host, err)
			continue
		}
		var gs []string
		for _, g := range got {
			gs = append(gs, g.String())
		}
		if !slices.Equal(gs, tt.want) {
			t.Errorf("LookupHost(%q) = %v, want %v", tt.host, gs, tt.want)
		}
	}
	// NXDOMAIN is final: not retried on the same or other servers.
	if n := d.count("missing.test."); n != 1 {
		t.Errorf("missing.test queried %d times, want 1", n)
	}
	// SERVFAIL is retried dnsAttempts times.
	if n := d.count("servfail.test."); n != dnsAttempts {
		t.Errorf("servfail.test queried %d times, want %d", n, dnsAttempts)
	}
	// Cached: a second lookup does not reach the server.
	before := d.count("example.test.")
	if _, err := a.LookupHost(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if after := d.count("example.test."); after != before {
		t.Errorf("cached name queried again (%d -> %d)", before, after)
	}
}

func TestDialByName(t *testing.T) {
	a, b := mustPipe(t)
	startTestDNS(t, b, addrB)
	ln, err := b.ListenTCP(netip.AddrPortFrom(addrB, 8081))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("hello"))
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", "example.test:8081")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := a.DialContext(ctx, "tcp", "missing.test:80"); !errors.Is(err, ErrDNSNotFound) {
		t.Errorf("dial missing name: %v", err)
	}
}

func TestLookupNoDNSAndTimeout(t *testing.T) {
	cb := cfgB()
	ca := cfgA()
	ca.DNS = nil
	a, _ := pairWith(t, ca, cb, nil, nil)
	if _, err := a.LookupHost(context.Background(), "example.test"); !errors.Is(err, ErrNoDNS) {
		t.Errorf("no DNS: %v", err)
	}
	if got, err := a.LookupHost(context.Background(), "10.1.2.3"); err != nil || len(got) != 1 {
		t.Errorf("IP literal without DNS: %v %v", got, err)
	}

	// A DNS server nobody answers for: bounded by ctx.
	ca.DNS = []netip.Addr{netip.MustParseAddr("10.64.0.99")}
	a2, _ := pairWith(t, ca, cb, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a2.LookupHost(ctx, "example.test")
	if !errors.Is(err, ErrDNSFailed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered DNS: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("lookup took %v despite 400ms context", d)
	}
}

func TestParseAnswerRejectsMismatch(t *testing.T) {
	name := mustName("example.test.")
	id, q, err := buildQuery(name, dnsmessage.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{queries: map[string]int{}}
	resp := d.answer(q[2:], false)[0]
	if addrs, _, ok, err := parseAnswer(resp, id, name, dnsmessage.TypeA); !ok || err != nil || len(addrs) != 1 {
		t.Fatalf("good answer: %v %v %v", addrs, ok, err)
	}
	if _, _, ok, _ := parseAnswer(resp, id+1, name, dnsmessage.TypeA); ok {
		t.Error("wrong ID accepted")
	}
	if _, _, ok, _ := parseAnswer(resp, id, mustName("other.test."), dnsmessage.TypeA); ok {
		t.Error("wrong question accepted")
	}
	if _, _, ok, _ := parseAnswer(q[2:], id, name, dnsmessage.TypeA); ok {
		t.Error("query (QR=0) accepted as answer")
	}
	for i := range resp {
		parseAnswer(resp[:i], id, name, dnsmessage.TypeA) // must not panic
	}
}

func FuzzParseAnswer(f *testing.F) {
	d := &testDNS{queries: map[string]int{}}
	name := mustName("alias.test.")
	_, q, _ := buildQuery(name, dnsmessage.TypeA)
	for _, n := range []string{"alias.test.", "example.test.", "missing.test.", "big.test.", "spoof.test."} {
		_, qn, _ := buildQuery(mustName(n), dnsmessage.TypeA)
		for _, r := range d.answer(qn[2:], false) {
			f.Add(r)
		}
	}
	f.Add(q[2:])
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) < 2 {
			return
		}
		id := binary.BigEndian.Uint16(msg)
		addrs, _, ok, err := parseAnswer(msg, id, name, dnsmessage.TypeA)
		if !ok && (addrs != nil || err != nil) {
			t.Fatal("non-matching message produced a result")
		}
		if len(addrs) > len(msg)/16 {
			t.Fatalf("%d addresses from %d bytes", len(addrs), len(msg))
		}
	})
}
