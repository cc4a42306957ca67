package ppp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/mschap"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// ServerConfig configures the test server (authenticator) role.
type ServerConfig struct {
	// Auth is the method requested first: AuthPAP, AuthCHAPMD5,
	// AuthMSCHAPv2, AuthEAPMD5 or AuthEAPMSCHAPv2 (EAP Identity, then that
	// method). AuthNone: no authentication.
	Auth AuthMethod
	// EAPFirst requests EAP before Auth, like SoftEther 5.01: after the
	// Identity it asks for EAP-TLS only; when the client Naks it (LCP or EAP
	// Nak) it moves on to Auth, renegotiating LCP after an EAP Nak.
	EAPFirst bool
	// Accept lists the methods the server agrees to when the client Naks
	// with one of them. Default {AuthMSCHAPv2, AuthCHAPMD5, AuthPAP}. With
	// Accept = {Auth} it requires Auth, like pppd's require-pap etc.: a Nak
	// is answered by asking for Auth again.
	Accept []AuthMethod
	// TerminateOnNak: when the client Naks Auth and no other method is
	// acceptable, end the link (pppd: "peer refused to authenticate").
	TerminateOnNak bool
	// Users maps user name to password (compared in constant time). An
	// MS-CHAPv2 user "DOMAIN\user" is also looked up as "user".
	Users map[string][]byte
	// Name is the CHAP Name of the authenticator. Default "l2tpproxy-test".
	Name string

	Local, Peer netip.Addr   // server address; address given to the client
	DNS         []netip.Addr // DNS1 (and DNS2) offered
	RejectDNS2  bool         // Configure-Reject option 131, like SoftEther
	AskVJ       bool         // request VJ compression, like pppd
	MRU         uint16       // default 1400
	// IPv6 answers IPv6CP (RFC 5072) instead of Protocol-Rejecting it;
	// IPv6Up is then among the Events.
	IPv6 bool
	// SuggestIID, if non-zero, is Naked to the client once as the
	// Interface-Identifier it should use (RFC 5072 §4.1), as a server that
	// assigns identifiers does.
	SuggestIID [IIDLen]byte

	Clock  clock.Clock
	Logger *slog.Logger
	Rand   io.Reader

	Restart          time.Duration
	MaxConfigure     int
	MaxTerminate     int
	TerminateTimeout time.Duration

	// badAuthenticator corrupts the MS-CHAPv2 S= value (tests).
	badAuthenticator bool
}

// Server is a PPP authenticator and IPCP address server for tests.
type Server struct {
	link
	cfg ServerConfig

	sequence []AuthMethod // methods to request, in order
	seqIdx   int
	authNaks int
	method   AuthMethod // method in our current Auth-Protocol option
	magicOff bool
	ourMagic uint32
	mru      uint16

	authDone  bool
	challenge [mschap.ChallengeLen]byte
	chapID    byte
	chapLeft  int
	user      string
	success   []byte // Success message, resent on a duplicate Response
	eap       eapServer

	vjRejected bool
}

// NewServer makes a test server; see NewClient for send.
func NewServer(cfg ServerConfig, send func([]byte) error) *Server {
	if len(cfg.Accept) == 0 {
		cfg.Accept = []AuthMethod{AuthMSCHAPv2, AuthCHAPMD5, AuthPAP}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Name == "" {
		cfg.Name = "l2tpproxy-test"
	}
	s := &Server{cfg: cfg, mru: cfg.MRU}
	if s.mru == 0 {
		s.mru = DefaultMRU
	}
	s.setDefaults(cfg.Restart, cfg.MaxConfigure, cfg.MaxTerminate, 0, cfg.TerminateTimeout)
	s.init(cfg.Clock, cfg.Logger, cfg.Rand, send, s)
	s.lcp = newFSM(&s.link, protoLCP, "LCP", serverLCP{s})
	s.ipcp = newFSM(&s.link, protoIPCP, "IPCP", serverIPCP{s})
	if cfg.IPv6 {
		s.newIPv6CP(func(ev IPv6Up) { s.emit(ev) }, func() { s.emit(IPv6Down{}) })
		if s.ipv6cp != nil && cfg.SuggestIID != ([IIDLen]byte{}) {
			s.ipv6cp.h = suggestingIPv6{ipv6Handler: s.ipv6cp.h.(ipv6Handler), iid: cfg.SuggestIID, left: new(int)}
			*s.ipv6cp.h.(suggestingIPv6).left = 1
		}
	}
	if cfg.EAPFirst {
		s.sequence = append(s.sequence, AuthEAP)
	}
	if cfg.Auth != AuthNone {
		s.sequence = append(s.sequence, cfg.Auth)
		for _, m := range cfg.Accept {
			if m != cfg.Auth {
				s.sequence = append(s.sequence, m)
			}
		}
		s.method = s.sequence[0]
	}
	var m [4]byte
	io.ReadFull(cfg.Rand, m[:])
	s.ourMagic = binary.BigEndian.Uint32(m[:]) | 1
	return s
}

// HandleFrame queues a received frame; it never blocks.
func (s *Server) HandleFrame(frame []byte) { s.handleFrame(frame) }

// Events returns AuthUp (with the user name) and IPUp; closed when Run returns.
func (s *Server) Events() <-chan Event { return s.events }

// Run serves one session until ctx is cancelled (Terminate-Request, returns
// nil) or the session fails (authentication failure: ErrAuthFailed).
func (s *Server) Run(ctx context.Context) error { return s.run(ctx) }

// VJRejected reports whether the client rejected VJ compression.
func (s *Server) VJRejected() bool { return s.vjRejected }

func (s *Server) closeReason() string { return "Administrative shutdown" }

// ---- LCP options, server side ----

type serverLCP struct{ s *Server }

func (h serverLCP) appendRequest(b []byte) []byte {
	s := h.s
	b = append(b, lcpOptMRU, 4, byte(s.mru>>8), byte(s.mru))
	if o := s.method.authOption(); o != nil {
		b = append(b, lcpOptAuth, byte(2+len(o)))
		b = append(b, o...)
	}
	if !s.magicOff {
		b = append(b, lcpOptMagic, 6)
		b = binary.BigEndian.AppendUint32(b, s.ourMagic)
	}
	return b
}

func (h serverLCP) checkRequest(opts, nak, rej []byte) ([]byte, []byte, error) {
	for rest := opts; len(rest) > 0; {
		typ, val, raw, r, _ := nextOption(rest)
		rest = r
		switch {
		case typ == lcpOptMRU && len(val) == 2, typ == lcpOptMagic && len(val) == 4,
			typ == lcpOptACCM && len(val) == 4, typ == lcpOptPFC && len(val) == 0,
			typ == lcpOptACFC && len(val) == 0:
		default:
			rej = append(rej, raw...) // including Auth-Protocol: we do not authenticate ourselves
		}
	}
	return nak, rej, nil
}

func (h serverLCP) peerAcked(opts []byte) {
	s := h.s
	s.peerMRU = defaultPeerMRU
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		if typ == lcpOptMRU && len(val) == 2 {
			s.peerMRU = binary.BigEndian.Uint16(val)
		}
	}
}

func (h serverLCP) gotNak(opts []byte) error {
	s := h.s
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		switch typ {
		case lcpOptAuth:
			m, ok := parseAuthOption(val)
			if a, found := s.acceptable(m); ok && found {
				s.method = a
				continue
			}
			if s.cfg.TerminateOnNak && s.seqIdx+1 >= len(s.sequence) {
				s.sendPacket(protoLCP, codeTermReq, s.nextID(), []byte("peer refused to authenticate"))
				return fmt.Errorf("%w: client refused %s", ErrAuthRejected, s.method)
			}
			// Move to our next method; when none is left keep asking for the
			// last one, and give up after a while.
			s.authNaks++
			if s.authNaks > 2*DefaultMaxFailure {
				return fmt.Errorf("%w: client declined every method", ErrAuthRejected)
			}
			s.seqIdx = min(s.seqIdx+1, len(s.sequence)-1)
			s.method = s.sequence[s.seqIdx]
		case lcpOptMRU:
			if len(val) == 2 && binary.BigEndian.Uint16(val) >= minMRU {
				s.mru = binary.BigEndian.Uint16(val)
			}
		case lcpOptMagic:
			s.ourMagic += 0x9e3779b9
		}
	}
	return nil
}

// acceptable maps a method the client suggested to one in Accept (an EAP
// suggestion to the EAP method we accept).
func (s *Server) acceptable(m AuthMethod) (AuthMethod, bool) {
	for _, a := range s.cfg.Accept {
		if a == m || (m == AuthEAP && policyBit(a) == AllowEAP) {
			return a, true
		}
	}
	return AuthNone, false
}

func (h serverLCP) gotReject(opts []byte) error {
	s := h.s
	for rest := opts; len(rest) > 0; {
		typ, _, _, r, _ := nextOption(rest)
		rest = r
		switch typ {
		case lcpOptAuth:
			return fmt.Errorf("%w: client rejected authentication", ErrAuthRejected)
		case lcpOptMagic:
			s.magicOff = true
		}
	}
	return nil
}

func (h serverLCP) up() error { return h.s.lcpUp() }

func (s *Server) lcpUp() error {
	if !s.magicOff {
		s.magic = s.ourMagic
	}
	s.emit(LinkUp{})
	switch s.method {
	case AuthNone:
		s.authDone = true
		s.phase = phaseNetwork
		s.openNCPs()
	case AuthPAP:
		s.phase = phaseAuthenticate
		s.authDL = s.clk.Now().Add(s.restart * time.Duration(s.maxConfigure))
	case AuthEAP, AuthEAPMD5, AuthEAPMSCHAPv2:
		s.phase = phaseAuthenticate
		return s.eapStart()
	default:
		s.phase = phaseAuthenticate
		if _, err := io.ReadFull(s.rnd, s.challenge[:]); err != nil {
			return fmt.Errorf("ppp: random challenge: %w", err)
		}
		s.chapID = s.nextID()
		s.chapLeft = s.maxConfigure
		s.sendChallenge()
	}
	return nil
}

func (s *Server) sendChallenge() {
	s.chapLeft--
	s.authDL = s.clk.Now().Add(s.restart)
	s.sendPacket(protoCHAP, 1, s.chapID, []byte{mschap.ChallengeLen}, s.challenge[:], []byte(s.cfg.Name))
}

func (s *Server) authTimeout(time.Time) error {
	if s.authDone {
		return nil
	}
	if s.method != AuthPAP && s.chapLeft > 0 {
		if policyBit(s.method) == AllowEAP {
			s.eapResend()
		} else {
			s.sendChallenge()
		}
		return nil
	}
	return fmt.Errorf("%w: client did not authenticate", ErrTimeout)
}

func (s *Server) password(user string) ([]byte, bool) {
	if pw, ok := s.cfg.Users[user]; ok {
		return pw, true
	}
	pw, ok := s.cfg.Users[mschap.StripDomain(user)]
	return pw, ok
}

func (s *Server) authInput(proto uint16, p packet) error {
	switch {
	case proto == protoEAP && policyBit(s.method) == AllowEAP:
		return s.eapInput(p)
	case proto == protoPAP && s.method == AuthPAP && p.code == 1:
		if s.authDone {
			s.sendPacket(protoPAP, 2, p.id, []byte{0})
			return nil
		}
		user, pw, err := parsePAPRequest(p.data)
		if err != nil {
			return nil
		}
		want, ok := s.password(string(user))
		if !ok || subtle.ConstantTimeCompare(pw, want) != 1 {
			msg := "Authentication failed"
			s.sendPacket(protoPAP, 3, p.id, []byte{byte(len(msg))}, []byte(msg))
			return s.failAuth(string(user))
		}
		msg := "Login ok"
		s.sendPacket(protoPAP, 2, p.id, []byte{byte(len(msg))}, []byte(msg))
		return s.authOK(string(user))
	case proto == protoCHAP && p.code == 2 && (s.method == AuthCHAPMD5 || s.method == AuthMSCHAPv2):
		if p.id != s.chapID {
			return nil
		}
		if s.authDone {
			s.sendPacket(protoCHAP, 3, p.id, s.success)
			return nil
		}
		v, err := parseCHAPValue(p.data)
		if err != nil {
			return nil
		}
		user := string(v.name)
		pw, known := s.password(user)
		if s.method == AuthCHAPMD5 {
			want := mschap.CHAPMD5Response(p.id, pw, s.challenge[:])
			if !known || subtle.ConstantTimeCompare(v.value, want[:]) != 1 {
				s.sendPacket(protoCHAP, 4, p.id, []byte("Access denied"))
				return s.failAuth(user)
			}
			s.success = []byte("Access granted")
			s.sendPacket(protoCHAP, 3, p.id, s.success)
			return s.authOK(user)
		}
		peerChal, nt, _, err := mschap.ParseResponseValue(v.value)
		if err != nil {
			return nil
		}
		want := mschap.GenerateNTResponse(s.challenge, peerChal, user, pw)
		if !known || subtle.ConstantTimeCompare(nt[:], want[:]) != 1 {
			msg := mschap.FormatFailure(691, false, s.challenge, 3, "Authentication failed")
			s.sendPacket(protoCHAP, 4, p.id, []byte(msg))
			return s.failAuth(user)
		}
		ar := mschap.GenerateAuthenticatorResponse(pw, nt, peerChal, s.challenge, user)
		if s.cfg.badAuthenticator {
			ar[0] ^= 0x80
		}
		s.success = []byte(mschap.FormatAuthenticatorResponse(ar) + " M=Access granted")
		s.sendPacket(protoCHAP, 3, p.id, s.success)
		return s.authOK(user)
	}
	return nil
}

func (s *Server) authOK(user string) error {
	s.authDone = true
	s.authDL = time.Time{}
	s.user = user
	s.emit(AuthUp{Method: s.method, User: user})
	s.phase = phaseNetwork
	s.openNCPs()
	return nil
}

// failAuth ends the session like pppd: Terminate-Request after the Failure.
func (s *Server) failAuth(user string) error {
	s.authDL = time.Time{}
	s.log.Info("ppp: authentication failed", "user", user)
	s.sendPacket(protoLCP, codeTermReq, s.nextID(), []byte("Authentication failed"))
	return fmt.Errorf("%w: user %q", ErrAuthFailed, printable([]byte(user)))
}

// ---- IPCP options, server side ----

type serverIPCP struct{ s *Server }

func (h serverIPCP) appendRequest(b []byte) []byte {
	s := h.s
	if s.cfg.AskVJ && !s.vjRejected {
		b = append(b, ipcpOptVJ, 6, 0x00, 0x2d, 0x0f, 0x01) // pppd: compress VJ 0f 01
	}
	return appendAddrOpt(b, ipcpOptAddr, s.cfg.Local)
}

func (h serverIPCP) checkRequest(opts, nak, rej []byte) ([]byte, []byte, error) {
	s := h.s
	for rest := opts; len(rest) > 0; {
		typ, val, raw, r, _ := nextOption(rest)
		rest = r
		var want netip.Addr
		switch {
		case typ == ipcpOptAddr && len(val) == 4:
			want = s.cfg.Peer
		case typ == ipcpOptDNS1 && len(val) == 4 && len(s.cfg.DNS) >= 1:
			want = s.cfg.DNS[0]
		case typ == ipcpOptDNS2 && len(val) == 4 && len(s.cfg.DNS) >= 2 && !s.cfg.RejectDNS2:
			want = s.cfg.DNS[1]
		default:
			rej = append(rej, raw...)
			continue
		}
		if netip.AddrFrom4([4]byte(val)) != want {
			nak = appendAddrOpt(nak, typ, want)
		}
	}
	return nak, rej, nil
}

func (h serverIPCP) peerAcked([]byte)    {}
func (h serverIPCP) gotNak([]byte) error { return nil }

func (h serverIPCP) gotReject(opts []byte) error {
	for rest := opts; len(rest) > 0; {
		typ, _, _, r, _ := nextOption(rest)
		rest = r
		if typ == ipcpOptVJ {
			h.s.vjRejected = true
		}
	}
	return nil
}

func (h serverIPCP) up() error {
	s := h.s
	s.emit(IPUp{Local: s.cfg.Local, Peer: s.cfg.Peer, DNS: slices.Clone(s.cfg.DNS), PeerMRU: s.peerMRU})
	return nil
}
