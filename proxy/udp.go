package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	socks5 "github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"
)

// Bounds of one UDP association: memory stays under a few hundred KiB
// however fast or hostile the client.
const (
	udpMaxFlows     = 32        // destinations per association
	udpQueueLen     = 16        // datagrams waiting per destination (while it is dialled)
	udpQueueBudget  = 256 << 10 // bytes waiting in all queues of an association
	udpReplyBufSize = 16 << 10  // larger replies are dropped
	udpMaxHeader    = 4 + 16 + 2
)

// Errors of the SOCKS5 UDP request header (RFC 1928 §7).
var (
	ErrUDPShort    = errors.New("socks5 udp: datagram too short")
	ErrUDPFragment = errors.New("socks5 udp: fragmented datagram (FRAG != 0), not supported")
	ErrUDPAddrType = errors.New("socks5 udp: unknown address type")
)

// UDPHeader is the destination (requests) or source (replies) of a SOCKS5
// UDP datagram.
type UDPHeader struct {
	Host string // an IP literal or a domain name
	Port uint16
}

// ParseUDPDatagram parses a SOCKS5 UDP request (RFC 1928 §7):
// RSV(2) FRAG(1) ATYP(1) DST.ADDR DST.PORT(2) DATA. Fragments (FRAG != 0)
// are an error: we do not reassemble, and the RFC lets a server that does
// not drop them.
func ParseUDPDatagram(b []byte) (UDPHeader, []byte, error) {
	if len(b) < 4 {
		return UDPHeader{}, nil, ErrUDPShort
	}
	if b[2] != 0 {
		return UDPHeader{}, nil, ErrUDPFragment
	}
	var h UDPHeader
	rest := b[4:]
	switch b[3] {
	case statute.ATYPIPv4:
		if len(rest) < 4+2 {
			return UDPHeader{}, nil, ErrUDPShort
		}
		h.Host = netip.AddrFrom4([4]byte(rest[:4])).String()
		rest = rest[4:]
	case statute.ATYPIPv6:
		if len(rest) < 16+2 {
			return UDPHeader{}, nil, ErrUDPShort
		}
		h.Host = netip.AddrFrom16([16]byte(rest[:16])).String()
		rest = rest[16:]
	case statute.ATYPDomain:
		if len(rest) < 1 {
			return UDPHeader{}, nil, ErrUDPShort
		}
		n := int(rest[0])
		if n == 0 || len(rest) < 1+n+2 {
			return UDPHeader{}, nil, ErrUDPShort
		}
		h.Host = string(rest[1 : 1+n])
		rest = rest[1+n:]
	default:
		return UDPHeader{}, nil, ErrUDPAddrType
	}
	h.Port = binary.BigEndian.Uint16(rest)
	return h, rest[2:], nil
}

// AppendUDPHeader appends the reply header for a datagram from src.
func AppendUDPHeader(b []byte, src netip.AddrPort) []byte {
	a := src.Addr().Unmap()
	b = append(b, 0, 0, 0)
	if a.Is4() {
		b = append(b, statute.ATYPIPv4)
	} else {
		b = append(b, statute.ATYPIPv6)
	}
	b = append(b, a.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, src.Port())
}

// associate serves UDP ASSOCIATE (RFC 1928 §7). The relay socket is bound
// to the control connection's local address (the one the client reached
// us on, never the wildcard), and accepts datagrams only from the client:
// the address in its request or, when that is unspecified, the control
// connection's peer address (and the port of its first datagram). The
// association ends with its control connection.
func (s *SOCKS5) associate(ctx context.Context, w io.Writer, req *socks5.Request) error {
	ctrl := w.(net.Conn)
	ctrl.SetDeadline(time.Time{})
	local, _ := ctrl.LocalAddr().(*net.TCPAddr)
	remote, _ := ctrl.RemoteAddr().(*net.TCPAddr)
	if local == nil || remote == nil {
		socks5.SendReply(w, statute.RepServerFailure, nil)
		return errors.New("udp associate: not a TCP control connection")
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		socks5.SendReply(w, statute.RepServerFailure, nil)
		return fmt.Errorf("udp associate: %w", err)
	}
	defer pc.Close()
	if err := socks5.SendReply(w, statute.RepSuccess, pc.LocalAddr()); err != nil {
		return err
	}

	clientIP, _ := netip.AddrFromSlice(remote.IP)
	var clientPort uint16
	if ip, ok := netip.AddrFromSlice(req.RawDestAddr.IP); ok && !ip.Unmap().IsUnspecified() {
		clientIP = ip
	}
	if req.RawDestAddr.FQDN == "" {
		clientPort = uint16(req.RawDestAddr.Port)
	}
	a := &association{
		s: s, pc: pc,
		clientIP: clientIP.Unmap(), clientPort: clientPort,
		flows: make(map[string]*udpFlow),
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The association lives as long as its control connection (anything
	// the client sends there is discarded).
	go func() {
		io.Copy(io.Discard, req.Reader)
		cancel()
	}()
	stop := context.AfterFunc(actx, func() { pc.Close() })
	defer stop()
	a.run(actx)
	cancel()
	a.closeFlows()
	a.wg.Wait()
	return nil
}

type association struct {
	s          *SOCKS5
	pc         *net.UDPConn
	clientIP   netip.Addr
	clientPort uint16       // 0 until the first datagram, unless the request named it
	client     atomic.Value // netip.AddrPort the replies go to
	queued     atomic.Int64 // bytes in all flow queues
	mu         sync.Mutex
	flows      map[string]*udpFlow
	closed     bool
	wg         sync.WaitGroup
	drops      atomic.Uint64 // for the debug log
}

type udpFlow struct {
	q    chan []byte
	done chan struct{}
	conn net.Conn
}

func (a *association) run(ctx context.Context) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := a.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				a.s.logger.Debug("socks5 udp: read failed", "err", err)
			}
			return
		}
		if from.Addr().Unmap() != a.clientIP || a.clientPort != 0 && from.Port() != a.clientPort {
			a.drops.Add(1)
			continue // not our client (RFC 1928 §7)
		}
		if a.clientPort == 0 {
			a.clientPort = from.Port()
		}
		a.client.Store(from)
		h, payload, err := ParseUDPDatagram(buf[:n])
		if err != nil {
			a.drops.Add(1)
			continue
		}
		a.send(ctx, h, payload)
	}
}

// send queues payload for h's flow, starting the flow if needed; it drops
// the datagram when the queues are full, as UDP may.
func (a *association) send(ctx context.Context, h UDPHeader, payload []byte) {
	key := net.JoinHostPort(h.Host, fmt.Sprint(h.Port))
	a.mu.Lock()
	f := a.flows[key]
	if f == nil {
		if a.closed || len(a.flows) >= udpMaxFlows {
			a.mu.Unlock()
			a.drops.Add(1)
			return
		}
		f = &udpFlow{q: make(chan []byte, udpQueueLen), done: make(chan struct{})}
		a.flows[key] = f
		a.wg.Add(1)
		go a.runFlow(ctx, key, h, f)
	}
	a.mu.Unlock()
	if a.queued.Add(int64(len(payload))) > udpQueueBudget {
		a.queued.Add(-int64(len(payload)))
		a.drops.Add(1)
		return
	}
	select {
	case f.q <- append([]byte(nil), payload...):
	default:
		a.queued.Add(-int64(len(payload)))
		a.drops.Add(1)
	}
}

// runFlow dials the destination (through the Router: by name through the
// VPN's DNS, or directly), then forwards queued datagrams to it while a
// second goroutine relays its replies to the client.
func (a *association) runFlow(ctx context.Context, key string, h UDPHeader, f *udpFlow) {
	defer a.wg.Done()
	spec := &statute.AddrSpec{Port: int(h.Port)}
	if ip, err := netip.ParseAddr(h.Host); err == nil {
		spec.IP = net.IP(ip.AsSlice())
	} else {
		spec.FQDN = h.Host
	}
	conn, err := a.s.dial(ctx, "udp", spec)
	if err != nil {
		a.s.logger.Debug("socks5 udp: dial failed", "target", key, "err", err)
		a.mu.Lock()
		delete(a.flows, key)
		a.mu.Unlock()
		a.drain(f)
		return
	}
	defer conn.Close()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.drain(f)
		return
	}
	f.conn = conn
	a.mu.Unlock()

	a.wg.Add(1)
	go a.readReplies(conn, h)
	for {
		select {
		case <-f.done:
			a.drain(f)
			return
		case b := <-f.q:
			a.queued.Add(-int64(len(b)))
			if _, err := conn.Write(b); err != nil {
				a.s.logger.Debug("socks5 udp: write failed", "target", key, "err", err)
			}
		}
	}
}

func (a *association) drain(f *udpFlow) {
	for {
		select {
		case b := <-f.q:
			a.queued.Add(-int64(len(b)))
		default:
			return
		}
	}
}

func (a *association) readReplies(conn net.Conn, h UDPHeader) {
	defer a.wg.Done()
	src, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	buf := make([]byte, udpMaxHeader+udpReplyBufSize)
	for {
		n, err := conn.Read(buf[udpMaxHeader:])
		if err != nil {
			return
		}
		if n == udpReplyBufSize {
			a.drops.Add(1) // possibly truncated: drop rather than corrupt
			continue
		}
		to, ok := a.client.Load().(netip.AddrPort)
		if !ok {
			continue
		}
		hdr := AppendUDPHeader(make([]byte, 0, udpMaxHeader), src)
		start := udpMaxHeader - len(hdr)
		copy(buf[start:], hdr)
		a.pc.WriteToUDPAddrPort(buf[start:udpMaxHeader+n], to)
	}
}

func (a *association) closeFlows() {
	a.mu.Lock()
	a.closed = true
	for _, f := range a.flows {
		close(f.done)
		if f.conn != nil {
			f.conn.Close() // ends readReplies
		}
	}
	a.mu.Unlock()
	if n := a.drops.Load(); n > 0 {
		a.s.logger.Debug("socks5 udp: association ended", "dropped", n)
	}
}
