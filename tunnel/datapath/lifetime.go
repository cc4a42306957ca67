package datapath

import "sync/atomic"

// byteLife counts the bytes one SA pair protected against the pair's
// lifetime in kilobytes (RFC 2407 §4.5 SA Life Type 2): each SA, inbound
// and outbound, may protect at most limit bytes. From 90 % on, the owner
// is asked to rekey (Config.BytesLow), and again every 2 % after, until a
// new pair takes over. Datagram sizes are counted (ESP header, IV, padding
// and ICV included): more than the kernel counts, so we ask early rather
// than late.
type byteLife struct {
	inSPI, outSPI  uint32
	step           uint64 // how many more bytes before asking again
	tx, rx         atomic.Uint64
	nextTx, nextRx atomic.Uint64 // the count at which to ask (again)
}

// softLifeShare is the share of a byte lifetime after which we rekey
// (tenths), as for time lifetimes (ike: 90 %).
const softLifeShare = 9

// SetByteLifetime limits the SA pair with these SPIs (installed by
// InstallSA or InstallSAPeerMayLag just before) to bytes per SA; 0 removes
// the limit. BytesLow is called when it runs low.
func (p *Path) SetByteLifetime(inSPI, outSPI uint32, bytes uint64) {
	if bytes == 0 {
		p.life.Store(nil)
		return
	}
	l := &byteLife{inSPI: inSPI, outSPI: outSPI, step: max(bytes/50, 1)}
	soft := bytes / 10 * softLifeShare
	l.nextTx.Store(soft)
	l.nextRx.Store(soft)
	p.life.Store(l)
}

// countTx counts n bytes sealed with the outbound SA spi.
func (p *Path) countTx(spi uint32, n int) {
	if l := p.life.Load(); l != nil && l.outSPI == spi && l.due(&l.tx, &l.nextTx, n) && p.cfg.BytesLow != nil {
		p.cfg.BytesLow(spi)
	}
}

// countRx counts n bytes opened with the inbound SA spi.
func (p *Path) countRx(spi uint32, n int) {
	if l := p.life.Load(); l != nil && l.inSPI == spi && l.due(&l.rx, &l.nextRx, n) && p.cfg.BytesLow != nil {
		p.cfg.BytesLow(l.outSPI)
	}
}

// due adds n to count and tells whether it reached next (which then moves
// on by one step, so that one caller asks per step).
func (l *byteLife) due(count, next *atomic.Uint64, n int) bool {
	v := count.Add(uint64(n))
	for {
		at := next.Load()
		if v < at {
			return false
		}
		if next.CompareAndSwap(at, v+l.step) {
			return true
		}
	}
}
