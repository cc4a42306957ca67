package netstack

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Stall probes: the link keeps a copy of each TCP segment in flight and,
// when a connection with data in flight falls silent, sends the segment at
// the cumulative ACK point again, long before gVisor's retransmission
// timeout would.
//
// Through a lossy path gVisor's sender (this version and master) waits for
// its 200 ms RTO where Linux's recovers within a round trip (README,
// Performance, "Loss"). It schedules no tail-loss probe during SACK
// recovery, and RACK cannot declare a retransmission lost until a
// later-sent segment is acknowledged, so when the retransmission of a hole
// (or its ACK) is lost and nothing later is sent, the connection waits for
// the RTO; with several holes in a row it often leaves the next one alone
// after the first is repaired, and waits an RTO for each (seen against
// Linux: one segment per 200 ms). In the Open state it sends one probe, so
// losing a burst's last ACK and then the probe or the probe's ACK waits
// too. Each RTO also takes the window down to one segment.
//
// All of these are silence: data outstanding, and for a while nothing sent
// and nothing heard. The segment that starts at (or spans) the cumulative
// ACK point is then what the receiver lacks, or, if everything arrived and
// only ACKs were lost, a duplicate; either way the receiver acknowledges
// it at once (RFC 9293 §3.10.7.4; Linux and gVisor do, in any delayed-ACK
// state, a duplicate with a DSACK block, RFC 2883), and gVisor takes that
// ACK like any other: a cumulative one ends its recovery or its wait, SACK
// blocks show RACK what is still missing.
//
// A connection's SYN is covered the same way once some connection has
// measured the path's RTT: a lost SYN or SYN-ACK then costs tens of
// milliseconds, not the stack's 1 s initial RTO (a server answers a
// duplicate SYN with its SYN-ACK again: Linux's tcp_check_req, gVisor's
// synRcvdState).
//
// The probe is a copy of a packet gVisor sent, with the flow's latest
// acknowledgment, window and timestamps (see restamp), and gVisor never
// learns of it. It goes out probeFloor + 2 x the flow's smoothed RTT after
// the last sign of life (RFC 8985 §7.2's probe timeout, so after gVisor's
// own probe where it sends one), doubling while unanswered; after
// maxProbes without the cumulative ACK moving the prober waits for the
// flow to send again, so a peer that has gone away costs a few packets per
// RTO, and the RTO remains the sender's last resort. The copies cost
// one memory copy per segment sent and at most maxStallBytes in all (past
// that, new segments are not kept and their losses wait for the RTO).
//
// Concurrency: the out goroutine owns the table and the flows; the inbound
// path reads the table under the read lock and writes only a flow's atomic
// fields. The write lock is taken to add or remove a flow.
type stallProber struct {
	get      func(size int) *[]byte // a buffer of len headroom+size (linkEndpoint.getBuf)
	put      func(*[]byte)          // gives it back (linkEndpoint.release)
	headroom int
	start    time.Time

	mu    sync.RWMutex // guards flows (written by the out goroutine only)
	flows map[flowKey]*flow
	n     atomic.Int32 // len(flows), read by the inbound path without the lock

	kept int // bytes of segments kept, all flows
	// pathSRTT is the latest smoothed RTT of any flow: every flow takes
	// the same path (the tunnel), so it is where a new flow's starts
	// (RFC 2140's sharing of RTT state between connections to a host),
	// and what lets a lost SYN be repaired long before the stack's 1 s
	// initial RTO (RFC 6298 §2.1). 0 until a flow has measured one;
	// until then SYNs are left to the stack.
	pathSRTT int64
	probed   atomic.Uint64
}

const (
	// probeFloor is the least silence before a probe, on top of 2 x
	// SRTT. In-process (1 ms RTT), through 5 % loss each way
	// (BenchmarkLossy, 16 MiB, 2 transfers each way, 2026-12-04, this
	// code with the floor varied): 1 ms gave 32.1 / 33.6 MB/s down / up
	// with 46 / 49 probes per transfer, 2 ms 29.3 / 29.9 (30 / 44), 5 ms
	// 24.5 / 25.2 (20 / 21), 10 ms 22.8 / 24.1 (17 / 14), all without an
	// RTO; no probes 3.5-4.6 / 1.6-3.8 MB/s with 14-20 RTOs. A spurious
	// probe costs a duplicate segment and its ACK; 2 ms keeps them few.
	probeFloor = 2 * time.Millisecond
	// delAckAllowance is added to the wait while one segment is in
	// flight, whose ACK a receiver may delay (RFC 8985 §7.2 adds its
	// worst case, 200 ms; this is Linux's least delayed-ACK time, for a
	// wait as long as gVisor's RTO would make the probe useless): a
	// request that the server takes a while to answer costs at most one
	// duplicate segment.
	delAckAllowance = 40 * time.Millisecond
	// maxProbes per silence without progress: the waits double, so with
	// a short RTT and several segments in flight 4 probes (2, 4, 8,
	// 16 ms) all go before the 200 ms minimum RTO.
	maxProbes = 4
	// maxStallBytes bounds the copies kept, all flows together: the data
	// in flight of a few fast uploads.
	maxStallBytes = 16 << 20
	// flowIdle: a flow with everything acknowledged and no traffic for
	// this long is forgotten (so the inbound path has nothing to look up
	// while nothing is being sent).
	flowIdle = time.Second
	// flowDead: a flow with data in flight that has neither sent nor
	// heard anything for this long is forgotten with its copies: its
	// connection is gone (a live sender retransmits at least every
	// tcpMaxRTO).
	flowDead = 2*tcpMaxRTO + time.Minute
)

// flowKey names a TCP connection by its outbound IPv4 4-tuple.
type flowKey struct {
	src, dst     [4]byte
	sport, dport uint16
}

// flow is what the prober knows of one connection's sending side.
type flow struct {
	// Written by the inbound path (one goroutine at a time), read by the
	// out goroutine.
	una       atomic.Uint32 // highest cumulative ACK heard
	heardAt   atomic.Int64  // when the flow's last segment arrived (ns since start)
	reset     atomic.Bool   // the peer sent a RST: forget the flow
	rttSeq    atomic.Uint32 // the timed segment ends here...
	rttAt     atomic.Int64  // ...and was sent then; 0: nothing timed (out goroutine sets, inbound clears)
	rttSample atomic.Int64  // a round trip measured by the inbound path, 0 once taken

	// Owned by the out goroutine.
	nxt      uint32    // end of the highest data (or FIN) sent
	sentAt   int64     // when the last data segment was sent
	inflight []keptSeg // copies of the segments not yet acknowledged, in sequence order
	probes   int       // probes sent since the cumulative ACK last moved
	probeUna uint32    // the cumulative ACK when the first of them was sent
	probeAt  int64     // when the last one was sent
	srtt     int64     // smoothed RTT (ns), 0 until measured
	// Of the latest segment sent: its acknowledgment number and window,
	// and its timestamps (TSval, TSecr) if it had them.
	ack   [4]byte
	win   [2]byte
	ts    [8]byte
	hasTS bool
}

// keptSeg is a copy of one TCP segment sent: its IPv4 packet and the
// sequence space its payload (and SYN or FIN) take.
type keptSeg struct {
	seq, end uint32
	pkt      *[]byte // from get; (*pkt)[headroom:] is the packet
}

func newStallProber(get func(int) *[]byte, put func(*[]byte), headroom int) *stallProber {
	return &stallProber{get: get, put: put, headroom: headroom, start: time.Now(), flows: make(map[flowKey]*flow)}
}

// now is the time in ns since the prober started, never 0 (0 marks
// "nothing timed" in flow.rttAt).
func (p *stallProber) now() int64 { return int64(time.Since(p.start)) + 1 }

// parseTCPv4 returns pkt's IPv4 header length and its TCP segment (header
// and payload), or ok false if pkt is not a whole IPv4 TCP segment.
func parseTCPv4(pkt []byte) (hl int, tcp header.TCP, ok bool) {
	if len(pkt) < header.IPv4MinimumSize || header.IPVersion(pkt) != header.IPv4Version {
		return 0, nil, false
	}
	ip := header.IPv4(pkt)
	hl, tl := int(ip.HeaderLength()), int(ip.TotalLength())
	if ip.Protocol() != uint8(header.TCPProtocolNumber) || hl < header.IPv4MinimumSize || tl > len(pkt) ||
		tl < hl+header.TCPMinimumSize || ip.More() || ip.FragmentOffset() != 0 {
		return 0, nil, false
	}
	tcp = header.TCP(pkt[hl:tl])
	if off := int(tcp.DataOffset()); off < header.TCPMinimumSize || off > len(tcp) {
		return 0, nil, false
	}
	return hl, tcp, true
}

// heard takes note of an inbound IPv4 packet: if it is a segment of a
// tracked flow, of its ACK. Called by the inbound path, one goroutine at a
// time; it costs one atomic load while no flow is tracked.
func (p *stallProber) heard(pkt []byte) {
	if p.n.Load() == 0 {
		return
	}
	_, tcp, ok := parseTCPv4(pkt)
	if !ok || !tcp.Flags().Intersects(header.TCPFlagAck|header.TCPFlagRst) {
		return
	}
	ip := header.IPv4(pkt)
	k := flowKey{sport: tcp.DestinationPort(), dport: tcp.SourcePort()}
	copy(k.src[:], ip.DestinationAddressSlice())
	copy(k.dst[:], ip.SourceAddressSlice())
	p.mu.RLock()
	f := p.flows[k]
	p.mu.RUnlock()
	if f == nil {
		return
	}
	now := p.now()
	if tcp.Flags().Contains(header.TCPFlagRst) {
		f.reset.Store(true)
		return
	}
	if ack := tcp.AckNumber(); seqAfter(ack, f.una.Load()) {
		f.una.Store(ack)
		if at := f.rttAt.Load(); at != 0 && !seqAfter(f.rttSeq.Load(), ack) && f.rttAt.CompareAndSwap(at, 0) {
			f.rttSample.Store(max(now-at, 1))
		}
	}
	f.heardAt.Store(now)
}

// sent takes note of one batch of outbound packets (each after headroom
// bytes) before the tunnel encrypts them in place. It reports whether the
// batch held TCP data or a FIN, so that expire is due within probeFloor.
func (p *stallProber) sent(bps []*[]byte) (data bool) {
	now := p.now()
	for _, bp := range bps {
		pkt := (*bp)[p.headroom:]
		hl, tcp, ok := parseTCPv4(pkt)
		if !ok {
			continue
		}
		ip := header.IPv4(pkt)
		var k flowKey
		copy(k.src[:], ip.SourceAddressSlice())
		copy(k.dst[:], ip.DestinationAddressSlice())
		k.sport, k.dport = tcp.SourcePort(), tcp.DestinationPort()
		if tcp.Flags().Contains(header.TCPFlagRst) {
			p.forget(k)
			continue
		}
		// The sequence space the segment takes: its payload, a SYN and a
		// FIN (RFC 9293 §3.4). Pure ACKs take none and need no repair.
		flags := tcp.Flags()
		n := len(tcp) - int(tcp.DataOffset())
		if flags.Contains(header.TCPFlagFin) {
			n++
		}
		f := p.flows[k]
		if f != nil {
			f.noteLatest(tcp)
		}
		if flags.Contains(header.TCPFlagSyn) {
			// Our SYN, once the path's RTT is known (see pathSRTT); a
			// SYN-ACK is asked for again by the peer's SYN.
			if flags.Contains(header.TCPFlagAck) || p.pathSRTT == 0 {
				continue
			}
			n++
		}
		if n == 0 {
			continue
		}
		seq := tcp.SequenceNumber()
		end := seq + uint32(n)
		if f == nil {
			f = &flow{nxt: seq, srtt: p.pathSRTT}
			f.una.Store(seq)
			p.mu.Lock()
			p.flows[k] = f
			p.mu.Unlock()
			p.n.Add(1)
			f.noteLatest(tcp)
		}
		p.trim(f)
		f.sentAt = now
		data = true
		if !seqAfter(end, f.nxt) {
			// A retransmission: its copy is kept already (or was not
			// kept for want of room).
			if !seqAfter(seq, f.rttSeq.Load()) {
				f.rttAt.Store(0) // the timed segment sent again: no sample (Karn, RFC 6298 §3)
			}
			continue
		}
		if f.rttAt.Load() == 0 {
			f.rttSeq.Store(end)
			f.rttAt.Store(now)
		}
		l := hl + len(tcp)
		if p.kept+l <= maxStallBytes {
			c := p.get(l)
			copy((*c)[p.headroom:], pkt[:l])
			f.inflight = append(f.inflight, keptSeg{seq: seq, end: end, pkt: c})
			p.kept += l
		}
		f.nxt = end
	}
	return data
}

// trim drops the copies of f's segments that the cumulative ACK covers.
func (p *stallProber) trim(f *flow) {
	una := f.una.Load()
	i := 0
	for ; i < len(f.inflight) && !seqAfter(f.inflight[i].end, una); i++ {
		p.kept -= len(*f.inflight[i].pkt) - p.headroom
		p.put(f.inflight[i].pkt)
	}
	if i > 0 {
		n := copy(f.inflight, f.inflight[i:])
		clear(f.inflight[n:])
		f.inflight = f.inflight[:n]
	}
}

// forget drops a flow and its copies.
func (p *stallProber) forget(k flowKey) {
	f, ok := p.flows[k]
	if !ok {
		return
	}
	for _, s := range f.inflight {
		p.kept -= len(*s.pkt) - p.headroom
		p.put(s.pkt)
	}
	p.mu.Lock()
	delete(p.flows, k)
	p.mu.Unlock()
	p.n.Add(-1)
}

// forgetAll drops every flow (the link is shutting down).
func (p *stallProber) forgetAll() {
	for k := range p.flows {
		p.forget(k)
	}
}

// expire looks at every flow: for each one silent past its deadline it
// appends a probe (a copy of the segment to send again, in a buffer from
// get, to be emitted like any outbound packet) to probes. It forgets
// flows idle for flowIdle and returns when it wants to run next (0:
// never, no flow is tracked).
func (p *stallProber) expire(probes []*[]byte) ([]*[]byte, time.Duration) {
	now := p.now()
	next := int64(-1)
	soonest := func(d int64) {
		if next < 0 || d < next {
			next = d
		}
	}
	for k, f := range p.flows {
		if s := f.rttSample.Swap(0); s > 0 {
			if f.srtt == 0 {
				f.srtt = s
			} else {
				f.srtt += (s - f.srtt) / 8 // RFC 6298 §2.3, alpha 1/8
			}
			p.pathSRTT = f.srtt
		}
		p.trim(f)
		una, heard := f.una.Load(), f.heardAt.Load()
		life := max(f.sentAt, heard, f.probeAt)
		if f.reset.Load() || now-life >= int64(flowDead) {
			p.forget(k)
			continue
		}
		if !seqAfter(f.nxt, una) { // everything acknowledged
			if now-life >= int64(flowIdle) {
				p.forget(k)
			} else {
				soonest(life + int64(flowIdle) - now)
			}
			continue
		}
		if f.probes > 0 && seqAfter(una, f.probeUna) {
			f.probes = 0 // progress: this is a new silence
		}
		if f.probes >= maxProbes || len(f.inflight) == 0 {
			continue // the stack's RTO (or its next send) takes over
		}
		wait := int64(probeFloor) + 2*f.srtt
		if len(f.inflight) == 1 {
			wait += int64(delAckAllowance)
		}
		wait <<= f.probes
		if due := life + wait; now < due {
			soonest(due - now)
			continue
		}
		// The kept segment spanning una (the first one after trim), or,
		// if una is in a gap we kept nothing for, the latest one.
		s := f.inflight[0]
		if seqAfter(s.seq, una) {
			s = f.inflight[len(f.inflight)-1]
		}
		src := (*s.pkt)[p.headroom:]
		c := p.get(len(src))
		copy((*c)[p.headroom:], src)
		f.restamp((*c)[p.headroom:])
		probes = append(probes, c)
		p.probed.Add(1)
		f.rttAt.Store(0) // an ACK now may answer the probe, not the segment timed (Karn)
		if f.probes == 0 {
			f.probeUna = una
		}
		f.probes++
		f.probeAt = now
		if f.probes < maxProbes {
			soonest(wait << 1)
		}
	}
	if next < 0 {
		if len(p.flows) > 0 {
			return probes, flowIdle
		}
		return probes, 0
	}
	return probes, time.Duration(max(next, 1))
}

// tsOption returns the offset in tcp of the value of its timestamps
// option (RFC 7323 §3: TSval then TSecr, 4 bytes each), or -1.
func tsOption(tcp header.TCP) int {
	opts := tcp[header.TCPMinimumSize:tcp.DataOffset()]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return -1
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return -1
		}
		if opts[i] == header.TCPOptionTS && opts[i+1] == header.TCPOptionTSLength {
			return header.TCPMinimumSize + i + 2
		}
		i += int(opts[i+1])
	}
	return -1
}

// noteLatest remembers the acknowledgment, window and timestamps of tcp,
// a segment f sends.
func (f *flow) noteLatest(tcp header.TCP) {
	copy(f.ack[:], tcp[header.TCPAckNumOffset:])
	copy(f.win[:], tcp[header.TCPWinSizeOffset:])
	if o := tsOption(tcp); o >= 0 {
		copy(f.ts[:], tcp[o:o+8])
		f.hasTS = true
	}
}

// restamp gives pkt, a copy of one of f's segments about to be sent as a
// probe, the acknowledgment, window and timestamps of f's latest segment
// (what gVisor's own retransmission would carry) and a checksum to match.
// An old TSval would get the probe discarded: a receiver drops a segment
// whose TSval is older than the newest it has taken in order (PAWS, RFC
// 7323 §5.3; Linux's window is 1 tick) and only sends a duplicate ACK. An
// old window could make the peer send past our window.
func (f *flow) restamp(pkt []byte) {
	hl, tcp, ok := parseTCPv4(pkt)
	if !ok {
		return
	}
	copy(tcp[header.TCPAckNumOffset:], f.ack[:])
	copy(tcp[header.TCPWinSizeOffset:], f.win[:])
	if o := tsOption(tcp); o >= 0 && f.hasTS {
		copy(tcp[o:o+8], f.ts[:])
	}
	ip := header.IPv4(pkt[:hl])
	tcp.SetChecksum(0)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, sum))
}

// count returns how many probes were sent (0 for a nil prober).
func (p *stallProber) count() uint64 {
	if p == nil {
		return 0
	}
	return p.probed.Load()
}

// seqAfter reports whether sequence number a is after b (RFC 9293 §3.4,
// modulo 2^32).
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }
