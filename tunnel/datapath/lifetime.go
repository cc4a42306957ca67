package datapath

import (
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// byteLife counts the bytes one SA pair protected against the pair's
// lifetime in kilobytes (RFC 2407 §4.5 SA Life Type 2): each SA, inbound
// and outbound, may protect at most limit bytes. Datagram sizes are
// counted (ESP header, IV, padding and ICV included): more than the
// kernel counts, and more than RFC 4301 §4.4.2.1 asks to (the bytes the
// cipher is applied to), so we are early rather than late.
//
// Soft limit: the owner is asked to rekey (Config.BytesLow) at 90 % of the
// limit, or earlier when the rate the SA is used at would carry it past
// the limit during a rekey (the rate, times twice the time the last
// rekeys took: hold.go measures it), then again every 2 % until a new
// pair takes over. The rate is measured over windows at least as long as
// a rekey: over shorter ones it is the rate of one burst (a TCP stack
// sends 64 KiB at once), which a rekey's duration averages out. Until the
// first window is complete, the bytes so far count as sent in one rekey's
// time.
//
// Hard limit, outbound: the SA seals nothing past it (esp.Outbound's byte
// limit); senders are held until the new SA is current (hold.go).
//
// Hard limit, inbound: none of ours. A packet the server sent on an SA past
// the limit by our count is opened and counted: RFC 4301 §4.4.2.1 has the
// count be of the bytes the cipher is applied to, fewer than our datagram
// count, so a server that enforces its own outbound limit by its own count
// may rightly send past ours, and dropping there would lose packets sent
// within the SA's lifetime. At its lifetime's end an SA is "replaced with
// a new SA ... or terminated" (ibid.): we replace it, and keep it for the
// late packets until the rekey is complete.
type byteLife struct {
	inSPI, outSPI uint32
	limit, soft   uint64
	step          uint64 // 2 % of the limit: asks and rate measurements
	tx, rx        lifeCount
}

// lifeCount is one direction's count.
type lifeCount struct {
	bytes atomic.Uint64
	next  atomic.Uint64 // the count of the next check
	asked atomic.Bool   // asked already: ask at every check from now on
	// The rate window: it began at winAt (unix ns) with winBytes counted;
	// rate is the last complete window's (bytes per second, 0: none yet).
	winAt    atomic.Int64
	winBytes atomic.Uint64
	rate     atomic.Uint64
}

// softLifeShare is the share of a byte lifetime after which we rekey at
// the latest (tenths), as for time lifetimes (ike: 90 %).
const softLifeShare = 9

// SetByteLifetime limits the SA pair with these SPIs (installed by
// InstallSA or InstallSAPeerMayLag just before) to bytes per SA; 0 removes
// the limit. BytesLow is called when it runs low; the outbound SA seals
// nothing past it.
func (p *Path) SetByteLifetime(inSPI, outSPI uint32, bytes uint64) {
	for _, o := range [...]*esp.Outbound{p.nextOut.Load(), p.out.Load()} {
		if o != nil && o.SPI() == outSPI {
			o.SetByteLimit(bytes)
			break
		}
	}
	if bytes == 0 {
		p.life.Store(nil)
		return
	}
	l := &byteLife{inSPI: inSPI, outSPI: outSPI, limit: bytes, soft: bytes / 10 * softLifeShare, step: max(bytes/50, 1)}
	now := p.now().UnixNano()
	for _, c := range [...]*lifeCount{&l.tx, &l.rx} {
		c.next.Store(l.step)
		c.winAt.Store(now)
	}
	p.life.Store(l)
}

// countTx counts n bytes sealed with the outbound SA spi.
func (p *Path) countTx(spi uint32, n int) {
	if l := p.life.Load(); l != nil && l.outSPI == spi && p.due(l, &l.tx, n) {
		p.askRekey(spi, p.cfg.BytesLow)
	}
}

// countRx counts n bytes opened with the inbound SA spi.
func (p *Path) countRx(spi uint32, n int) {
	if l := p.life.Load(); l != nil && l.inSPI == spi && p.due(l, &l.rx, n) {
		p.askRekey(l.outSPI, p.cfg.BytesLow)
	}
}

// due adds n to c and tells whether to ask for a rekey now. It decides at
// each step (one caller per step: the one that crosses it).
func (p *Path) due(l *byteLife, c *lifeCount, n int) bool {
	v := c.bytes.Add(uint64(n))
	for {
		at := c.next.Load()
		if v < at {
			return false
		}
		if c.next.CompareAndSwap(at, v+l.step) {
			break
		}
	}
	if c.asked.Load() || v >= l.soft {
		c.asked.Store(true)
		return true
	}
	// Bytes the SA would carry while a rekey runs, with a margin of 2: at
	// the limit, senders wait.
	rekey := p.rekeyTime()
	now := p.now().UnixNano()
	elapsed := time.Duration(now - c.winAt.Load())
	inWin := float64(v - c.winBytes.Load())
	if elapsed >= rekey {
		c.rate.Store(uint64(inWin / elapsed.Seconds()))
		c.winAt.Store(now)
		c.winBytes.Store(v)
	}
	rate := max(float64(c.rate.Load()), inWin/max(elapsed, rekey).Seconds())
	if during := 2 * rate * rekey.Seconds(); float64(v)+during >= float64(l.limit) {
		c.asked.Store(true)
		return true
	}
	return false
}
