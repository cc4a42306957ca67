package ike

import (
	"context"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/capture"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

func addCaptureSeeds(f *testing.F) [][]byte {
	var all [][]byte
	dirs, err := capture.Sessions(capturesDir)
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range dirs {
		pkts, err := readCapturedIKE(filepath.Join(d, "outer.pcap"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range pkts {
			f.Add(p.msg)
			all = append(all, p.msg)
		}
	}
	if len(all) == 0 {
		f.Fatal("no seeds")
	}
	return all
}

// FuzzParse runs every parser over arbitrary ISAKMP messages and, for
// encrypted ones, over the ciphertext as if it were a decrypted payload chain.
func FuzzParse(f *testing.F) {
	addCaptureSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		ps := m.Payloads
		if m.Flags&FlagEncryption != 0 {
			ps, _, _ = ParsePayloads(m.NextPayload, m.Ciphertext)
		}
		for _, p := range ps {
			if len(p.Raw) != len(p.Body)+4 {
				t.Fatal("raw/body mismatch")
			}
			switch p.Type {
			case PayloadSA:
				if sa, err := ParseSA(p.Body); err == nil {
					for _, pr := range sa.Proposals {
						for i := range pr.Transforms {
							p1FromTransform(&pr.Transforms[i])
							p2FromTransform(&pr.Transforms[i])
							lifetimeOf(pr.Transforms[i].Attrs, 1, 2)
						}
					}
				}
			case PayloadID:
				ParseID(p.Body)
			case PayloadNotify:
				if n, err := ParseNotify(p.Body); err == nil {
					ParseAttributes(n.Data)
				}
			case PayloadDelete:
				ParseDelete(p.Body)
			case PayloadNATOA, PayloadNATOADraft:
				ParseNATOA(p.Body)
			}
		}
	})
}

type sinkTransport struct{ n int }

func (s *sinkTransport) WriteIKE([]byte, bool) error { s.n++; return nil }

// FuzzInitiatorMainMode feeds arbitrary replies (with our cookie patched
// in) to an Initiator that has just sent MM1; it must never panic.
func FuzzInitiatorMainMode(f *testing.F) {
	addCaptureSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := NewInitiator(Config{PSK: []byte("k"), LocalAddr: clientAddr, RemoteAddr: serverAddr,
			Rand: rand.New(rand.NewSource(1))}, &sinkTransport{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.r.ctx = ctx
		sa, err := s.r.startMainMode()
		if err != nil {
			t.Fatal(err)
		}
		msg := append([]byte(nil), b...)
		if len(msg) >= 8 {
			copy(msg, sa.ckyI[:])
		}
		_ = s.r.handle(msg)
	})
}

// establishedPair brings an initiator and a responder up to their first
// ESP SA, then stops both Run goroutines (cutting the pipes first, so their
// Deletes reach nobody): their SAs stay up for direct handle calls.
func establishedPair(tb testing.TB) (ini *Initiator, resp *Responder) {
	tb.Helper()
	toResp, toIni := &pipe{drop: map[int]bool{}}, &pipe{drop: map[int]bool{}}
	clk := clock.NewFake(time.Unix(1700000000, 0))
	ini, err := NewInitiator(Config{PSK: []byte("k"), LocalAddr: clientAddr, RemoteAddr: serverAddr, Clock: clk}, toResp)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err = NewResponder(ResponderConfig{PSK: []byte("k"), LocalAddr: serverAddr, Clock: clk}, toIni)
	if err != nil {
		tb.Fatal(err)
	}
	toResp.peer, toIni.peer = resp.HandlePacket, ini.HandlePacket
	ctx, cancel := context.WithCancel(context.Background())
	iDone, rDone := make(chan error, 1), make(chan error, 1)
	go func() { iDone <- ini.Run(ctx) }()
	go func() { rDone <- resp.Run(ctx) }()
	for up := 0; up < 2; {
		select {
		case ev := <-ini.Events():
			if _, ok := ev.(ChildSAUp); ok {
				up++
			}
		case ev := <-resp.Events():
			if _, ok := ev.(ChildSAUp); ok {
				up++
			}
		case err := <-iDone:
			tb.Fatalf("initiator ended: %v", err)
		case <-time.After(10 * time.Second):
			tb.Fatal("no ESP SA")
		}
	}
	for _, p := range []*pipe{toResp, toIni} {
		p.mu.Lock()
		p.dropAll = true
		p.mu.Unlock()
	}
	cancel()
	<-iDone
	<-rDone
	return ini, resp
}

// FuzzEstablished gets past Main Mode: each input is a payload chain that
// the responder's SA encrypts and authenticates (HASH(1) with SKEYID_a,
// RFC 2409 §5.5/§5.7) as a Quick Mode or Informational message, so it
// reaches the initiator's Quick Mode, notify, Delete and DPD handlers.
// Nothing may panic; the SA is put back after each input.
func FuzzEstablished(f *testing.F) {
	ini, resp := establishedPair(f)
	iSA, rSA := ini.r.sas.current(), resp.r.sas.current()
	iTable := ini.r.sas.all()
	ruThere := newBuilder()
	ruThere.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyRUThere, SPI: rSA.cookies(), Data: []byte{0, 0, 0, 1}}.encode())
	del := newBuilder()
	del.add(PayloadDelete, Delete{DOI: 1, Protocol: 1, SPIs: [][]byte{rSA.cookies()}}.encode())
	qm := newBuilder()
	qm.add(PayloadSA, encodeP2SA(0x1234, DefaultPhase2, time.Hour, 0, EncapUDPTransport, 0))
	qm.add(PayloadNonce, make([]byte, 32))
	for _, b := range []*builder{ruThere, del} {
		f.Add(false, b.first, b.buf, uint32(7))
	}
	f.Add(true, qm.first, qm.buf, uint32(9))
	f.Fuzz(func(t *testing.T, quick bool, first uint8, chain []byte, mid uint32) {
		ini.r.sas.sas = append([]*ikeSA(nil), iTable...)
		iSA.up, iSA.ivs.chains, rSA.ivs.chains = true, nil, nil
		ini.r.outq = nil
		if mid == 0 {
			mid = 1
		}
		exch := ExchangeInformational
		if quick {
			exch = ExchangeQuickMode
		}
		msg := rSA.hashedMessage(exch, mid, &builder{buf: append([]byte(nil), chain...), first: first, lastNext: -1})
		_ = ini.r.handle(msg)
		_ = ini.r.onTimer()
	})
}

// TestEstablishedPairAuthenticates checks FuzzEstablished's premise: a
// message the responder's SA builds passes the initiator's HASH(1) check
// (an R-U-THERE is answered).
func TestEstablishedPairAuthenticates(t *testing.T) {
	ini, resp := establishedPair(t)
	rSA := resp.r.sas.current()
	out := ini.r.tr.(*pipe)
	before := len(mustMessages(out))
	b := newBuilder()
	b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyRUThere, SPI: rSA.cookies(), Data: []byte{0, 0, 0, 1}}.encode())
	if err := ini.r.handle(rSA.hashedMessage(ExchangeInformational, 7, b)); err != nil {
		t.Fatal(err)
	}
	if n := len(mustMessages(out)) - before; n != 1 {
		t.Fatalf("%d messages in answer to R-U-THERE, want the ACK", n)
	}
}
