// Package memnet is an in-memory UDP network for tests: two real peers (the
// client and tunnel/testserver) exchange datagrams in one process without
// sockets, like wireguard-go's conn/bindtest. Each Conn can impair what it
// sends (loss, duplication, reordering, delay, a blackhole, or any rewrite),
// deterministically: the decisions come from a generator seeded by the
// Network's seed and the sender's address, so a sequence of sends meets the
// same fate in every run.
//
// Nothing here blocks on a system call, so a whole tunnel can run inside a
// testing/synctest bubble: delays then take no real time.
package memnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// QueueLen is how many datagrams a Conn holds unread; more are dropped, as
// a full socket receive buffer does (so a flood cannot grow memory).
const QueueLen = 4096

// MaxDatagram is the largest datagram carried (an IPv4 UDP payload).
const MaxDatagram = 65507

// Impairment says what happens to the datagrams a Conn sends. The zero
// value delivers each one once, in order, at once.
type Impairment struct {
	Loss      float64       // probability that a datagram is dropped
	Duplicate float64       // probability that it is delivered twice
	Reorder   float64       // probability that it is held back and delivered after the next one
	Delay     time.Duration // added to every delivery; delayed datagrams keep their order (a delay line)
	Blackhole bool          // drop everything
	// Rewrite, if set, replaces each datagram by what it returns (none:
	// dropped), before the other impairments: a hostile or broken peer.
	Rewrite func(dg []byte) [][]byte
}

// Network is a set of Conns that reach each other by address.
type Network struct {
	seed  uint64
	mu    sync.Mutex
	conns map[netip.AddrPort]*Conn
	next  uint16 // next ephemeral port
}

// New returns an empty network whose impairments draw from seed.
func New(seed uint64) *Network {
	return &Network{seed: seed, conns: make(map[netip.AddrPort]*Conn), next: 40000}
}

// ErrAddrInUse is Listen's error for a taken address.
var ErrAddrInUse = errors.New("memnet: address in use")

// Listen binds a Conn to addr; port 0 picks a free port, an invalid addr
// 127.0.0.1 and a free port.
func (n *Network) Listen(addr netip.AddrPort) (*Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ip := addr.Addr()
	if !ip.IsValid() {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	port := addr.Port()
	if port == 0 {
		for {
			n.next++
			if n.next == 0 {
				n.next = 40000
			}
			if _, used := n.conns[netip.AddrPortFrom(ip, n.next)]; !used {
				port = n.next
				break
			}
		}
	}
	a := netip.AddrPortFrom(ip.Unmap(), port)
	if _, used := n.conns[a]; used {
		return nil, fmt.Errorf("%w: %s", ErrAddrInUse, a)
	}
	// One generator per sender, seeded by its address: its fate does not
	// depend on how other senders' datagrams interleave with its own.
	b := a.Addr().As4()
	c := &Conn{
		net:    n,
		addr:   a,
		rng:    rand.New(rand.NewPCG(n.seed, uint64(b[0])<<40|uint64(b[1])<<32|uint64(b[2])<<24|uint64(b[3])<<16|uint64(a.Port()))),
		queue:  make(chan datagram, QueueLen),
		closed: make(chan struct{}),
	}
	n.conns[a] = c
	return c, nil
}

func (n *Network) lookup(a netip.AddrPort) *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())]
}

type datagram struct {
	b    []byte
	from netip.AddrPort
}

// Conn is one bound address. It implements the socket methods the tunnel
// uses (tunnel/datapath.Conn) and net.PacketConn's core.
type Conn struct {
	net  *Network
	addr netip.AddrPort

	mu      sync.Mutex // guards imp, rng, held, the counters
	imp     Impairment
	rng     *rand.Rand
	held    *heldDatagram // a reordered datagram waiting for the next one
	Sent    int           // datagrams given to WriteTo
	Dropped int           // of those, dropped by an impairment or a full queue

	// The delay line: delayed datagrams in the order sent, and whether a
	// timer is armed to deliver its head (one at a time, so none overtakes
	// another: a timer per datagram would let near-simultaneous ones swap,
	// which real paths rarely do and Reorder does on purpose).
	line      []delayedDatagram
	lineArmed bool

	queue     chan datagram
	closeOnce sync.Once
	closed    chan struct{}
}

type heldDatagram struct {
	b  []byte
	to netip.AddrPort
}

type delayedDatagram struct {
	heldDatagram
	due time.Time
}

// SetImpairment changes what happens to datagrams sent from now on.
func (c *Conn) SetImpairment(imp Impairment) {
	c.mu.Lock()
	c.imp = imp
	c.mu.Unlock()
}

// Stats returns how many datagrams c sent and how many of them were dropped.
func (c *Conn) Stats() (sent, dropped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Sent, c.Dropped
}

// LocalAddr is c's address, as a *net.UDPAddr like a UDP socket's.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.addr) }

// AddrPort is c's address.
func (c *Conn) AddrPort() netip.AddrPort { return c.addr }

// Close unbinds c; a blocked read returns net.ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		if c.net.conns[c.addr] == c {
			delete(c.net.conns, c.addr)
		}
		c.net.mu.Unlock()
	})
	return nil
}

// ReadFromUDPAddrPort waits for a datagram.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	default:
	}
	select {
	case dg := <-c.queue:
		return copy(b, dg.b), dg.from, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

// ReadFrom is net.PacketConn's read.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteToUDPAddrPort sends b to addr through c's impairments. A datagram to
// an address nobody listens on vanishes, as UDP does.
func (c *Conn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if len(b) > MaxDatagram {
		return 0, fmt.Errorf("memnet: datagram of %d bytes too long", len(b))
	}
	c.mu.Lock()
	c.Sent++
	imp := c.imp
	out := [][]byte{append([]byte(nil), b...)}
	if imp.Rewrite != nil {
		out = imp.Rewrite(out[0])
	}
	var deliver []heldDatagram
	for _, dg := range out {
		if imp.Blackhole || imp.Loss > 0 && c.rng.Float64() < imp.Loss {
			c.Dropped++
			continue
		}
		copies := 1
		if imp.Duplicate > 0 && c.rng.Float64() < imp.Duplicate {
			copies = 2
		}
		switch {
		case c.held != nil: // the held one goes after this one
			for range copies {
				deliver = append(deliver, heldDatagram{b: dg, to: to})
			}
			deliver = append(deliver, *c.held)
			c.held = nil
		case imp.Reorder > 0 && c.rng.Float64() < imp.Reorder:
			c.held = &heldDatagram{b: dg, to: to} // (a duplicate of it is lost)
		default:
			for range copies {
				deliver = append(deliver, heldDatagram{b: dg, to: to})
			}
		}
	}
	c.mu.Unlock()
	for _, d := range deliver {
		c.deliver(d.b, d.to, imp.Delay)
	}
	return len(b), nil
}

// WriteTo is net.PacketConn's write.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("memnet: not a UDP address: %v", addr)
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

func (c *Conn) deliver(b []byte, to netip.AddrPort, delay time.Duration) {
	if delay <= 0 {
		c.put(b, to)
		return
	}
	c.mu.Lock()
	c.line = append(c.line, delayedDatagram{heldDatagram{b, to}, time.Now().Add(delay)})
	if !c.lineArmed {
		c.lineArmed = true
		time.AfterFunc(delay, c.drainLine)
	}
	c.mu.Unlock()
}

// drainLine delivers the delay line's datagrams that are due, in order,
// and arms a timer for the next one.
func (c *Conn) drainLine() {
	for {
		c.mu.Lock()
		if len(c.line) == 0 {
			c.lineArmed = false
			c.line = nil
			c.mu.Unlock()
			return
		}
		d := c.line[0]
		if wait := time.Until(d.due); wait > 0 {
			time.AfterFunc(wait, c.drainLine)
			c.mu.Unlock()
			return
		}
		c.line = c.line[1:]
		c.mu.Unlock()
		c.put(d.b, d.to)
	}
}

// put hands b to the Conn bound to to, if any.
func (c *Conn) put(b []byte, to netip.AddrPort) {
	dst := c.net.lookup(to)
	if dst == nil {
		return
	}
	select {
	case dst.queue <- datagram{b: b, from: c.addr}:
	case <-dst.closed:
	default: // the receiver's queue is full: dropped, as by a socket
		c.mu.Lock()
		c.Dropped++
		c.mu.Unlock()
	}
}
