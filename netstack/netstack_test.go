package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	addrA = netip.MustParseAddr("10.64.0.1")
	addrB = netip.MustParseAddr("10.64.0.2")
)

func cfgA() Config {
	return Config{LocalAddr: addrA, DNS: []netip.Addr{addrB}, MTU: 1400, Headroom: 64, Tailroom: 32}
}

func cfgB() Config {
	return Config{LocalAddr: addrB, MTU: 1400, Headroom: 64, Tailroom: 32}
}

func mustPipe(t testing.TB) (*Stack, *Stack) {
	t.Helper()
	a, b, err := Pipe(cfgA(), cfgB())
	if err != nil {
		t.Fatalf("Pipe: %v", err)
	}
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// pairWith wires two stacks like Pipe but lets the test wrap each direction.
func pairWith(t testing.TB, ca, cb Config, wrapAB, wrapBA func(buf []byte, headroom int, next func([]byte) error) error) (*Stack, *Stack) {
	t.Helper()
	var pa, pb atomic.Pointer[Stack]
	mk := func(dst *atomic.Pointer[Stack], wrap func([]byte, int, func([]byte) error) error) func([]byte, int) error {
		return func(buf []byte, headroom int) error {
			next := func(pkt []byte) error {
				if p := dst.Load(); p != nil {
					return p.InjectInbound(pkt)
				}
				return ErrClosed
			}
			if wrap != nil {
				return wrap(buf, headroom, next)
			}
			return next(buf[headroom:])
		}
	}
	a, err := New(ca, mk(&pb, wrapAB))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cb, mk(&pa, wrapBA))
	if err != nil {
		t.Fatal(err)
	}
	pa.Store(a)
	pb.Store(b)
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type closeWriter interface{ CloseWrite() error }

// transferBothWays connects a -> b:port and sends up and down concurrently,
// checking SHA-256 of what arrived on each side.
func transferBothWays(t *testing.T, a, b *Stack, up, down []byte) {
	t.Helper()
	transferBothWaysPort(t, a, b, 8080, up, down)
}

func transferBothWaysPort(t *testing.T, a, b *Stack, port uint16, up, down []byte) {
	t.Helper()
	ln, err := b.ListenTCP(netip.AddrPortFrom(netip.IPv4Unspecified(), port))
	if err != nil {
		t.Error(err)
		return
	}
	defer ln.Close()

	type result struct {
		sum [32]byte
		err error
	}
	srvRes := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvRes <- result{err: err}
			return
		}
		defer c.Close()
		wErr := make(chan error, 1)
		go func() {
			_, err := c.Write(down)
			if err == nil {
				err = c.(closeWriter).CloseWrite()
			}
			wErr <- err
		}()
		h := sha256.New()
		_, err = io.Copy(h, c)
		if err == nil {
			err = <-wErr
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		srvRes <- result{s, err}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", netip.AddrPortFrom(addrB, port).String())
	if err != nil {
		t.Errorf("dial: %v", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	wErr := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.(closeWriter).CloseWrite()
		}
		wErr <- err
	}()
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		t.Errorf("client read: %v", err)
		return
	}
	if err := <-wErr; err != nil {
		t.Errorf("client write: %v", err)
		return
	}
	if got, want := h.Sum(nil), sha256.Sum256(down); !bytes.Equal(got, want[:]) {
		t.Errorf("downstream sha256 mismatch")
	}
	r := <-srvRes
	if r.err != nil {
		t.Errorf("server: %v", r.err)
		return
	}
	if want := sha256.Sum256(up); r.sum != want {
		t.Errorf("upstream sha256 mismatch")
	}
}

func TestTCPTransferBothWays(t *testing.T) {
	a, b := mustPipe(t)
	transferBothWays(t, a, b, randBytes(t, 4<<20), randBytes(t, 3<<20+12345))
}

// TestOutBufferContract checks the out() contract: headroom, tailroom, one
// whole IPv4 packet no larger than the MTU, buffers not shared between calls
// while in use.
func TestOutBufferContract(t *testing.T) {
	ca, cb := cfgA(), cfgB()
	ca.Headroom, ca.Tailroom, ca.MTU = 37, 29, 1280
	var bad atomic.Value
	var packets atomic.Int64
	check := func(buf []byte, headroom int, next func([]byte) error) error {
		packets.Add(1)
		switch {
		case headroom != ca.Headroom:
			bad.Store("headroom mismatch")
		case cap(buf)-len(buf) < ca.Tailroom:
			bad.Store("tailroom too small")
		case len(buf)-headroom > ca.MTU:
			bad.Store("packet larger than MTU")
		case header.IPVersion(buf[headroom:]) != 4:
			bad.Store("not IPv4")
		case int(header.IPv4(buf[headroom:]).TotalLength()) != len(buf)-headroom:
			bad.Store("total length != slice length")
		}
		// Scribble on the headroom like a real caller writing headers.
		for i := range buf[:headroom] {
			buf[i] = 0xAA
		}
		return next(buf[headroom:])
	}
	a, b := pairWith(t, ca, cb, check, nil)
	transferBothWays(t, a, b, randBytes(t, 1<<20), randBytes(t, 1<<20))
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if packets.Load() < 700 {
		t.Fatalf("only %d packets seen for 1 MiB at MTU 1280", packets.Load())
	}
}

func TestUDPEcho(t *testing.T) {
	a, b := mustPipe(t)
	pc, err := b.ListenUDP(netip.AddrPortFrom(addrB, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			resp := append([]byte("echo:"), buf[:n]...)
			if _, err := pc.WriteTo(resp, from); err != nil {
				return
			}
		}
	}()

	c, err := a.DialContext(context.Background(), "udp4", "10.64.0.2:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A datagram larger than the MTU exercises IPv4 fragmentation and
	// reassembly through the pipe.
	for _, size := range []int{1, 512, 1372, 4000} {
		msg := randBytes(t, size)
		var got []byte
		for try := 0; try < 3 && got == nil; try++ {
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 8192)
			n, err := c.Read(buf)
			if err == nil {
				got = buf[:n]
			}
		}
		if want := append([]byte("echo:"), msg...); !bytes.Equal(got, want) {
			t.Fatalf("size %d: echo mismatch (got %d bytes)", size, len(got))
		}
	}
	if la := c.LocalAddr().(*net.UDPAddr); !la.IP.Equal(net.IP(addrA.AsSlice())) {
		t.Errorf("local addr %v, want %v", la, addrA)
	}
}

func TestDialRefusedAndUnsupported(t *testing.T) {
	a, _ := mustPipe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.DialContext(ctx, "tcp", "10.64.0.2:1")
	if !errors.Is(err, ErrDial) {
		t.Fatalf("dial closed port: %v, want ErrDial", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("dial closed port took until the deadline (no RST?): %v", err)
	}
	if _, err := a.DialContext(ctx, "tcp6", "[::1]:80"); !errors.Is(err, ErrDial) {
		t.Errorf("tcp6 without IPv6: %v", err)
	}
	if _, err := a.DialContext(ctx, "tcp", "no-port"); !errors.Is(err, ErrBadAddress) {
		t.Errorf("no port: %v", err)
	}
	if _, err := a.DialContext(ctx, "tcp", "[2001:db8::1]:80"); !errors.Is(err, ErrDial) {
		t.Errorf("IPv6 literal: %v", err)
	}
}

func TestDialTimeoutHonoursContext(t *testing.T) {
	a, _ := mustPipe(t)
	// 10.64.0.9 is routed into the pipe but nobody owns it: SYNs vanish.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.DialContext(ctx, "tcp", "10.64.0.9:80")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("dial took %v", d)
	}
}

// TestBackPressure makes out slow (and stall completely for a while) and
// checks that the queue in front of it filled up — so writers really were
// blocked — yet no TCP byte was lost and nothing was dropped by the link.
func TestBackPressure(t *testing.T) {
	var n atomic.Int64
	var aStack atomic.Pointer[Stack]
	var stall atomic.Bool
	var maxQueued atomic.Int64
	slow := func(buf []byte, headroom int, next func([]byte) error) error {
		s := aStack.Load()
		if s != nil && stall.Load() {
			// Tunnel stall: hold this packet until the queue is full.
			deadline := time.Now().Add(3 * time.Second)
			for len(s.link.q) < cap(s.link.q) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			stall.Store(false)
		}
		if s != nil {
			if q := int64(len(s.link.q)); q > maxQueued.Load() {
				maxQueued.Store(q)
			}
		}
		if n.Add(1)%32 == 0 {
			time.Sleep(time.Millisecond)
		}
		return next(buf[headroom:])
	}
	a, b := pairWith(t, cfgA(), cfgB(), slow, nil)
	aStack.Store(a)

	pc, err := b.ListenUDP(netip.AddrPortFrom(addrB, 9999))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go io.Copy(io.Discard, readerOf(pc))

	var wg sync.WaitGroup
	for i := range 3 {
		up, down := randBytes(t, 2<<20), randBytes(t, 64<<10)
		wg.Go(func() { transferBothWaysPort(t, a, b, uint16(7000+i), up, down) })
	}
	// While TCP is running, stall the tunnel and flood UDP: UDP writers
	// must block (not drop) once the queue is full.
	time.Sleep(20 * time.Millisecond)
	uc, err := a.DialContext(context.Background(), "udp", "10.64.0.2:9999")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	stall.Store(true)
	dgram := make([]byte, 1000)
	for range 2 * outQueueLen {
		if _, err := uc.Write(dgram); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()

	st := a.Stats()
	if st.OutBlocked == 0 {
		t.Errorf("no writer ever waited (max queue %d of %d): back-pressure not exercised", maxQueued.Load(), outQueueLen)
	}
	if st.OutDropped != 0 || st.OutErrors != 0 {
		t.Errorf("stats %+v, want no drops/errors", st)
	}
	t.Logf("stats %+v, max queued %d", st, maxQueued.Load())
}

// readerOf adapts a PacketConn to an io.Reader for draining.
func readerOf(pc net.PacketConn) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		n, _, err := pc.ReadFrom(p)
		return n, err
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestCloseUnblocksWriters: a writer blocked behind a stuck out function is
// released by Close, and Close returns once out returns.
func TestCloseUnblocksWriters(t *testing.T) {
	gate := make(chan struct{})
	var gateOnce sync.Once
	release := func() { gateOnce.Do(func() { close(gate) }) }
	defer release()
	var blocking atomic.Bool
	stuck := func(buf []byte, headroom int, next func([]byte) error) error {
		if blocking.Load() {
			<-gate
			return errors.New("tunnel down")
		}
		return next(buf[headroom:])
	}
	a, b := pairWith(t, cfgA(), cfgB(), stuck, nil)
	ln, err := b.ListenTCP(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	c, err := a.DialContext(context.Background(), "tcp", "10.64.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	blocking.Store(true)
	wDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				wDone <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	cDone := make(chan struct{})
	go func() {
		a.Close()
		close(cDone)
	}()
	time.Sleep(50 * time.Millisecond)
	release()
	select {
	case <-cDone:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case err := <-wDone:
		if err == nil {
			t.Fatal("write succeeded after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer still blocked after Close")
	}
	if err := a.InjectInbound(make([]byte, 20)); !errors.Is(err, ErrClosed) {
		t.Errorf("InjectInbound after Close: %v", err)
	}
	if _, err := a.DialContext(context.Background(), "tcp", "10.64.0.2:80"); !errors.Is(err, ErrClosed) {
		t.Errorf("DialContext after Close: %v", err)
	}
}

// TestICMPEchoReply injects a hand-built echo request and expects gVisor's
// IPv4 layer to answer it through out.
func TestICMPEchoReply(t *testing.T) {
	replies := make(chan []byte, 4)
	s, err := New(cfgA(), func(buf []byte, headroom int) error {
		replies <- append([]byte(nil), buf[headroom:]...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	payload := []byte("ping-payload-0123456789")
	pkt := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(payload))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(addrB.As4()),
		DstAddr:     tcpip.AddrFrom4(addrA.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	icmp := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(0x1234)
	icmp.SetSequence(7)
	copy(icmp.Payload(), payload)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	if err := s.InjectInbound(pkt); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-replies:
		rip := header.IPv4(r)
		if !rip.IsValid(len(r)) || rip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
			t.Fatalf("reply is not ICMPv4: % x", r)
		}
		ric := header.ICMPv4(rip.Payload())
		if ric.Type() != header.ICMPv4EchoReply || ric.Ident() != 0x1234 || ric.Sequence() != 7 ||
			!bytes.Equal(ric.Payload(), payload) || rip.DestinationAddress() != tcpip.AddrFrom4(addrB.As4()) {
			t.Fatalf("bad echo reply: % x", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no echo reply")
	}

	if err := s.InjectInbound([]byte{0x60, 0, 0, 0}); !errors.Is(err, ErrNotIPv4) {
		t.Errorf("short/IPv6 packet: %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	out := func([]byte, int) error { return nil }
	bad := []Config{
		{MTU: 1400},
		{LocalAddr: netip.MustParseAddr("2001:db8::1"), MTU: 1400},
		{LocalAddr: addrA, MTU: 100},
		{LocalAddr: addrA, MTU: 70000},
		{LocalAddr: addrA, MTU: 1400, Headroom: -1},
		{LocalAddr: addrA, MTU: 1400, DNS: []netip.Addr{netip.MustParseAddr("::1")}},
	}
	for i, c := range bad {
		if s, err := New(c, out); !errors.Is(err, ErrBadConfig) {
			if s != nil {
				s.Close()
			}
			t.Errorf("config %d: err = %v, want ErrBadConfig", i, err)
		}
	}
	if _, err := New(cfgA(), nil); !errors.Is(err, ErrBadConfig) {
		t.Errorf("nil out: %v", err)
	}
}

func FuzzInjectInbound(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 64, 0, 2, 10, 64, 0, 1})
	f.Add([]byte{0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 17, 0, 0, 10, 64, 0, 2, 10, 64, 0, 1, 0, 53, 0, 53, 0, 8, 0, 0})
	f.Add([]byte{0x60})
	s, err := New(cfgA(), func([]byte, int) error { return nil })
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_ = s.InjectInbound(pkt)
	})
}

// BenchmarkStackTCP is one bulk TCP stream between two stacks, with the
// stall probes' per-segment copies (stall.go) and without.
func BenchmarkStackTCP(b *testing.B) {
	b.Run("probes", func(b *testing.B) { benchStackTCP(b, false) })
	b.Run("no-probes", func(b *testing.B) { benchStackTCP(b, true) })
}

func benchStackTCP(b *testing.B, noProbes bool) {
	ca, cb := cfgA(), cfgB()
	ca.NoStallProbes, cb.NoStallProbes = noProbes, noProbes
	sa, sb := pairWith(b, ca, cb, nil, nil)
	ln, err := sb.ListenTCP(netip.AddrPortFrom(addrB, 5001))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 64<<10)
		io.CopyBuffer(io.Discard, c, buf)
		c.Close()
	}()
	c, err := sa.DialContext(context.Background(), "tcp", "10.64.0.2:5001")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDialedConnWriteTo: io.Copy from a dialed TCP connection goes through
// its WriteTo (large writes to the application's socket), which must still
// honour the read deadline and end at EOF with all the data.
func TestDialedConnWriteTo(t *testing.T) {
	a, b := mustPipe(t)
	ln, err := b.ListenTCP(netip.AddrPortFrom(netip.IPv4Unspecified(), 8081))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := randBytes(t, 3<<20)
	release := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		<-release
		for p := data; len(p) > 0; p = p[min(len(p), 1000):] { // small writes: many segments
			if _, err := c.Write(p[:min(len(p), 1000)]); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", netip.AddrPortFrom(addrB, 8081).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(io.WriterTo); !ok {
		t.Fatalf("%T is not an io.WriterTo", c)
	}
	var got bytes.Buffer
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if n, err := io.Copy(&got, c); !errors.As(err, &ne) || !ne.Timeout() || n != 0 {
		t.Fatalf("io.Copy before any data: %d bytes, %v; want a deadline error", n, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	close(release)
	if _, err := io.Copy(&got, c); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("got %d bytes, want %d (or content differs)", got.Len(), len(data))
	}
}
