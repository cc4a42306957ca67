package ppp

import (
	"bytes"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

func clientIPv6Up(ss *session, server bool) *IPv6Up {
	e := ss.event(server, func(e Event) bool { _, ok := e.(IPv6Up); return ok })
	if e == nil {
		return nil
	}
	v := e.(IPv6Up)
	return &v
}

func TestIPv6CPOpens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		sc.IPv6 = true
		ss := start(t, cc, sc, &wire{})
		ss.waitUp(0)
		pump(t, 0, func() bool { return clientIPv6Up(ss, false) != nil && clientIPv6Up(ss, true) != nil })
		c, s := *clientIPv6Up(ss, false), *clientIPv6Up(ss, true)
		var zero [IIDLen]byte
		if c.Local == zero || c.Peer == zero || c.Local == c.Peer {
			t.Fatalf("client IPv6Up %+v", c)
		}
		if c.Local != s.Peer || c.Peer != s.Local {
			t.Errorf("identifiers do not match: client %+v, server %+v", c, s)
		}
	})
}

// The server closes an opened IPv6CP with a Terminate-Request: the client
// acks it, reports IPv6Down once and keeps the link (IPv4) up.
func TestIPv6CPClosedByPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		sc.IPv6 = true
		w := &wire{}
		ss := start(t, cc, sc, w)
		ss.waitUp(0)
		pump(t, 0, func() bool { return clientIPv6Up(ss, false) != nil })
		isDown := func(e Event) bool { _, ok := e.(IPv6Down); return ok }
		synctest.Wait()
		if ss.event(false, isDown) != nil {
			t.Fatal("IPv6Down before the close")
		}
		ss.c.HandleFrame(appendPacket(nil, protoIPV6CP, codeTermReq, 0x77, nil))
		pump(t, 0, func() bool { return ss.event(false, isDown) != nil })
		acked := false
		for _, p := range w.frames(0, protoIPV6CP) {
			acked = acked || p.code == codeTermAck && p.id == 0x77
		}
		if !acked {
			t.Error("no Terminate-Ack for the IPv6CP Terminate-Request")
		}
		synctest.Wait()
		select {
		case err := <-ss.cErr:
			t.Fatalf("client ended: %v", err)
		default:
		}
	})
}

// RFC 5072 §4.1: the client takes the identifier the server Naks to it.
func TestIPv6CPTakesSuggestedIID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		sc.IPv6 = true
		sc.SuggestIID = [IIDLen]byte{0x02, 0, 0, 0, 0, 0, 0, 0x42}
		ss := start(t, cc, sc, &wire{})
		ss.waitUp(0)
		pump(t, 0, func() bool { return clientIPv6Up(ss, false) != nil })
		if got := clientIPv6Up(ss, false).Local; got != sc.SuggestIID {
			t.Errorf("client IID %x, want the suggested %x", got, sc.SuggestIID)
		}
	})
}

// A server without IPv6CP Protocol-Rejects it: IPv4 comes up, the client
// sends IPv6CP once and never again.
func TestIPv6CPProtocolRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		w := &wire{}
		ss := start(t, cc, sc, w)
		ss.waitUp(0)
		pump(t, 0, func() bool {
			for _, p := range w.frames(1, protoLCP) {
				if p.code == codeProtoRej {
					return true
				}
			}
			return false
		})
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(w.frames(0, protoIPV6CP)); n != 1 {
			t.Errorf("client sent %d IPv6CP packets after the Protocol-Reject, want 1", n)
		}
		if clientIPv6Up(ss, false) != nil {
			t.Error("IPv6Up without IPv6CP")
		}
		select {
		case err := <-ss.cErr:
			t.Fatalf("client ended: %v", err)
		default:
		}
	})
}

// A server that never answers IPv6CP: IPv4 is up as soon as IPCP is, and
// after MaxConfigure tries the client stops without ending the link.
func TestIPv6CPNoAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		w := &wire{drop: func(dir int, fr []byte) bool {
			p, _, err := DecodeFrame(fr)
			if err != nil {
				return false
			}
			return dir == 0 && p == protoIPV6CP
		}}
		ss := start(t, cc, sc, w)
		ss.waitUp(0) // no clock advance needed: IPCP does not wait for IPv6CP
		pump(t, time.Second, func() bool { return len(w.frames(0, protoIPV6CP)) >= DefaultMaxConfigure })
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(w.frames(0, protoIPV6CP)); n != DefaultMaxConfigure {
			t.Errorf("client sent %d IPv6CP requests, want %d", n, DefaultMaxConfigure)
		}
		select {
		case err := <-ss.cErr:
			t.Fatalf("client ended: %v", err)
		default:
		}
	})
}

// RFC 5072 §4.1: a zero identifier, or one equal to ours, is Naked with a
// non-zero one that differs from ours; others are acked; compression is
// rejected.
func TestIPv6CPCheckRequest(t *testing.T) {
	l := &link{rnd: newSeeded(9)}
	st := &ipv6State{iid: [IIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}}
	h := ipv6Handler{l: l, st: st}
	for _, tc := range []struct {
		name     string
		opts     []byte
		nak, rej bool
	}{
		{"other", []byte{1, 10, 9, 9, 9, 9, 9, 9, 9, 9}, false, false},
		{"zero", []byte{1, 10, 0, 0, 0, 0, 0, 0, 0, 0}, true, false},
		{"equal", []byte{1, 10, 1, 2, 3, 4, 5, 6, 7, 8}, true, false},
		{"short", []byte{1, 6, 1, 2, 3, 4}, false, true},
		{"compression", []byte{2, 4, 0x00, 0x4f}, false, true},
	} {
		nak, rej, err := h.checkRequest(tc.opts, nil, nil)
		if err != nil || (len(nak) > 0) != tc.nak || (len(rej) > 0) != tc.rej {
			t.Errorf("%s: nak %x rej %x err %v", tc.name, nak, rej, err)
			continue
		}
		if tc.nak {
			id, ok := parseIIDOption(nak[2:])
			if !ok || nak[0] != 1 || id == ([IIDLen]byte{}) || id == st.iid {
				t.Errorf("%s: bad suggestion %x", tc.name, nak)
			}
		}
		if tc.rej && !bytes.Equal(rej, tc.opts) {
			t.Errorf("%s: reject %x, want the option verbatim", tc.name, rej)
		}
	}
	// A Nak suggesting zero or the peer's own identifier is not taken.
	st.peerIID = [IIDLen]byte{9, 9, 9, 9, 9, 9, 9, 9}
	for _, v := range [][IIDLen]byte{{}, st.peerIID} {
		h.gotNak(append([]byte{1, 10}, v[:]...))
		if st.iid == v || st.iid == ([IIDLen]byte{}) {
			t.Errorf("took Nak value %x", v)
		}
	}
}

// FuzzIPv6CPOptions covers the IPv6CP option handling of RFC 5072.
func FuzzIPv6CPOptions(f *testing.F) {
	f.Add([]byte{1, 10, 0x8f, 0xa5, 0xca, 0xfe, 0xff, 0x8f, 0xa5, 0xc8})
	f.Add([]byte{1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 0, 0x4f})
	f.Add([]byte{1, 10, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, opts []byte) {
		if checkOptions(opts) != nil {
			return
		}
		st := &ipv6State{iid: [IIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}}
		h := ipv6Handler{l: &link{rnd: newSeeded(1), log: slog.New(slog.DiscardHandler)}, st: st, onUp: func(IPv6Up) {}}
		nak, rej, err := h.checkRequest(opts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if checkOptions(nak) != nil || checkOptions(rej) != nil || len(rej) > len(opts) {
			t.Fatalf("bad nak %x / rej %x", nak, rej)
		}
		for rest := nak; len(rest) > 0; {
			_, val, _, r, _ := nextOption(rest)
			rest = r
			if id, ok := parseIIDOption(val); !ok || id == ([IIDLen]byte{}) || id == st.iid {
				t.Fatalf("bad suggestion %x", val)
			}
		}
		h.peerAcked(opts)
		h.gotNak(opts)
		h.gotReject(opts)
		if st.iid == ([IIDLen]byte{}) {
			t.Fatal("zero identifier after Nak")
		}
		h.appendRequest(nil)
		h.up()
	})
}
