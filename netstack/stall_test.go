package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

const testHeadroom = 16

// segment builds an IPv4/TCP packet from src:sport to dst:dport with a
// valid checksum; tsval != 0 adds a timestamps option (NOP NOP TS, as
// gVisor and Linux send it).
func segment(src, dst [4]byte, sport, dport uint16, seq, ack uint32, flags header.TCPFlags, tsval uint32, payload []byte) []byte {
	optLen := 0
	if tsval != 0 {
		optLen = 12
	}
	thl := header.TCPMinimumSize + optLen
	pkt := make([]byte, header.IPv4MinimumSize+thl+len(payload))
	ip := header.IPv4(pkt)
	s, d := tcpip.AddrFrom4(src), tcpip.AddrFrom4(dst)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: s, DstAddr: d})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(pkt[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, SeqNum: seq, AckNum: ack, DataOffset: uint8(thl), Flags: flags, WindowSize: 65535})
	if tsval != 0 {
		o := tcp[header.TCPMinimumSize:]
		o[0], o[1], o[2], o[3] = header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionTS, header.TCPOptionTSLength
		binary.BigEndian.PutUint32(o[4:], tsval)
		binary.BigEndian.PutUint32(o[8:], 7)
	}
	copy(tcp[thl:], payload)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, s, d, uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, sum))
	return pkt
}

var (
	local  = [4]byte{10, 0, 0, 1}
	remote = [4]byte{10, 0, 0, 2}
)

// probeRig is a prober with a counting buffer pool, fed like the link
// feeds it.
type probeRig struct {
	t    *testing.T
	p    *stallProber
	outs atomic.Int64 // buffers handed out and not yet given back
}

func newProbeRig(t *testing.T) *probeRig {
	r := &probeRig{t: t}
	get := func(size int) *[]byte {
		r.outs.Add(1)
		b := make([]byte, testHeadroom+size, testHeadroom+size+32)
		return &b
	}
	put := func(*[]byte) { r.outs.Add(-1) }
	r.p = newStallProber(get, put, testHeadroom)
	return r
}

// send feeds outbound packets to the prober as one batch.
func (r *probeRig) send(pkts ...[]byte) bool {
	bps := make([]*[]byte, len(pkts))
	for i, p := range pkts {
		b := append(make([]byte, testHeadroom), p...)
		bps[i] = &b
	}
	return r.p.sent(bps)
}

// data is the outbound data segment [seq, seq+len(payload)) of the test flow.
func data(seq, tsval uint32, payload []byte) []byte {
	return segment(local, remote, 40000, 80, seq, 1, header.TCPFlagAck|header.TCPFlagPsh, tsval, payload)
}

// ackIn is the peer's ACK of the test flow up to ack.
func ackIn(ack uint32) []byte {
	return segment(remote, local, 80, 40000, 1, ack, header.TCPFlagAck, 0, nil)
}

// expire runs the prober's timer work and returns the probes' packets
// (the rig's buffers given back, as emit would).
func (r *probeRig) expire() ([][]byte, time.Duration) {
	bps, next := r.p.expire(nil)
	var out [][]byte
	for _, bp := range bps {
		out = append(out, bytes.Clone((*bp)[testHeadroom:]))
		r.outs.Add(-1)
	}
	return out, next
}

func seqOf(t *testing.T, pkt []byte) uint32 {
	t.Helper()
	_, tcp, ok := parseTCPv4(pkt)
	if !ok {
		t.Fatalf("probe is not a TCP segment: % x", pkt)
	}
	return tcp.SequenceNumber()
}

// TestStallProbeSendsSegmentAtUna: after a silence the probe is a copy of
// the segment the cumulative ACK stands at, restamped with the flow's
// latest acknowledgment and timestamps and a valid checksum; it comes probeFloor after the
// last sign of life, then backs off, and stops after maxProbes.
func TestStallProbeSendsSegmentAtUna(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newProbeRig(t)
		p1, p2, p3 := bytes.Repeat([]byte{1}, 1000), bytes.Repeat([]byte{2}, 1000), bytes.Repeat([]byte{3}, 1000)
		if !r.send(data(100, 5000, p1), data(1100, 5001, p2), data(2100, 5002, p3)) {
			t.Fatal("sent reported no data")
		}
		// A pure ACK of ours after them: the latest acknowledgment (77)
		// and timestamp (5003) the probe must carry.
		r.send(segment(local, remote, 40000, 80, 3100, 77, header.TCPFlagAck, 5003, nil))
		r.p.heard(ackIn(1100)) // the first arrived; the second is the hole
		if got, next := r.expire(); len(got) != 0 || next <= 0 || next > probeFloor+time.Millisecond {
			t.Fatalf("probe before any silence: %d probes, next in %v", len(got), next)
		}
		var times []time.Duration
		start := time.Now()
		for range maxProbes + 2 {
			time.Sleep(time.Second)
			got, _ := r.expire()
			if len(got) == 0 {
				continue
			}
			times = append(times, time.Since(start))
			pr := got[0]
			if s := seqOf(t, pr); s != 1100 {
				t.Fatalf("probe at seq %d, want the hole at 1100", s)
			}
			_, tcp, _ := parseTCPv4(pr)
			if !bytes.Equal(tcp.Payload(), p2) {
				t.Fatal("probe payload is not the segment's")
			}
			if o := tsOption(tcp); o < 0 || binary.BigEndian.Uint32(tcp[o:]) != 5003 || tcp.AckNumber() != 77 {
				t.Fatalf("probe not restamped with the latest TSval (5003) and ACK (77): %d", tcp.AckNumber())
			}
			ip := header.IPv4(pr)
			if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(tcp.Payload(), 0), uint16(len(tcp.Payload()))) {
				t.Fatal("probe's TCP checksum is wrong")
			}
		}
		if len(times) != maxProbes {
			t.Fatalf("%d probes without an answer, want %d (at %v)", len(times), maxProbes, times)
		}
		// A cumulative ACK that moves is progress: probing starts again.
		r.p.heard(ackIn(2100))
		time.Sleep(time.Second)
		got, _ := r.expire()
		if len(got) != 1 || seqOf(t, got[0]) != 2100 {
			t.Fatalf("after progress: %d probes, want one at 2100", len(got))
		}
		// All acknowledged: copies given back, no probes, flow forgotten
		// after flowIdle.
		r.p.heard(ackIn(3100))
		time.Sleep(time.Millisecond)
		if got, _ := r.expire(); len(got) != 0 {
			t.Fatalf("%d probes with nothing in flight", len(got))
		}
		if r.p.kept != 0 || r.outs.Load() != 0 {
			t.Fatalf("after the last ACK: %d bytes kept, %d buffers out", r.p.kept, r.outs.Load())
		}
		time.Sleep(flowIdle)
		if _, next := r.expire(); next != 0 || r.p.n.Load() != 0 {
			t.Fatalf("idle flow not forgotten: %d flows, next %v", r.p.n.Load(), next)
		}
	})
}

// TestStallProbeTail: with nothing acknowledged past the last segment's
// start (its ACK lost), the probe is the segment spanning una; with una in
// a gap nothing was kept for, the latest one (a tail-loss probe).
func TestStallProbeTail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newProbeRig(t)
		r.send(data(100, 0, make([]byte, 500)), data(600, 0, make([]byte, 500)))
		r.p.heard(ackIn(800)) // inside the second segment
		time.Sleep(probeFloor + delAckAllowance + time.Millisecond)
		got, _ := r.expire()
		if len(got) != 1 || seqOf(t, got[0]) != 600 {
			t.Fatalf("want one probe at 600 (spans una 800), got %d", len(got))
		}
	})
}

// TestStallProbeAnswerWithoutProgress: duplicate ACKs that do not move the
// cumulative ACK do not restart probing (a receiver that discards the
// probe must not be probed for ever).
func TestStallProbeAnswerWithoutProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newProbeRig(t)
		r.send(data(100, 0, make([]byte, 500)))
		n := 0
		for range 50 {
			time.Sleep(time.Second)
			got, _ := r.expire()
			n += len(got)
			r.p.heard(ackIn(100)) // a duplicate ACK answers each probe
		}
		if n != maxProbes {
			t.Fatalf("%d probes, want %d", n, maxProbes)
		}
	})
}

// TestStallProbeRTT: the wait grows with the flow's measured RTT (probeFloor
// + 2 x SRTT, + delAckAllowance for a single segment in flight).
func TestStallProbeRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newProbeRig(t)
		const rtt = 40 * time.Millisecond
		seq := uint32(100)
		for range 20 { // one segment per round trip, each acknowledged
			r.send(data(seq, 0, make([]byte, 100)))
			time.Sleep(rtt)
			seq += 100
			r.p.heard(ackIn(seq))
			r.expire()
		}
		if got := time.Duration(r.p.flows[flowKey{local, remote, 40000, 80}].srtt); got != rtt {
			t.Fatalf("srtt %v, want %v", got, rtt)
		}
		r.send(data(seq, 0, make([]byte, 100)), data(seq+100, 0, make([]byte, 100)))
		time.Sleep(probeFloor + 2*rtt - time.Millisecond)
		if got, _ := r.expire(); len(got) != 0 {
			t.Fatal("probed before probeFloor + 2 x SRTT")
		}
		time.Sleep(time.Millisecond)
		if got, _ := r.expire(); len(got) != 1 {
			t.Fatalf("%d probes at probeFloor + 2 x SRTT, want 1", len(got))
		}
		r.p.heard(ackIn(seq + 100)) // progress; one segment left in flight
		time.Sleep(probeFloor + 2*rtt + delAckAllowance - time.Millisecond)
		if got, _ := r.expire(); len(got) != 0 {
			t.Fatal("probed a single segment before its delayed ACK was due")
		}
		time.Sleep(time.Millisecond)
		if got, _ := r.expire(); len(got) != 1 || seqOf(t, got[0]) != seq+100 {
			t.Fatalf("%d probes for the single segment, want 1", len(got))
		}
	})
}

// TestStallProbeBounds: a reset forgets the flow and gives its copies back;
// past maxStallBytes new segments are not kept.
func TestStallProbeBounds(t *testing.T) {
	r := newProbeRig(t)
	seg := make([]byte, 1400)
	n := maxStallBytes/(len(seg)+40) + 10
	seq := uint32(1)
	for range n {
		r.send(data(seq, 0, seg))
		seq += uint32(len(seg))
	}
	if r.p.kept > maxStallBytes || r.p.kept < maxStallBytes-2*1500 {
		t.Fatalf("kept %d bytes, want at most and close to %d", r.p.kept, maxStallBytes)
	}
	r.send(segment(local, remote, 40000, 80, seq, 1, header.TCPFlagRst|header.TCPFlagAck, 0, nil))
	if r.p.kept != 0 || r.outs.Load() != 0 || r.p.n.Load() != 0 {
		t.Fatalf("after RST: %d bytes kept, %d buffers out, %d flows", r.p.kept, r.outs.Load(), r.p.n.Load())
	}
}

// TestStallProbeForgetsDeadFlows: a flow the peer reset, and one silent
// with data in flight for flowDead (its connection gone), are forgotten
// with their copies.
func TestStallProbeForgetsDeadFlows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newProbeRig(t)
		r.send(data(100, 0, make([]byte, 500)))
		r.send(segment(local, remote, 40001, 80, 1, 1, header.TCPFlagAck, 0, make([]byte, 500)))
		r.p.heard(segment(remote, local, 80, 40001, 1, 0, header.TCPFlagRst, 0, nil))
		r.expire()
		if r.p.n.Load() != 1 {
			t.Fatalf("%d flows after one was reset, want 1", r.p.n.Load())
		}
		time.Sleep(flowDead)
		if _, next := r.expire(); r.p.n.Load() != 0 || next != 0 || r.p.kept != 0 || r.outs.Load() != 0 {
			t.Fatalf("after flowDead: %d flows, next %v, %d bytes kept, %d buffers out", r.p.n.Load(), next, r.p.kept, r.outs.Load())
		}
	})
}

// TestStallProbeSYN: a SYN is probed once a flow has measured the path's
// RTT (probeFloor + 2 x that RTT + delAckAllowance after it), never
// before, and not after the SYN-ACK.
func TestStallProbeSYN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newProbeRig(t)
		syn := func(sport uint16) []byte {
			return segment(local, remote, sport, 80, 1000, 0, header.TCPFlagSyn, 9, nil)
		}
		synAck := func(sport uint16) []byte {
			return segment(remote, local, 80, sport, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0, nil)
		}
		r.send(syn(50000))
		if r.p.n.Load() != 0 {
			t.Fatal("a SYN tracked before the path's RTT is known")
		}
		const rtt = 20 * time.Millisecond
		r.send(data(100, 0, make([]byte, 100)))
		time.Sleep(rtt)
		r.p.heard(ackIn(200))
		r.expire()
		r.send(syn(50001))
		time.Sleep(probeFloor + 2*rtt + delAckAllowance - time.Millisecond)
		if got, _ := r.expire(); len(got) != 0 {
			t.Fatal("SYN probed too early")
		}
		time.Sleep(time.Millisecond)
		got, _ := r.expire()
		if len(got) != 1 {
			t.Fatalf("%d probes for the lost SYN, want 1", len(got))
		}
		if _, tcp, _ := parseTCPv4(got[0]); !tcp.Flags().Contains(header.TCPFlagSyn) || tcp.SequenceNumber() != 1000 {
			t.Fatalf("probe is not the SYN: %v seq %d", tcp.Flags(), tcp.SequenceNumber())
		}
		r.p.heard(synAck(50001))
		time.Sleep(time.Second)
		if got, _ := r.expire(); len(got) != 0 {
			t.Fatal("SYN probed after its SYN-ACK")
		}
		// A SYN-ACK we send (we are the server) is not tracked.
		n := r.p.n.Load()
		r.send(segment(local, remote, 80, 50002, 7000, 1, header.TCPFlagSyn|header.TCPFlagAck, 0, nil))
		if r.p.n.Load() != n {
			t.Fatal("our SYN-ACK was tracked")
		}
	})
}

// FuzzStallProber: whatever the stack sends and the peer answers, the
// prober does not panic, keeps its accounting, and every probe is a TCP
// segment it was given.
func FuzzStallProber(f *testing.F) {
	f.Add(data(100, 9, []byte("hello")), ackIn(102), uint8(3))
	f.Add(segment(local, remote, 1, 2, 0xfffffff0, 0, header.TCPFlagAck, 0, make([]byte, 40)), ackIn(5), uint8(0))
	f.Fuzz(func(t *testing.T, out, in []byte, steps uint8) {
		synctest.Test(t, func(t *testing.T) {
			r := newProbeRig(t)
			for i := range int(steps%8) + 1 {
				pkt := bytes.Clone(out)
				if len(pkt) >= header.IPv4MinimumSize+header.TCPMinimumSize && i%2 == 1 {
					binary.BigEndian.PutUint32(pkt[header.IPv4MinimumSize+4:], binary.BigEndian.Uint32(pkt[header.IPv4MinimumSize+4:])+uint32(i)*1000)
				}
				r.send(pkt)
				r.p.heard(in)
				time.Sleep(probeFloor << i)
				got, _ := r.expire()
				for _, g := range got {
					if _, _, ok := parseTCPv4(g); !ok {
						t.Fatalf("probe is not a TCP segment")
					}
				}
			}
			sum := 0
			for _, fl := range r.p.flows {
				for _, s := range fl.inflight {
					sum += len(*s.pkt) - testHeadroom
				}
			}
			if sum != r.p.kept || int64(len(r.p.flows)) != int64(r.p.n.Load()) {
				t.Fatalf("kept %d, copies %d; flows %d, n %d", r.p.kept, sum, len(r.p.flows), r.p.n.Load())
			}
			r.p.forgetAll()
			if r.outs.Load() != 0 {
				t.Fatalf("%d buffers not given back", r.outs.Load())
			}
		})
	})
}

// TestStallProbeRepairsTail: two real stacks; after a bulk transfer, the
// last segment (written alone, after the bulk has arrived) and its first
// retransmission are lost. Without stall probes gVisor waits for its RTO
// (with one segment in flight its tail-loss probe waits as long); with
// them the transfer ends without one. It retries a few times: a CPU stall
// longer than the 200 ms RTO on a loaded machine fires the RTO whatever
// the probes do.
func TestStallProbeRepairsTail(t *testing.T) {
	run := func(noProbes bool) TCPStats {
		marker := bytes.Repeat([]byte{0xee}, 64)
		var dropped atomic.Int32
		dropTail := func(buf []byte, headroom int, next func([]byte) error) error {
			pkt := buf[headroom:]
			if _, tcp, ok := parseTCPv4(pkt); ok && bytes.Equal(tcp.Payload(), marker) && dropped.Add(1) <= 2 {
				return nil
			}
			return next(pkt)
		}
		ca, cb := cfgA(), cfgB()
		ca.NoStallProbes, cb.NoStallProbes = noProbes, noProbes
		a, b := pairWith(t, ca, cb, dropTail, nil)
		ln, err := b.ListenTCP(netip.AddrPortFrom(netip.IPv4Unspecified(), 8080))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		bulk := randBytes(t, 256<<10)
		bulkIn := make(chan struct{})
		var wg sync.WaitGroup
		var got []byte
		wg.Go(func() {
			defer close(bulkIn)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			got = make([]byte, len(bulk))
			if _, err := io.ReadFull(c, got); err != nil {
				return
			}
			bulkIn <- struct{}{}
			rest, _ := io.ReadAll(c)
			got = append(got, rest...)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := a.DialContext(ctx, "tcp", netip.AddrPortFrom(addrB, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(bulk); err != nil {
			t.Fatal(err)
		}
		<-bulkIn
		if _, err := c.Write(marker); err != nil {
			t.Fatal(err)
		}
		c.(closeWriter).CloseWrite()
		wg.Wait()
		if want := append(bulk, marker...); !bytes.Equal(got, want) {
			t.Fatalf("received %d bytes, want %d intact", len(got), len(want))
		}
		if dropped.Load() < 3 {
			t.Fatalf("the tail was sent %d times; the test needs two drops and a repair", dropped.Load())
		}
		return a.TCPStats()
	}
	if s := run(true); s.Timeouts == 0 {
		t.Fatalf("without probes the tail was repaired without an RTO (%+v): the test does not test the probes", s)
	}
	var s TCPStats
	for range 3 {
		if s = run(false); s.Timeouts == 0 && s.StallProbes > 0 {
			return
		}
	}
	t.Fatalf("with probes: %d RTOs, %d probes, want 0 and at least 1", s.Timeouts, s.StallProbes)
}
