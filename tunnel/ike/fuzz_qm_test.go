package ike

import (
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// qmReplyHarness drives an established initiator into a Quick Mode of its
// own (a rekey: QM1 sent) and answers it with a QM2 whose payload chain the
// caller chooses: the responder's SA decrypts QM1 (so both IV chains of the
// M-ID agree), then encrypts the chain with a correct HASH(2) = prf(SKEYID_a,
// M-ID | Ni_b | chain) (RFC 2409 §5.5), so the input reaches the initiator's
// QM2 handling (SA choice, KE, lifetimes, notifies, installChild) instead of
// stopping at the hash check. The state is put back before each input.
type qmReplyHarness struct {
	ini       *Initiator
	iSA, rSA  *ikeSA
	iTable    []*ikeSA
	iChildren []*child
	out       *pipe
}

func newQMReplyHarness(tb testing.TB) *qmReplyHarness {
	ini, resp := establishedPair(tb)
	h := &qmReplyHarness{ini: ini, iSA: ini.r.sas.current(), rSA: resp.r.sas.current(), iTable: ini.r.sas.all()}
	h.iChildren = append([]*child(nil), h.iSA.children...)
	h.out = ini.r.tr.(*pipe)
	return h
}

// reply resets the state, sends QM1 and feeds back QM2 carrying chain.
func (h *qmReplyHarness) reply(tb testing.TB, first uint8, chain []byte) {
	r := h.ini.r
	r.sas.sas = append([]*ikeSA(nil), h.iTable...)
	h.iSA.up, h.iSA.ivs.chains, h.rSA.ivs.chains = true, nil, nil
	h.iSA.qms, h.iSA.pend = nil, nil
	h.iSA.children = append([]*child(nil), h.iChildren...)
	r.outq = nil
	h.out.mu.Lock()
	h.out.sent, h.out.natt = nil, nil // bounded memory over a long fuzz run
	h.out.mu.Unlock()
	if err := h.iSA.startQM(0); err != nil {
		tb.Fatal(err)
	}
	q := h.iSA.qms[len(h.iSA.qms)-1]
	m, err := Parse(q.lastOut)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := h.rSA.decryptMsg(m)
	if err != nil {
		tb.Fatal(err)
	}
	h.rSA.ivs.set(q.mid, d.nextIV)
	rest := &builder{buf: append([]byte(nil), chain...), first: first, lastNext: -1}
	hash := h.rSA.suite.QMHash2(h.rSA.keys.A, q.mid, q.ni, rest.buf)
	msg := h.rSA.assemble(ExchangeQuickMode, q.mid, withHash(hash, rest), true)
	_ = r.handle(msg)
	_ = r.onTimer()
}

// validQM2 is the chain of a good QM2: one chosen transform, our nonce,
// the selectors, a RESPONDER-LIFETIME notify.
func validQM2() *builder {
	b := newBuilder()
	b.add(PayloadSA, encodeP2SA(0x12345678, []esp.Algorithm{DefaultPhase2[0]}, time.Hour, 0, EncapUDPTransport, 0))
	b.add(PayloadNonce, make([]byte, 32))
	b.add(PayloadID, idFor(clientAddr, 17, 1701).encode())
	b.add(PayloadID, idFor(serverAddr, 17, 1701).encode())
	b.add(PayloadNotify, Notify{DOI: 1, Protocol: 3, Type: NotifyResponderLifetime, SPI: []byte{0x12, 0x34, 0x56, 0x78},
		Data: []byte{0x80, 0x01, 0x00, 0x01, 0x80, 0x02, 0x02, 0x58}}.encode())
	return b
}

// FuzzQuickModeReply fuzzes the server's answer to a Quick Mode we started
// (QM2), authenticated, through the engine. Nothing may panic.
func FuzzQuickModeReply(f *testing.F) {
	h := newQMReplyHarness(f)
	good := validQM2()
	f.Add(good.first, good.buf)
	f.Add(uint8(PayloadSA), good.buf[:len(good.buf)/2])
	f.Add(uint8(PayloadNotify), []byte{0, 0, 0, 12, 0, 0, 0, 1, 3, 4, 0, 24})
	f.Fuzz(func(t *testing.T, first uint8, chain []byte) {
		h.reply(t, first, chain)
	})
}

// TestQuickModeReplyHarness checks FuzzQuickModeReply's premise: the good
// QM2 passes HASH(2) and installs a child SA (ChildSAUp, and QM3 sent), a
// QM2 with one bit changed after hashing would not; so fuzzed chains reach
// the QM2 parser.
func TestQuickModeReplyHarness(t *testing.T) {
	h := newQMReplyHarness(t)
	good := validQM2()
	h.reply(t, good.first, good.buf)
	var up bool
	for _, ev := range h.ini.r.outq {
		_, up = ev.(ChildSAUp)
	}
	for len(h.ini.r.events) > 0 {
		if _, ok := (<-h.ini.r.events).(ChildSAUp); ok {
			up = true
		}
	}
	if !up {
		t.Fatal("the good QM2 installed no child SA: the harness does not get past HASH(2)")
	}
	if msgs, _ := h.out.messages(); len(msgs) != 2 { // QM1, QM3
		t.Fatalf("%d messages sent, want QM1 and QM3", len(msgs))
	}
}
