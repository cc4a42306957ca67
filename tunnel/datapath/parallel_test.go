package datapath

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
)

// captureConn is a Conn that keeps what is written to it.
type captureConn struct{ dgs [][]byte }

func (c *captureConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (c *captureConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	c.dgs = append(c.dgs, bytes.Clone(b))
	return len(b), nil
}
func (c *captureConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4500}
}
func (c *captureConn) Close() error { return nil }

func cbcKeys(spi uint32) esp.Keys {
	k := esp.Keys{SPI: spi, Alg: esp.Algorithm{Enc: esp.EncAESCBC, EncKeyBits: 128, Auth: esp.AuthHMACSHA1},
		EncKey: make([]byte, 16), AuthKey: make([]byte, 20)}
	rand.Read(k.EncKey)
	rand.Read(k.AuthKey)
	return k
}

var (
	sessA = l2tp.Session{LocalTunnelID: 1, PeerTunnelID: 2, LocalSessionID: 3, PeerSessionID: 4}
	sessB = l2tp.Session{LocalTunnelID: 2, PeerTunnelID: 1, LocalSessionID: 4, PeerSessionID: 3}
)

// sealedIP returns n ESP datagrams from a path sealing with key, each
// carrying an IPv4 packet of size bytes numbered i in bytes 4-7.
func sealedIP(t testing.TB, key esp.Keys, n, size int) [][]byte {
	t.Helper()
	c := &captureConn{}
	a := New(Config{Conn: c, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.1"), PeerIP: netip.MustParseAddr("10.0.0.2"), LocalPort: 1701, PeerPort: 1701, NoGSO: true})
	if err := a.InstallSA(cbcKeys(0x9999), key); err != nil {
		t.Fatal(err)
	}
	a.SetPeer(netip.MustParseAddrPort("127.0.0.1:4500"))
	a.SetSession(sessA)
	for i := range n {
		buf := make([]byte, Headroom+size, Headroom+size+Tailroom)
		buf[Headroom] = 0x45
		binary.BigEndian.PutUint32(buf[Headroom+4:], uint32(i))
		if err := a.SendIP(buf, Headroom); err != nil {
			t.Fatal(err)
		}
	}
	return c.dgs
}

// receiver is a path that receives with key and collects what it delivers.
func receiver(t testing.TB, key esp.Keys) (*Path, *ipCollector) {
	t.Helper()
	b := New(Config{Conn: &captureConn{}, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.2"), PeerIP: netip.MustParseAddr("10.0.0.1"), LocalPort: 1701, PeerPort: 1701, NoGSO: true})
	if err := b.InstallSA(key, cbcKeys(0x8888)); err != nil {
		t.Fatal(err)
	}
	b.SetSession(sessB)
	sink := &ipCollector{}
	b.SetIP(sink)
	return b, sink
}

// startCrypto runs b's crypto worker until the test ends, and checks it
// stops when its context does.
func startCrypto(t testing.TB, b *Path) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.RunCrypto(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if b.worker.Load() != nil {
			t.Error("worker still registered after RunCrypto returned")
		}
	})
	// Until the worker has registered, bursts are opened on the reader
	// alone; that is correct too, but the test is about sharing them.
	for b.worker.Load() == nil {
		runtime.Gosched()
	}
}

// hostile mixes the datagrams: in order runs, reordering within 40, exact
// duplicates (in the same burst and later), forged ICVs, a truncated one.
func hostile(r *mrand.Rand, dgs [][]byte) [][]byte {
	var out [][]byte
	for i := 0; i < len(dgs); i++ {
		switch k := r.IntN(30); {
		case k == 0 && len(out) > 0:
			out = append(out, out[r.IntN(len(out))]) // duplicate
		case k == 1:
			bad := bytes.Clone(dgs[i])
			bad[len(bad)-3] ^= 4 // in the ICV
			out = append(out, bad)
		case k == 2:
			out = append(out, dgs[i][:len(dgs[i])-5]) // CBC: not whole blocks
		case k == 3 && i+40 < len(dgs):
			out = append(out, dgs[i+40])
			dgs[i+40] = dgs[i]
		default:
			out = append(out, dgs[i])
		}
	}
	return out
}

// TestParallelMatchesSerial feeds the same hostile stream to a path that
// opens each datagram on Receive and to one that Queues bursts of random
// size and shares them with its crypto worker: both must deliver the same
// IP packets in the same order and count the same drops.
func TestParallelMatchesSerial(t *testing.T) {
	for name, keys := range map[string]func(uint32) esp.Keys{"cbc-sha1": cbcKeys, "gcm": gcmKeys} {
		t.Run(name, func(t *testing.T) {
			key := keys(0x1234)
			r := mrand.New(mrand.NewPCG(1, 2))
			stream := hostile(r, sealedIP(t, key, 3000, 200+r.IntN(1200)))

			serial, want := receiver(t, key)
			for _, dg := range stream {
				serial.Receive(bytes.Clone(dg))
			}
			serial.Flush()

			parallel, got := receiver(t, key)
			parallel.shareAEAD = true
			// Every other shared burst, the reader waits until the worker
			// has claimed a packet: both the worker that takes part and
			// the one that comes late (or never) are exercised, whatever
			// the scheduler does.
			shared := 0
			parallel.afterHandOff = func(b *rxBurst) {
				if shared++; shared%2 == 0 {
					for b.claim.Load()&0xFFFF == uint64(b.n) {
						runtime.Gosched()
					}
				}
			}
			startCrypto(t, parallel)
			for i := 0; i < len(stream); {
				n := min(1+r.IntN(100), len(stream)-i)
				for _, dg := range stream[i : i+n] {
					parallel.Queue(bytes.Clone(dg))
				}
				parallel.Flush()
				i += n
			}

			if len(got.pkts) != len(want.pkts) {
				t.Fatalf("parallel delivered %d packets, serial %d", len(got.pkts), len(want.pkts))
			}
			for i := range want.pkts {
				if !bytes.Equal(got.pkts[i], want.pkts[i]) {
					t.Fatalf("packet %d differs: parallel #%d, serial #%d", i,
						binary.BigEndian.Uint32(got.pkts[i][4:]), binary.BigEndian.Uint32(want.pkts[i][4:]))
				}
			}
			ss, ps := serial.Stats(), parallel.Stats()
			if ss.Drops != ps.Drops || ss.ESPIn != ps.ESPIn {
				t.Fatalf("stats: parallel %+v %+v, serial %+v %+v", ps.ESPIn, ps.Drops, ss.ESPIn, ss.Drops)
			}
			if ss.Drops[DropReplay] == 0 || ss.Drops[DropAuth] == 0 || name == "cbc-sha1" && ss.Drops[DropMalformed] == 0 {
				t.Fatalf("the stream lacks a kind of bad packet: drops %+v", ss.Drops)
			}
			if parallel.RxParallel.Load() == 0 {
				t.Fatal("the worker unsealed no packet")
			}
			t.Logf("%d datagrams, %d delivered, worker unsealed %d, drops %v", len(stream), len(want.pkts), parallel.RxParallel.Load(), ss.Drops)
		})
	}
}

// TestQueueWithoutWorker: with no crypto worker (never started, or
// stopped) Queue and Flush deliver everything on the reader.
func TestQueueWithoutWorker(t *testing.T) {
	key := cbcKeys(0x1234)
	dgs := sealedIP(t, key, 200, 1000)
	b, sink := receiver(t, key)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.RunCrypto(ctx) // returns at once: ctx is done
	for i, dg := range dgs {
		b.Queue(dg)
		if i%50 == 49 {
			b.Flush()
		}
	}
	if len(sink.pkts) != len(dgs) || b.RxParallel.Load() != 0 {
		t.Fatalf("%d of %d delivered, %d by a worker", len(sink.pkts), len(dgs), b.RxParallel.Load())
	}
}

// countingSink takes IP packets without keeping them (no allocation).
type countingSink struct{ n int }

func (c *countingSink) InjectInbound([]byte) error { c.n++; return nil }

func TestParallelZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	key := cbcKeys(0x1234)
	const burst, runs, warmup = 64, 50, 10
	dgs := sealedIP(t, key, burst*(runs+warmup), 1400)
	b, _ := receiver(t, key)
	sink := &countingSink{}
	b.SetIP(sink)
	b.afterHandOff = func(b *rxBurst) { // the worker takes part in every burst
		for b.claim.Load()&0xFFFF == uint64(b.n) {
			runtime.Gosched()
		}
	}
	startCrypto(t, b)
	bufs := make([][]byte, burst)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	next := 0
	run := func() {
		for i := range burst {
			n := copy(bufs[i], dgs[next])
			next++
			b.Queue(bufs[i][:n])
		}
		b.Flush()
	}
	// testing.AllocsPerRun would set GOMAXPROCS to 1, and the worker would
	// get nothing to do: count the process's allocations around the runs.
	// No allocation per packet. esp's sync.Pool of per-packet crypto state
	// may still miss now and then (an item stuck in another P's private
	// slot, a collection emptying it) and allocate a refill: seen 0-19 in
	// 3,200 packets, so the bound is one per 100 packets.
	runtime.GC()
	for range warmup {
		run()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		run()
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n > runs*burst/100 {
		t.Errorf("%d allocations in %d bursts of %d", n, runs, burst)
	}
	if sink.n != burst*(runs+warmup) || b.RxParallel.Load() == 0 {
		t.Fatalf("%d delivered (want %d), %d by the worker", sink.n, burst*(runs+warmup), b.RxParallel.Load())
	}
}

// BenchmarkReceiveBurst is the reader's time per burst of 64 datagrams of
// 1,400 bytes, opened on the reader alone (serial) or shared with the
// crypto worker (parallel): what a second core saves when it is free.
func BenchmarkReceiveBurst(b *testing.B) {
	const burst, size, pool = 64, 1400, 256
	for _, suite := range []struct {
		name string
		keys func(uint32) esp.Keys
	}{{"cbc-sha1", cbcKeys}, {"gcm", gcmKeys}} {
		for _, parallel := range []bool{false, true} {
			name := suite.name + "/serial"
			if parallel {
				name = suite.name + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				key := suite.keys(0x1234)
				dgs := sealedIP(b, key, burst*pool, size)
				p, _ := receiver(b, key)
				p.SetIP(&countingSink{})
				p.shareAEAD = true
				if parallel {
					startCrypto(b, p)
				}
				bufs := make([][]byte, burst)
				for i := range bufs {
					bufs[i] = make([]byte, 2048)
				}
				b.SetBytes(burst * size)
				b.ResetTimer()
				for i := range b.N {
					if r := i % pool; r == 0 && i > 0 {
						b.StopTimer()
						p.InstallSA(key, cbcKeys(0x8888)) // a fresh window for the same datagrams
						b.StartTimer()
					}
					base := (i % pool) * burst
					for j := range burst {
						n := copy(bufs[j], dgs[base+j])
						p.Queue(bufs[j][:n])
					}
					p.Flush()
				}
				b.StopTimer()
				if d := p.Stats().Drops; d != ([NumDropReasons]uint64{}) {
					b.Fatalf("drops %v", d)
				}
				b.ReportMetric(float64(p.RxParallel.Load())/float64(b.N*burst), "worker-share")
			})
		}
	}
}

// TestShareable: only bursts of at least minParallelBurst packets on a
// non-AEAD SA go to the worker by default.
func TestShareable(t *testing.T) {
	cbc, _ := receiver(t, cbcKeys(1))
	gcm, _ := receiver(t, gcmKeys(2))
	for _, c := range []struct {
		p    *Path
		n    int
		want bool
	}{{cbc, minParallelBurst, true}, {cbc, minParallelBurst - 1, false}, {cbc, 64, true}, {gcm, 64, false}} {
		if got := c.p.shareable(c.p.in.Load(), c.n); got != c.want {
			t.Errorf("%v, %d packets: shareable %v", c.p.in.Load().Algorithm(), c.n, got)
		}
	}
}
