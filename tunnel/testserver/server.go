// Package testserver is an in-process L2TP/IPsec server for tests and for
// `l2tpproxy demo`: an IKEv1 responder, ESP in UDP, an L2TP LNS and a PPP
// server, with a second gVisor stack behind it that serves HTTP, DNS and UDP
// echo on the far side of the tunnel. It listens on loopback only.
//
// It is built from the same protocol packages as the client, in their
// responder roles, so it shares our reading of the RFCs: it is for fast
// tests and fault injection, while the interop suite (testdata/interop)
// checks us against real servers.
package testserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/l2tpproxy/l2tpproxy/netstack"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

// Config of the test server. Zero values give the defaults documented here.
type Config struct {
	PSK []byte // default "testpsk"
	// Cert, if set, makes phase 1 RSA signatures with these certificates
	// (the client's chain must lead to Cert.CAs) instead of PSK.
	Cert *ike.Certificates
	// FragmentSize is the largest IKE message sent whole to a client that
	// announced IKE fragmentation (0: the IKE package's default).
	FragmentSize int
	User         string // default "vpnuser"
	Password     []byte // default "vpnpass"
	// Auth is the PPP authentication the server asks for (default
	// MS-CHAPv2): PAP, CHAP-MD5, MS-CHAPv2, EAP-MD5 or EAP-MSCHAPv2.
	Auth ppp.AuthMethod
	// AuthOnly: Auth is the only method accepted (pppd require-X); a
	// client's Configure-Nak is answered by asking for Auth again.
	AuthOnly bool
	// Phase1/Phase2 are the proposals the server accepts (nil = the IKE
	// package's defaults).
	Phase1 []ike.Phase1Transform
	Phase2 []esp.Algorithm
	// RequirePFS refuses Quick Modes without PFS (Libreswan's pfs=yes).
	RequirePFS bool
	// Phase2LifeKilobytes, if set, is the ESP SA lifetime in kilobytes the
	// server answers Quick Modes with (and offers in its own).
	Phase2LifeKilobytes uint64
	// IKEMode is the only phase-1 exchange accepted (default Main Mode;
	// the other one is answered with NO-PROPOSAL-CHOSEN). LocalID is the
	// server's identity (default its address), ClientID the only client
	// identity accepted (nil: any).
	IKEMode           ike.Mode
	LocalID, ClientID *ike.Identity
	// Faults to inject, for tests of the client's failure reporting.
	Faults Faults
	// BigSize is the size of /big.bin on the target (default 64 MiB).
	BigSize int64
	// IKEAddr and NATTAddr are where the server listens for IKE (the
	// client's --server) and NAT-T (--natt-port); zero means an ephemeral
	// port on 127.0.0.1. A test that restarts a server gives the old ports.
	IKEAddr, NATTAddr netip.AddrPort
	Logger            *slog.Logger
	// SendGSO coalesces the server's runs of equal-size datagrams into UDP
	// GSO sends. Off by default: real servers (Libreswan and strongSwan
	// through the kernel's ESP, SoftEther) send one datagram at a time,
	// so the client is measured against what it meets in use. On
	// loopback, the client's UDP_GRO can coalesce only what was sent as
	// GSO, so this shows the cost with a NIC that does GRO.
	SendGSO bool
	// Listen opens the server's sockets (default: UDP on loopback); tests
	// give tunnel/memnet's Network.Listen to run without sockets.
	Listen func(netip.AddrPort) (datapath.Conn, error)
	// IPv6 answers IPv6CP and serves IPv6 (see ipv6.go); without it the
	// server Protocol-Rejects IPv6CP, as most servers do.
	IPv6 bool
}

// Faults makes the server misbehave in a chosen way.
type Faults struct {
	NoL2TP bool // IKE and ESP work, but L2TP control messages are ignored
	NoIPCP bool // PPP authenticates the client, then never answers IPCP
	// RekeyEvery makes the server start a Quick Mode this often once the
	// first IPsec SA is up, also while the client is still connecting
	// (the Linux kernel clients survive servers that do).
	RekeyEvery time.Duration
	// L2TPControl and PPPFrame, if set, replace each L2TP control message
	// and each PPP frame the server sends (before ESP seals it) by what
	// they return: a hostile or broken server inside an authentic tunnel.
	L2TPControl, PPPFrame func(pkt []byte) [][]byte
	// NoIPv6CP: IPv6CP frames are dropped unanswered (a server that
	// neither negotiates nor Protocol-Rejects IPv6CP).
	NoIPv6CP bool
}

// Addresses on the far side of the tunnel.
var (
	ServerIP   = netip.MustParseAddr("192.168.77.1")  // PPP server, DNS and target
	ClientIP   = netip.MustParseAddr("192.168.77.10") // what IPCP assigns
	TargetName = "target.vpn.test"
)

// Well-known ports of the far-side services.
const (
	HTTPPort    = 80
	DNSPort     = 53
	UDPEchoPort = 7
	helloBody   = "hello from the far side of the tunnel\n"
)

// Server is a running test server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	ike  datapath.Conn // plays UDP 500
	natt datapath.Conn // plays UDP 4500

	// resp answers IKE for the current ISAKMP SA. A new one takes over when
	// that SA is deleted, so a client can negotiate another (as a real
	// server answers a new Main Mode from the same client).
	resp  atomic.Pointer[ike.Responder]
	lns   *l2tp.LNS
	data  *datapath.Path
	stack *netstack.Stack

	pppSrv   *ppp.Server
	routerLL atomic.Value // netip.Addr: our link-local address once IPv6CP is up
	http6    sync.Once

	mu         sync.Mutex
	clientIKE  netip.AddrPort // where the client sends IKE from
	clientNATT netip.AddrPort

	ctx      context.Context // ends at Close
	ipsecSAs atomic.Int64    // ESP SA pairs established so far
	ikeSAs   atomic.Int64    // ISAKMP SAs established so far

	frozen atomic.Bool   // Freeze: nothing in, nothing out
	sink   datapath.Conn // where a frozen server's data path sends

	cancel   context.CancelFunc
	respDone chan struct{} // closed when the IKE responder has sent its Deletes
	wg       sync.WaitGroup
}

// Start runs a server until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.PSK == nil {
		cfg.PSK = []byte("testpsk")
	}
	if cfg.User == "" {
		cfg.User = "vpnuser"
	}
	if cfg.Password == nil {
		cfg.Password = []byte("vpnpass")
	}
	if cfg.Auth == 0 {
		cfg.Auth = ppp.AuthMSCHAPv2
	}
	if cfg.BigSize == 0 {
		cfg.BigSize = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == nil {
		cfg.Listen = listenUDP
	}
	ikeConn, err := cfg.Listen(cfg.IKEAddr)
	if err != nil {
		return nil, err
	}
	nattConn, err := cfg.Listen(cfg.NATTAddr)
	if err != nil {
		ikeConn.Close()
		return nil, err
	}
	if uc, ok := nattConn.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(4 << 20)
		_ = uc.SetWriteBuffer(4 << 20)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ike: ikeConn, natt: nattConn, respDone: make(chan struct{})}
	local := nattConn.LocalAddr().(*net.UDPAddr).AddrPort()

	resp, err := s.newResponder()
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.resp.Store(resp)
	s.data = datapath.New(datapath.Config{
		Conn:      nattConn,
		Rand:      rand.Reader,
		LocalIP:   local.Addr().Unmap(),
		PeerIP:    netip.MustParseAddr("127.0.0.1"),
		LocalPort: 1701,
		PeerPort:  1701,
		NoGSO:     !cfg.SendGSO,
	})
	s.lns = l2tp.NewLNS(l2tp.Config{HostName: "testserver", VendorName: "l2tpproxy-testserver",
		Logger: s.log.With("srv", "l2tp")}, serverL2TPTransport{s})
	if !cfg.Faults.NoL2TP {
		s.data.SetControl(s.lns)
	}
	s.newPPP()

	s.stack, err = netstack.New(netstack.Config{
		LocalAddr: ServerIP,
		MTU:       1400,
		Headroom:  datapath.Headroom,
		Tailroom:  datapath.Tailroom,
		Logger:    s.log.With("srv", "netstack"),
		// Batched sends (sendmmsg; UDP GSO only with SendGSO).
		OutBatch: s.data.SendIPBatch,
	}, s.data.SendIP)
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.data.SetIP(s.stack)
	if cfg.IPv6 {
		s.data.SetIP(raSink{s, s.stack})
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.ctx, s.cancel = ctx, cancel
	if err := s.startServices(ctx); err != nil {
		cancel()
		s.stack.Close()
		s.closeSockets()
		return nil, err
	}
	s.goRun(func() { s.readLoop(s.ike, false) })
	s.goRun(func() { s.readLoop(s.natt, true) })
	s.goRun(func() { s.run(ctx) })
	return s, nil
}

// newResponder makes an IKE responder for one ISAKMP SA.
func (s *Server) newResponder() (*ike.Responder, error) {
	local := s.natt.LocalAddr().(*net.UDPAddr).AddrPort()
	rc := ike.ResponderConfig{
		PSK:          s.cfg.PSK,
		Cert:         s.cfg.Cert,
		FragmentSize: s.cfg.FragmentSize,
		LocalAddr:    netip.AddrPortFrom(local.Addr().Unmap(), s.IKEAddr().Port()),
		Phase1:       s.cfg.Phase1,
		Phase2:       s.cfg.Phase2,
		RequirePFS:   s.cfg.RequirePFS,
		Mode:         s.cfg.IKEMode,
		LocalID:      s.cfg.LocalID,
		RemoteID:     s.cfg.ClientID,
		Clock:        clock.Real,
		Logger:       s.log.With("srv", "ike"),
		Rand:         rand.Reader,
	}
	rc.Phase2LifeKilobytes = s.cfg.Phase2LifeKilobytes
	return ike.NewResponder(rc, serverIKETransport{s})
}

// TCPStats are the far-side stack's TCP counters (its sender serves the
// downloads).
func (s *Server) TCPStats() netstack.TCPStats { return s.stack.TCPStats() }

// IKEAddr is the address to give the client as --server.
func (s *Server) IKEAddr() netip.AddrPort { return s.ike.LocalAddr().(*net.UDPAddr).AddrPort() }

// NATTAddr is the server's NAT-T address (give its port as --natt-port).
func (s *Server) NATTAddr() netip.AddrPort { return s.natt.LocalAddr().(*net.UDPAddr).AddrPort() }

// URL returns an http URL of the target for path (e.g. "/hello.txt").
func (s *Server) URL(path string) string { return "http://" + TargetName + path }

// HelloBody is what /hello.txt returns.
func (s *Server) HelloBody() string { return helloBody }

// BigSHA256 is the hex sha256 of /big.bin.
func (s *Server) BigSHA256() string {
	h := sha256.New()
	io.Copy(h, io.LimitReader(&pattern{}, s.cfg.BigSize))
	return hex.EncodeToString(h.Sum(nil))
}

// IPsecSAs is how many ESP SA pairs were established so far (rekeys and
// renewals count).
func (s *Server) IPsecSAs() int64 { return s.ipsecSAs.Load() }

// IKESAs is how many ISAKMP SAs were established so far (rekeys count).
func (s *Server) IKESAs() int64 { return s.ikeSAs.Load() }

// DeleteIPsecSAs deletes the client's ESP SAs but keeps the ISAKMP SA, as a
// server administrator's "ipsec down" of the child does.
func (s *Server) DeleteIPsecSAs() error { return s.resp.Load().DeleteChildSAs(s.ctx) }

// DeleteIKESA deletes the client's ISAKMP SA but leaves the IPsec SA up, as
// Libreswan does when an IKE SA's lifetime ends. The server answers a new
// Main Mode afterwards.
func (s *Server) DeleteIKESA() error { return s.resp.Load().DeleteISAKMPSA(s.ctx) }

// Freeze makes the server go silent as a frozen or powered-off one does
// (SIGSTOP, a NAT mapping gone): it takes nothing in and sends nothing any
// more, not even its IKE retransmissions, L2TP HELLOs or PPP echoes.
func (s *Server) Freeze() error {
	sink, err := s.cfg.Listen(netip.AddrPort{}) // never read: datagrams to it vanish
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.sink = sink
	s.mu.Unlock()
	s.frozen.Store(true)
	s.data.SetPeer(sink.LocalAddr().(*net.UDPAddr).AddrPort())
	return nil
}

// listenUDP listens on a (zero: an ephemeral port on 127.0.0.1).
func listenUDP(a netip.AddrPort) (datapath.Conn, error) {
	if !a.IsValid() {
		a = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// Close stops the server the way an administrator's restart does: the IKE
// responder sends Deletes for the ESP SAs and the ISAKMP SA first (RFC 2409
// §5.7), then everything stops.
func (s *Server) Close() error {
	s.cancel()
	<-s.respDone
	s.closeSockets()
	s.stack.Close()
	s.wg.Wait()
	return nil
}

func (s *Server) closeSockets() {
	s.ike.Close()
	s.natt.Close()
	s.mu.Lock()
	if s.sink != nil {
		s.sink.Close()
	}
	s.mu.Unlock()
}

func (s *Server) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// run drives the responder roles: IKE, then the LNS, then PPP per session.
func (s *Server) run(ctx context.Context) {
	s.goRun(func() {
		defer close(s.respDone)
		s.runIKE(ctx)
	})
	if every := s.cfg.Faults.RekeyEvery; every > 0 {
		s.goRun(func() { s.rekeyLoop(ctx, every) })
	}
	s.goRun(func() {
		if err := s.lns.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("lns ended", "err", err)
		}
	})
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.lns.Events():
			if up, ok := ev.(l2tp.SessionUp); ok {
				s.data.SetSession(up.Session)
				s.runPPP(ctx)
			}
		}
	}
}

// runIKE runs one responder per ISAKMP SA until ctx ends, installing the
// ESP SAs each one negotiates.
func (s *Server) runIKE(ctx context.Context) {
	for {
		r := s.resp.Load()
		ended := make(chan struct{})
		events := make(chan struct{})
		go func() {
			defer close(events)
			for {
				select {
				case ev := <-r.Events():
					if _, ok := ev.(ike.Phase1Up); ok {
						s.ikeSAs.Add(1)
					}
					if up, ok := ev.(ike.ChildSAUp); ok {
						if err := s.data.InstallSA(up.Child.Inbound, up.Child.Outbound); err != nil {
							s.log.Warn("install SA", "err", err)
						}
						s.ipsecSAs.Add(1)
					}
				case <-ended:
					return
				}
			}
		}()
		err := r.Run(ctx)
		close(ended) // Run's events were all taken: the engine emits synchronously
		<-events
		if ctx.Err() != nil {
			return
		}
		s.log.Info("ike responder ended; answering a new Main Mode", "err", err)
		next, err := s.newResponder()
		if err != nil {
			s.log.Warn("new ike responder", "err", err)
			return
		}
		s.resp.Store(next)
	}
}

// pppAccept is the PPP server's Accept list: nil (its default) or only Auth.
func (s *Server) pppAccept() []ppp.AuthMethod {
	if s.cfg.AuthOnly {
		return []ppp.AuthMethod{s.cfg.Auth}
	}
	return nil
}

// rekeyLoop starts a server-side Quick Mode every interval once an IPsec SA
// exists (Faults.RekeyEvery).
func (s *Server) rekeyLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.ipsecSAs.Load() > 0 && !s.frozen.Load() {
				_ = s.resp.Load().StartQuickMode(ctx)
			}
		}
	}
}

// newPPP makes the PPP server before any session exists, so that frames
// the client sends as soon as its session is up queue for it.
func (s *Server) newPPP() {
	s.pppSrv = ppp.NewServer(ppp.ServerConfig{
		Auth:   s.cfg.Auth,
		Accept: s.pppAccept(),
		Users:  map[string][]byte{s.cfg.User: s.cfg.Password},
		Local:  ServerIP,
		Peer:   ClientIP,
		DNS:    []netip.Addr{ServerIP},
		IPv6:   s.cfg.IPv6,
		Logger: s.log.With("srv", "ppp"),
	}, mangled(s.cfg.Faults.PPPFrame, s.data.SendPPP))
	if s.cfg.Faults.NoIPCP {
		s.data.SetFrames(dropIPCP{s.pppSrv})
		return
	}
	if s.cfg.Faults.NoIPv6CP {
		s.data.SetFrames(dropProto{s.pppSrv, 0x8057})
		return
	}
	s.data.SetFrames(s.pppSrv)
}

// dropIPCP passes PPP frames on except IPCP ones (Faults.NoIPCP).
type dropIPCP struct{ next datapath.FrameSink }

func (d dropIPCP) HandleFrame(frame []byte) {
	if proto, _, err := ppp.DecodeFrame(frame); err == nil && proto == 0x8021 {
		return
	}
	d.next.HandleFrame(frame)
}

// dropProto passes PPP frames on except those of one protocol.
type dropProto struct {
	next  datapath.FrameSink
	proto uint16
}

func (d dropProto) HandleFrame(frame []byte) {
	if proto, _, err := ppp.DecodeFrame(frame); err == nil && proto == d.proto {
		return
	}
	d.next.HandleFrame(frame)
}

// runPPP runs the PPP server for the session that just came up. The test
// server serves one session in its lifetime.
func (s *Server) runPPP(ctx context.Context) {
	srv := s.pppSrv
	s.goRun(func() {
		if err := srv.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Info("ppp server ended", "err", err)
		}
	})
	s.goRun(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-srv.Events():
				if !ok {
					return
				}
				if v6, is := ev.(ppp.IPv6Up); is {
					s.ipv6Up(v6)
				}
			}
		}
	})
}

func (s *Server) readLoop(conn datapath.Conn, natt bool) {
	batch := 1
	if natt {
		batch = 64
	}
	rx := datapath.NewReceiver(conn, batch)
	var last netip.AddrPort // this goroutine's copy of clientNATT: no lock per datagram
	handle := func(dg []byte, from netip.AddrPort) {
		if s.frozen.Load() {
			return
		}
		if !natt {
			s.mu.Lock()
			s.clientIKE = from
			s.mu.Unlock()
			s.resp.Load().HandlePacket(append([]byte(nil), dg...))
			return
		}
		if from != last {
			last = from
			s.mu.Lock()
			s.clientNATT = from
			s.mu.Unlock()
			s.data.SetPeer(from) // answer whatever sent last, like SoftEther
		}
		switch esp.Classify(dg) {
		case esp.KindIKE:
			s.resp.Load().HandlePacket(append([]byte(nil), dg[esp.NonESPMarkerLen:]...))
		case esp.KindESP:
			s.data.Receive(dg)
		}
	}
	for {
		err := rx.Read(handle)
		if natt {
			s.data.Flush() // only the NAT-T reader hands ESP to the path
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
	}
}

type serverIKETransport struct{ s *Server }

func (t serverIKETransport) WriteIKE(msg []byte, natt bool) error {
	if t.s.frozen.Load() {
		return nil
	}
	t.s.mu.Lock()
	to := t.s.clientIKE
	if natt {
		to = t.s.clientNATT
	}
	t.s.mu.Unlock()
	if !to.IsValid() {
		return errors.New("testserver: no client address yet")
	}
	if !natt {
		_, err := t.s.ike.WriteToUDPAddrPort(msg, to)
		return err
	}
	b := make([]byte, esp.NonESPMarkerLen+len(msg))
	copy(b[esp.NonESPMarkerLen:], msg)
	_, err := t.s.natt.WriteToUDPAddrPort(b, to)
	return err
}

type serverL2TPTransport struct{ s *Server }

func (t serverL2TPTransport) WriteL2TP(pkt []byte) error {
	return mangled(t.s.cfg.Faults.L2TPControl, t.s.data.SendL2TP)(pkt)
}

// mangled applies a fault's rewrite (nil: none) in front of send.
func mangled(rewrite func([]byte) [][]byte, send func([]byte) error) func([]byte) error {
	if rewrite == nil {
		return send
	}
	return func(pkt []byte) error {
		for _, p := range rewrite(append([]byte(nil), pkt...)) {
			if err := send(p); err != nil {
				return err
			}
		}
		return nil
	}
}

// startServices runs HTTP, DNS and UDP echo on the far-side stack.
func (s *Server) startServices(ctx context.Context) error {
	ln, err := s.stack.ListenTCP(netip.AddrPortFrom(ServerIP, HTTPPort))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	s.goRun(func() { srv.Serve(ln) })
	s.goRun(func() {
		<-ctx.Done()
		srv.Close()
	})

	dns, err := s.stack.ListenUDP(netip.AddrPortFrom(ServerIP, DNSPort))
	if err != nil {
		return err
	}
	s.goRun(func() { serveDNS(ctx, dns) })
	echo, err := s.stack.ListenUDP(netip.AddrPortFrom(ServerIP, UDPEchoPort))
	if err != nil {
		return err
	}
	s.goRun(func() { serveEcho(ctx, echo) })
	return nil
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello.txt", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, helloBody)
	})
	mux.HandleFunc("/big.bin", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(s.cfg.BigSize, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, io.LimitReader(&pattern{}, s.cfg.BigSize))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x\n", n, h.Sum(nil))
	})
	return mux
}

// pattern is an endless deterministic byte stream (offset mod 251), so the
// size and hash of /big.bin need no stored file.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func serveEcho(ctx context.Context, pc net.PacketConn) {
	go func() { <-ctx.Done(); pc.Close() }()
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// serveDNS answers A queries for TargetName with ServerIP, AAAA queries for
// TargetName and Target6Name with ServerIP6, NXDOMAIN else.
func serveDNS(ctx context.Context, pc net.PacketConn) {
	go func() { <-ctx.Done(); pc.Close() }()
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		hdr, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		rh := dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true, RecursionDesired: hdr.RecursionDesired}
		b := dnsmessage.NewBuilder(nil, rh)
		b.EnableCompression()
		name := q.Name.String()
		match := name == TargetName+"." || name == TargetName
		only6 := name == Target6Name+"."
		match = match || only6
		if !match {
			rh.RCode = dnsmessage.RCodeNameError
			b = dnsmessage.NewBuilder(nil, rh)
		}
		b.StartQuestions()
		b.Question(q)
		if match && q.Type == dnsmessage.TypeAAAA {
			b.StartAnswers()
			b.AAAAResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
				dnsmessage.AAAAResource{AAAA: ServerIP6.As16()})
		}
		if match && !only6 && q.Type == dnsmessage.TypeA {
			b.StartAnswers()
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
				dnsmessage.AResource{A: ServerIP.As4()})
		}
		out, err := b.Finish()
		if err != nil {
			continue
		}
		pc.WriteTo(out, from)
	}
}

// DialContext dials from the far side of the tunnel (the server's stack, as
// a host on the VPN would): for tests of what a client offers on its VPN
// address.
func (s *Server) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return s.stack.DialContext(ctx, network, address)
}
