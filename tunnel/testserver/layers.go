package testserver

// The responder roles, one goroutine each: IKE, the LNS and PPP per session,
// fed by the read loops of the two UDP sockets (with the configured faults).

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

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
						s.installOnce.Do(func() { close(s.installed) })
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
			if s.cfg.Phase2LifeKilobytes != 0 {
				s.countESPIn(dg)
			}
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

// countESPIn adds an ESP datagram to its SPI's count (Server.ESPBytesIn).
func (s *Server) countESPIn(dg []byte) {
	spi, ok := esp.PeekSPI(dg)
	if !ok {
		return
	}
	s.espInMu.Lock()
	if s.espIn == nil {
		s.espIn = make(map[uint32]uint64)
	}
	s.espIn[spi] += uint64(len(dg))
	s.espInMu.Unlock()
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
	return mangled(t.s.cfg.Faults.L2TPControl, t.s.sendL2TP)(pkt)
}

// installWait bounds how long an L2TP reply waits for the first SA pair.
const installWait = time.Second

// sendL2TP sends an L2TP control packet. The first SCCRQ may come on the
// prepared inbound SA before the IKE goroutine has processed QM3 and the
// pair is installed (a kernel server has both directions once it decrypts
// anything): the SCCRP then waits for the install instead of being lost.
func (s *Server) sendL2TP(pkt []byte) error {
	err := s.data.SendL2TP(pkt)
	if !errors.Is(err, datapath.ErrNoSA) {
		return err
	}
	t := time.NewTimer(installWait)
	defer t.Stop()
	select {
	case <-s.installed:
		return s.data.SendL2TP(pkt)
	case <-t.C:
		return err
	case <-s.ctx.Done():
		return err
	}
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
