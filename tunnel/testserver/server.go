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
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

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
	// NoStallProbes turns off its stack's stall probes
	// (netstack.Config.NoStallProbes), to measure what they do.
	NoStallProbes bool
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
	// LateInbound: the inbound ESP SA of a Quick Mode is usable only once
	// its QM3 is processed, not from QM2 on, so ESP right behind QM3 (the
	// client's first SCCRQ) is dropped, as by a server whose daemon
	// programs the kernel's SAs after QM3 (pluto, charon).
	LateInbound bool
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

	// espIn counts the ESP bytes (datagrams, SPI to ICV) received per
	// SPI, when Phase2LifeKilobytes is set: what each of the client's SAs
	// carried, against the byte lifetime.
	espInMu sync.Mutex
	espIn   map[uint32]uint64

	// installed is closed when the first ESP SA pair is installed: an
	// L2TP reply to a packet that came on the prepared inbound SA waits
	// for it (installOnce closes it).
	installed   chan struct{}
	installOnce sync.Once

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
	s := &Server{cfg: cfg, log: cfg.Logger, ike: ikeConn, natt: nattConn, respDone: make(chan struct{}), installed: make(chan struct{})}
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

		NoStallProbes: cfg.NoStallProbes,
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
	if !s.cfg.Faults.LateInbound {
		// ESP the client sends right behind its QM3 opens before the IKE
		// goroutine has processed that QM3 and the pair is installed.
		rc.PrepareInbound = func(k esp.Keys) error { return s.data.PrepareInbound(k) }
	}
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

// ESPBytesIn returns, per SPI, the ESP datagram bytes received on it
// (only with Config.Phase2LifeKilobytes, else nil).
func (s *Server) ESPBytesIn() map[uint32]uint64 {
	s.espInMu.Lock()
	defer s.espInMu.Unlock()
	return maps.Clone(s.espIn)
}

// DataStats returns the counters of the server's data path.
func (s *Server) DataStats() datapath.Stats { return s.data.Stats() }

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
