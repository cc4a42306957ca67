package testserver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
)

// LossyRelay is a UDP NAT on loopback between one client and one server
// port that drops a fraction of the datagrams in each direction, at random
// but reproducibly: each direction draws from its own PRNG seeded from
// Seed, so a seed drops the same datagram numbers every run. Benchmarks put
// it in front of the NAT-T port to measure TCP's loss recovery through the
// whole tunnel.
type LossyRelay struct {
	front  *net.UDPConn // the client talks to this
	back   *net.UDPConn // this talks to the server
	server netip.AddrPort
	client atomic.Pointer[netip.AddrPort]
	loss   float64
	wg     sync.WaitGroup

	// Forwarded and Dropped count datagrams per direction.
	ToServer, ToClient               atomic.Uint64
	DroppedToServer, DroppedToClient atomic.Uint64
}

// ErrNotLoopback: the relay forwards to loopback addresses only.
var ErrNotLoopback = errors.New("testserver: relay target is not a loopback address")

// StartLossyRelay forwards datagrams between a new loopback port (Addr) and
// server, dropping each with probability loss (0 to 1).
func StartLossyRelay(server netip.AddrPort, loss float64, seed uint64) (*LossyRelay, error) {
	if !server.Addr().IsLoopback() {
		return nil, fmt.Errorf("%w: %v", ErrNotLoopback, server)
	}
	if !(loss >= 0 && loss <= 1) {
		return nil, fmt.Errorf("testserver: relay loss %v outside [0, 1]", loss)
	}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	front, err := net.ListenUDP("udp4", lo)
	if err != nil {
		return nil, err
	}
	back, err := net.ListenUDP("udp4", lo)
	if err != nil {
		front.Close()
		return nil, err
	}
	for _, c := range []*net.UDPConn{front, back} {
		_, _ = datapath.SetReceiveBuffer(c, 8<<20)
		_ = c.SetWriteBuffer(4 << 20)
	}
	r := &LossyRelay{front: front, back: back, server: server, loss: loss}
	r.wg.Add(2)
	go r.pump(front, true, rand.New(rand.NewPCG(seed, 1)))
	go r.pump(back, false, rand.New(rand.NewPCG(seed, 2)))
	return r, nil
}

// Addr is where the client sends to.
func (r *LossyRelay) Addr() netip.AddrPort { return r.front.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close stops the relay.
func (r *LossyRelay) Close() error {
	r.front.Close()
	r.back.Close()
	r.wg.Wait()
	return nil
}

func (r *LossyRelay) pump(from *net.UDPConn, toServer bool, rng *rand.Rand) {
	defer r.wg.Done()
	rx := datapath.NewReceiver(from, 64)
	fwd, dropped := &r.ToClient, &r.DroppedToClient
	if toServer {
		fwd, dropped = &r.ToServer, &r.DroppedToServer
	}
	handle := func(dg []byte, src netip.AddrPort) {
		if rng.Float64() < r.loss {
			dropped.Add(1)
			return
		}
		fwd.Add(1)
		if toServer {
			if c := r.client.Load(); c == nil || *c != src {
				r.client.Store(&src)
			}
			_, _ = r.back.WriteToUDPAddrPort(dg, r.server)
		} else if c := r.client.Load(); c != nil && src == r.server {
			_, _ = r.front.WriteToUDPAddrPort(dg, *c)
		}
	}
	for {
		if err := rx.Read(handle); errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
