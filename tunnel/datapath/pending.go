package datapath

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// Inbound SAs of Quick Modes that are not finished yet (PrepareInbound).
//
// The peer may send on a new SA pair as soon as it has it: a responder
// installs the pair when our QM3 arrives (RFC 2409 §5.5), an initiator
// when it sends its QM3, and that QM3 and its first ESP may be reordered
// on the way. The pair comes up as an event of the IKE goroutine that the
// owner installs (InstallSA) some time later; a packet on the new inbound
// SA in between would be dropped for an unknown SPI. So IKE gives us the
// inbound keys before the peer can have them, and InstallSA takes the
// prepared SA (with what its replay window has seen) when the pair comes.
// (Libreswan's pluto, too, installs a responder's inbound SA on its own,
// ahead of the outbound one: kernel.c, install_inbound_ipsec_sa.)

// pendingInbound is how many prepared inbound SAs are kept: one Quick Mode
// of ours and one of the peer's can run at once.
const pendingInbound = 2

// preparedIn is one prepared inbound SA and the keys it was made from.
type preparedIn struct {
	keys esp.Keys
	in   *esp.Inbound
}

// pending holds the prepared inbound SAs, newest first. The reader looks
// them up through the atomics; mu orders PrepareInbound (IKE's goroutine)
// with InstallSA (the owner's).
type pending struct {
	mu    sync.Mutex
	slots [pendingInbound]atomic.Pointer[preparedIn]
}

// PrepareInbound makes an inbound SA usable by Receive before its pair is
// installed: packets on it are opened like those on a replaced SA (they do
// not tell that the peer has the pair we send on). A later InstallSA with
// the same inbound keys takes it over. Safe for concurrent use; it does
// not block.
func (p *Path) PrepareInbound(k esp.Keys) error {
	in, err := esp.NewInbound(k)
	if err != nil {
		return err
	}
	pi := &preparedIn{keys: cloneKeys(k), in: in}
	p.pending.mu.Lock()
	defer p.pending.mu.Unlock()
	for i := pendingInbound - 1; i > 0; i-- {
		p.pending.slots[i].Store(p.pending.slots[i-1].Load())
	}
	p.pending.slots[0].Store(pi)
	return nil
}

// prepared returns the prepared inbound SA with this SPI, if any.
func (p *Path) prepared(spi uint32) *esp.Inbound {
	for i := range p.pending.slots {
		if pi := p.pending.slots[i].Load(); pi != nil && pi.in.SPI() == spi {
			return pi.in
		}
	}
	return nil
}

// preparedFor returns the SA PrepareInbound made from k, or nil.
func (p *Path) preparedFor(k esp.Keys) *esp.Inbound {
	for i := range p.pending.slots {
		if pi := p.pending.slots[i].Load(); pi != nil && sameKeys(pi.keys, k) {
			return pi.in
		}
	}
	return nil
}

// forgetPrepared removes in from the prepared SAs (once InstallSA made it
// current: until then Receive finds it here).
func (p *Path) forgetPrepared(in *esp.Inbound) {
	p.pending.mu.Lock()
	defer p.pending.mu.Unlock()
	for i := range p.pending.slots {
		if pi := p.pending.slots[i].Load(); pi == nil || pi.in != in {
			continue
		}
		for j := i; j < pendingInbound-1; j++ {
			p.pending.slots[j].Store(p.pending.slots[j+1].Load())
		}
		p.pending.slots[pendingInbound-1].Store(nil)
		return
	}
}

func sameKeys(a, b esp.Keys) bool {
	return a.SPI == b.SPI && a.Alg == b.Alg && bytes.Equal(a.EncKey, b.EncKey) && bytes.Equal(a.AuthKey, b.AuthKey)
}

func cloneKeys(k esp.Keys) esp.Keys {
	k.EncKey, k.AuthKey = clone(k.EncKey), clone(k.AuthKey)
	return k
}
