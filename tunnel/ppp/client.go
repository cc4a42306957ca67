package ppp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/mschap"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// Config configures a Client.
type Config struct {
	User     string
	Password []byte // secret: never logged, never in errors

	// Auth is the set of methods we agree to authenticate with (zero:
	// DefaultAuthPolicy, everything but PAP).
	Auth AuthPolicy
	// NoIPv6 turns IPv6CP off: the server's IPv6CP is Protocol-Rejected.
	NoIPv6 bool
	// MRU is what we ask to receive (LCP MRU option). Default 1400.
	MRU uint16

	Clock  clock.Clock  // default clock.Real
	Logger *slog.Logger // default: discard
	Rand   io.Reader    // default crypto/rand

	// RFC 1661 §4.6 counters; zero means the default.
	Restart      time.Duration // Restart timer, default 3 s
	MaxConfigure int           // default 10
	MaxTerminate int           // default 2
	MaxFailure   int           // Naks before giving up on Auth-Protocol, default 5
	// TerminateTimeout bounds the wait for Terminate-Ack on ctx cancel. Default 2 s.
	TerminateTimeout time.Duration
	// PeerRTT, if known (IKE's Quick Mode), is the round trip to the
	// server. A first Configure-Request of the server's that comes more
	// than twice that after ours, which it has not answered, means ours
	// was lost (pppd started after it came, xl2tpd starts pppd on ICCN):
	// ours is resent at once instead of after Restart. Zero: 250 ms.
	PeerRTT time.Duration
}

// Client is the PPP client (authenticatee) role.
type Client struct {
	link
	cfg Config

	// LCP state.
	mruRejected   bool
	magicRejected bool
	ourMagic      uint32
	authOffered   AuthMethod // auth method in the peer's request under consideration
	authMethod    AuthMethod // agreed (peer's acked request)
	refused       string     // the last Auth-Protocol we Naked (display name), "" if none
	refusedMethod AuthMethod // its method, AuthNone if we do not implement it
	suggested     AuthPolicy // methods suggested since the server asked for refused
	authNaks      int

	// Authentication state.
	authDone bool
	papID    byte
	papLeft  int
	chapID   byte
	chapSent bool
	chapChal []byte // challenge we last answered
	chapResp []byte // cached Response data (Value-Size|Value|Name)
	peerChal [mschap.ChallengeLen]byte
	authChal [mschap.ChallengeLen]byte
	ntResp   [mschap.NTResponseLen]byte
	eap      eapClient

	// IPCP state.
	local          netip.Addr
	peer           netip.Addr
	dns1, dns2     netip.Addr
	noDNS1, noDNS2 bool
}

// NewClient makes a client. send receives protocol(2) | information; it
// must not retain the slice. Run drives the client.
func NewClient(cfg Config, send func(frame []byte) error) *Client {
	if cfg.Auth&allowAll == 0 {
		cfg.Auth = DefaultAuthPolicy
	}
	if cfg.MRU == 0 {
		cfg.MRU = DefaultMRU
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	c := &Client{cfg: cfg}
	c.setDefaults(cfg.Restart, cfg.MaxConfigure, cfg.MaxTerminate, cfg.MaxFailure, cfg.TerminateTimeout)
	if cfg.PeerRTT > 0 {
		c.resendAfter = min(max(2*cfg.PeerRTT, minResendAfter), defaultResendAfter)
	}
	c.init(cfg.Clock, cfg.Logger, cfg.Rand, send, c)
	c.lcp = newFSM(&c.link, protoLCP, "LCP", clientLCP{c})
	c.lcp.renegotiate = c.lcpRenegotiate
	c.ipcp = newFSM(&c.link, protoIPCP, "IPCP", clientIPCP{c})
	if !cfg.NoIPv6 {
		c.newIPv6CP(func(ev IPv6Up) { c.emit(ev) }, func() { c.emit(IPv6Down{}) })
	}
	var m [4]byte
	if _, err := io.ReadFull(cfg.Rand, m[:]); err != nil {
		c.magicRejected = true // no randomness: do not negotiate a magic number
	}
	c.ourMagic = binary.BigEndian.Uint32(m[:])
	if c.ourMagic == 0 {
		c.magicRejected = true
	}
	c.local = netip.IPv4Unspecified()
	c.dns1, c.dns2 = netip.IPv4Unspecified(), netip.IPv4Unspecified()
	return c
}

// HandleFrame queues a received PPP frame (with or without FF 03, PFC
// tolerated). Ownership of frame passes to the Client. It never blocks: when
// the queue (128 frames) is full the frame is dropped. Data frames should be
// demultiplexed by the caller with DecodeFrame (ProtoIPv4 to the IP stack);
// IPv4, IPv6 and VJ frames that reach HandleFrame are dropped.
func (c *Client) HandleFrame(frame []byte) { c.handleFrame(frame) }

// Events returns the event channel (buffered; closed when Run returns).
func (c *Client) Events() <-chan Event { return c.events }

// Run negotiates LCP, authenticates, negotiates IPCP and then keeps the link
// (answers Echo-Requests, rejects unknown protocols) until ctx is cancelled
// (then it sends Terminate-Request, waits briefly for the Ack and returns
// nil; with the cause ErrPeerUnreachable it returns nil at once) or the link fails (wrapped ErrAuthFailed, ErrAuthRejected, ErrNoIP,
// ErrTimeout, ErrTerminated). A server that requires a method the policy
// does not allow gives an *AuthRefusedError (which is ErrAuthRejected).
func (c *Client) Run(ctx context.Context) error {
	err := c.run(ctx)
	if errors.Is(err, ErrTerminated) && c.refused != "" && !c.cfg.Auth.Allows(c.refusedMethod) && !c.authDone && c.ipcp.state != stOpened && !errors.Is(err, ErrAuthRejected) {
		// The server gave up after we declined its Auth-Protocol. pppd
		// first drops the option (LCP opens without authentication), then
		// says "peer refused to authenticate" with a Terminate-Request.
		return fmt.Errorf("%w (%w)", c.refusedError(), err)
	}
	return err
}

func (c *Client) refusedError() *AuthRefusedError {
	return &AuthRefusedError{Method: c.refusedMethod, Name: c.refused}
}

// lcpRenegotiate allows the server to renegotiate LCP while we wait for it
// to authenticate us (RFC 1661 §4.3, Opened + RCR: This-Layer-Down, then
// negotiate again). SoftEther 5.01 does this when we Nak the EAP method it
// asks for: it Protocol-Rejects our EAP Nak and asks for MS-CHAPv2 in a new
// LCP Configure-Request. At any other time it ends the session.
func (c *Client) lcpRenegotiate() bool {
	if c.phase != phaseAuthenticate || c.authDone {
		return false
	}
	c.log.Info("ppp: the server renegotiates LCP before authentication", "was", c.authMethod)
	c.phase = phaseEstablish
	c.authDL = time.Time{}
	c.authMethod, c.authOffered = AuthNone, AuthNone
	c.chapSent = false
	c.eap = eapClient{}
	return true
}

func (c *Client) closeReason() string { return "User request" }

// ---- LCP options, client side ----

type clientLCP struct{ c *Client }

func (h clientLCP) appendRequest(b []byte) []byte {
	c := h.c
	if !c.mruRejected {
		b = append(b, lcpOptMRU, 4, byte(c.cfg.MRU>>8), byte(c.cfg.MRU))
	}
	if !c.magicRejected {
		b = append(b, lcpOptMagic, 6)
		b = binary.BigEndian.AppendUint32(b, c.ourMagic)
	}
	return b
}

// checkRequest applies RFC 1661 §6 to the server's request: Auth-Protocol is
// what the server wants us to authenticate with. ACK it if the policy allows
// it; otherwise Nak with the strongest allowed method (RFC 1661 §5.3) we did
// not yet suggest for it. A server that keeps asking for the same method
// once we have suggested every allowed one requires it: that is an
// *AuthRefusedError (SoftEther moves on by itself: EAP, MS-CHAPv2, PAP).
func (h clientLCP) checkRequest(opts, nak, rej []byte) ([]byte, []byte, error) {
	c := h.c
	c.authOffered = AuthNone
	for rest := opts; len(rest) > 0; {
		typ, val, raw, r, _ := nextOption(rest)
		rest = r
		switch {
		case typ == lcpOptMRU && len(val) == 2:
			if binary.BigEndian.Uint16(val) < minMRU {
				nak = append(nak, lcpOptMRU, 4, 0, minMRU)
			}
		case typ == lcpOptACCM && len(val) == 4,
			typ == lcpOptMagic && len(val) == 4,
			typ == lcpOptPFC && len(val) == 0,
			typ == lcpOptACFC && len(val) == 0:
			// Acceptable. We always send FF 03 and 2-byte protocols, which
			// the peer must accept anyway; we tolerate both on receive.
		case typ == lcpOptAuth:
			m, known := parseAuthOption(val)
			if known && c.cfg.Auth.Allows(m) && !c.softEtherEAP(m, opts, raw) {
				c.authOffered = m
				continue
			}
			if name := authName(val); name != c.refused {
				c.refused, c.suggested = name, 0
				c.refusedMethod = AuthNone
				if known {
					c.refusedMethod = m
				}
			}
			c.authNaks++
			want := c.nextSuggestion()
			if want == AuthNone || c.authNaks > 3*c.maxFailure {
				return nil, nil, c.refusedError()
			}
			c.suggested |= policyBit(want)
			c.log.Debug("ppp: Nak Auth-Protocol", "offered", c.refused, "suggest", want)
			o := want.authOption()
			nak = append(nak, lcpOptAuth, byte(2+len(o)))
			nak = append(nak, o...)
		default:
			rej = append(rej, raw...)
		}
	}
	return nak, rej, nil
}

// softEtherEAP reports whether to decline an allowed EAP once, toward
// MS-CHAPv2, because the request looks like SoftEther's: Auth-Protocol EAP
// as its only option (SoftEther's LCP requests carry nothing else; pppd,
// strongSwan/xl2tpd and RRAS servers always add Magic-Number and more).
// SoftEther 5.01 (Debian 12's build, git 8181039) offers only EAP-TLS inside
// EAP, and after an EAP Nak its fallback to MS-CHAPv2 never starts: it keeps
// AuthProtocol = EAP, and the Ack of its new MS-CHAPv2 request is only acted
// on when AuthProtocol is unset (Cedar/Proto_PPP.c,
// PPPProcessLCPResponsePacket). An LCP Nak works: it moves on to MS-CHAPv2.
// A server that asks for EAP again gets it.
func (c *Client) softEtherEAP(m AuthMethod, opts, raw []byte) bool {
	return m == AuthEAP && len(opts) == len(raw) && c.cfg.Auth.Allows(AuthMSCHAPv2) && c.refused != "EAP"
}

// nextSuggestion is the strongest allowed method not yet suggested for the
// method the server asks for, or AuthNone.
func (c *Client) nextSuggestion() AuthMethod {
	for _, o := range policyOrder {
		if c.cfg.Auth&o.bit != 0 && c.suggested&o.bit == 0 {
			return o.method
		}
	}
	return AuthNone
}

// authName names an Auth-Protocol option value for the user.
func authName(v []byte) string {
	if m, ok := parseAuthOption(v); ok {
		return m.String()
	}
	switch {
	case len(v) == 3 && v[0] == 0xc2 && v[1] == 0x23 && v[2] == 0x80:
		return "MS-CHAP (v1)"
	case len(v) == 3 && v[0] == 0xc2 && v[1] == 0x23:
		return fmt.Sprintf("CHAP algorithm %d", v[2])
	case len(v) >= 2 && v[0] == 0xc0 && v[1] == 0x27:
		return "SPAP"
	}
	return fmt.Sprintf("authentication protocol %x", v)
}

func (h clientLCP) peerAcked(opts []byte) {
	c := h.c
	c.peerMRU = defaultPeerMRU
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		if typ == lcpOptMRU && len(val) == 2 {
			c.peerMRU = binary.BigEndian.Uint16(val)
		}
	}
	c.authMethod = c.authOffered
}

func (h clientLCP) gotNak(opts []byte) error {
	c := h.c
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		switch {
		case typ == lcpOptMRU && len(val) == 2:
			if v := binary.BigEndian.Uint16(val); v >= minMRU {
				c.cfg.MRU = v
			}
		case typ == lcpOptMagic && len(val) == 4:
			var m [4]byte
			if _, err := io.ReadFull(c.rnd, m[:]); err != nil || binary.BigEndian.Uint32(m[:]) == 0 {
				c.magicRejected = true
			} else {
				c.ourMagic = binary.BigEndian.Uint32(m[:])
			}
		}
	}
	return nil
}

func (h clientLCP) gotReject(opts []byte) error {
	c := h.c
	for rest := opts; len(rest) > 0; {
		typ, _, _, r, _ := nextOption(rest)
		rest = r
		switch typ {
		case lcpOptMRU:
			c.mruRejected = true
		case lcpOptMagic:
			c.magicRejected = true // SoftEther rejects Magic-Number
		}
	}
	return nil
}

func (h clientLCP) up() error { return h.c.lcpUp() }

func (c *Client) lcpUp() error {
	c.magic = 0
	if !c.magicRejected {
		c.magic = c.ourMagic
	}
	c.emit(LinkUp{})
	c.log.Debug("ppp: LCP up", "auth", c.authMethod, "peer_mru", c.peerMRU)
	switch c.authMethod {
	case AuthNone:
		c.enterNetwork()
	case AuthPAP:
		c.phase = phaseAuthenticate
		c.papID = c.nextID()
		c.papLeft = c.maxConfigure
		c.sendPAP()
	case AuthCHAPMD5, AuthMSCHAPv2, AuthEAP:
		// The server speaks first (Challenge, EAP Request/Identity) and
		// retransmits; we only bound the wait.
		c.phase = phaseAuthenticate
		c.authDL = c.clk.Now().Add(c.restart * time.Duration(c.maxConfigure))
	}
	return nil
}

func (c *Client) enterNetwork() {
	c.phase = phaseNetwork
	// IPCP first, IPv6CP once IPCP is up (clientIPCP.up): SoftEther ignores
	// both requests when IPv6CP's comes first right after authentication,
	// which cost 3-5 s of IPv4 connect time. A server's IPv6CP request
	// before then is discarded (RFC 1661 §4.3, Initial state) and
	// retransmitted by it.
	c.ipcp.open()
}

// ---- authentication, client side ----

func (c *Client) sendPAP() {
	user := []byte(c.cfg.User)
	pw := c.cfg.Password
	if len(user) > 255 {
		user = user[:255]
	}
	if len(pw) > 255 {
		pw = pw[:255]
	}
	c.papLeft--
	c.authDL = c.clk.Now().Add(c.restart)
	c.sendPacket(protoPAP, 1, c.papID, []byte{byte(len(user))}, user, []byte{byte(len(pw))}, pw)
	clear(c.out) // the frame buffer held the password
}

func (c *Client) authTimeout(time.Time) error {
	if c.authDone {
		return nil
	}
	if c.authMethod == AuthPAP && c.papLeft > 0 {
		c.sendPAP()
		return nil
	}
	return fmt.Errorf("%w: no %s result from server", ErrTimeout, c.authMethod)
}

func (c *Client) authInput(proto uint16, p packet) error {
	switch {
	case proto == protoPAP && c.authMethod == AuthPAP:
		return c.papInput(p)
	case proto == protoCHAP && (c.authMethod == AuthCHAPMD5 || c.authMethod == AuthMSCHAPv2):
		return c.chapInput(p)
	case proto == protoEAP && c.authMethod == AuthEAP:
		return c.eapInput(p)
	}
	return nil
}

func (c *Client) papInput(p packet) error {
	if p.id != c.papID || c.authDone {
		return nil
	}
	msg := parsePAPReply(p.data)
	switch p.code {
	case 2: // Authenticate-Ack
		return c.authSucceeded(AuthPAP, printable(msg))
	case 3: // Authenticate-Nak
		return c.authFailed(fmt.Errorf("%w: %s", ErrAuthFailed, printable(msg)))
	}
	return nil
}

func (c *Client) authSucceeded(m AuthMethod, msg string) error {
	c.authDone = true
	c.authDL = time.Time{}
	c.log.Debug("ppp: authenticated", "method", m)
	c.emit(AuthUp{Method: m, Message: msg, User: c.cfg.User})
	c.enterNetwork()
	return nil
}

// authFailed tells the server we are leaving (pppd does the same) without
// waiting for the Ack, and returns err.
func (c *Client) authFailed(err error) error {
	c.sendPacket(protoLCP, codeTermReq, c.nextID(), []byte("Authentication failed"))
	return err
}

func (c *Client) chapInput(p packet) error {
	switch p.code {
	case 1: // Challenge
		v, err := parseCHAPValue(p.data)
		if err != nil {
			c.log.Debug("ppp: bad CHAP Challenge", "err", err)
			return nil
		}
		if c.chapSent && p.id == c.chapID && bytes.Equal(v.value, c.chapChal) {
			// Retransmitted Challenge: the identical Response, since a new
			// Peer-Challenge would change the expected authenticator (pppd).
			c.sendPacket(protoCHAP, 2, p.id, c.chapResp)
			return nil
		}
		return c.answerChallenge(p.id, v.value)
	case 3, 4: // Success, Failure
		if !c.chapSent || p.id != c.chapID {
			return nil
		}
		if c.authDone {
			return nil // retransmitted Success, or a Failure after a re-challenge we ignore
		}
		if p.code == 4 {
			return c.authFailed(fmt.Errorf("%w: %s", ErrAuthFailed, printable(p.data)))
		}
		if c.authMethod == AuthMSCHAPv2 {
			ok, text := mschap.CheckAuthenticatorResponse(c.cfg.Password, c.ntResp, c.peerChal, c.authChal, c.cfg.User, p.data)
			if !ok {
				return c.authFailed(fmt.Errorf("%w: server failed to prove it knows the password", ErrAuthFailed))
			}
			return c.authSucceeded(c.authMethod, printable([]byte(text)))
		}
		return c.authSucceeded(c.authMethod, printable(p.data))
	}
	return nil
}

func (c *Client) answerChallenge(id byte, challenge []byte) error {
	name := []byte(c.cfg.User)
	var value []byte
	switch c.authMethod {
	case AuthCHAPMD5:
		r := mschap.CHAPMD5Response(id, c.cfg.Password, challenge)
		value = r[:]
	case AuthMSCHAPv2:
		if len(challenge) != mschap.ChallengeLen {
			c.log.Debug("ppp: MS-CHAPv2 challenge of wrong size", "len", len(challenge))
			return nil
		}
		copy(c.authChal[:], challenge)
		if _, err := io.ReadFull(c.rnd, c.peerChal[:]); err != nil {
			return fmt.Errorf("ppp: random peer challenge: %w", err)
		}
		c.ntResp = mschap.GenerateNTResponse(c.authChal, c.peerChal, c.cfg.User, c.cfg.Password)
		rv := mschap.NewResponseValue(c.peerChal, c.ntResp)
		value = rv[:]
	}
	if len(name)+len(value)+1 > 1400 {
		name = name[:1400-len(value)-1]
	}
	c.chapResp = append(append(append(c.chapResp[:0], byte(len(value))), value...), name...)
	c.chapChal = append(c.chapChal[:0], challenge...)
	c.chapID, c.chapSent = id, true
	c.sendPacket(protoCHAP, 2, id, c.chapResp)
	return nil
}

// ---- IPCP options, client side ----

type clientIPCP struct{ c *Client }

// appendAddrOpt appends a 4-byte address option; a non-IPv4 a is sent as 0.0.0.0.
func appendAddrOpt(b []byte, typ byte, a netip.Addr) []byte {
	var v [4]byte
	if a.Is4() {
		v = a.As4()
	}
	return append(b, typ, 6, v[0], v[1], v[2], v[3])
}

func (h clientIPCP) appendRequest(b []byte) []byte {
	c := h.c
	b = appendAddrOpt(b, ipcpOptAddr, c.local)
	if !c.noDNS1 {
		b = appendAddrOpt(b, ipcpOptDNS1, c.dns1)
	}
	if !c.noDNS2 {
		b = appendAddrOpt(b, ipcpOptDNS2, c.dns2)
	}
	return b
}

// checkRequest: ACK the server's own address; Configure-Reject VJ
// compression (pppd asks for it) and everything else.
func (h clientIPCP) checkRequest(opts, nak, rej []byte) ([]byte, []byte, error) {
	for rest := opts; len(rest) > 0; {
		typ, val, raw, r, _ := nextOption(rest)
		rest = r
		if typ == ipcpOptAddr && len(val) == 4 {
			continue
		}
		rej = append(rej, raw...)
	}
	return nak, rej, nil
}

func (h clientIPCP) peerAcked(opts []byte) {
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		if typ == ipcpOptAddr && len(val) == 4 {
			h.c.peer = netip.AddrFrom4([4]byte(val))
		}
	}
}

func (h clientIPCP) gotNak(opts []byte) error {
	c := h.c
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		if len(val) != 4 {
			continue
		}
		a := netip.AddrFrom4([4]byte(val))
		switch typ {
		case ipcpOptAddr:
			c.local = a
		case ipcpOptDNS1:
			c.dns1 = a
		case ipcpOptDNS2:
			c.dns2 = a
		}
	}
	return nil
}

func (h clientIPCP) gotReject(opts []byte) error {
	c := h.c
	for rest := opts; len(rest) > 0; {
		typ, _, _, r, _ := nextOption(rest)
		rest = r
		switch typ {
		case ipcpOptAddr:
			return fmt.Errorf("%w: server rejected the IP-Address option", ErrNoIP)
		case ipcpOptDNS1:
			c.noDNS1 = true
		case ipcpOptDNS2:
			c.noDNS2 = true // SoftEther rejects the secondary DNS
		}
	}
	return nil
}

func (h clientIPCP) up() error {
	c := h.c
	if !c.local.IsValid() || c.local.IsUnspecified() {
		return fmt.Errorf("%w: server acknowledged 0.0.0.0", ErrNoIP)
	}
	var dns []netip.Addr
	if !c.noDNS1 && !c.dns1.IsUnspecified() {
		dns = append(dns, c.dns1)
	}
	if !c.noDNS2 && !c.dns2.IsUnspecified() && c.dns2 != c.dns1 {
		dns = append(dns, c.dns2)
	}
	c.log.Debug("ppp: IPCP up", "local", c.local, "peer", c.peer, "dns", dns)
	c.emit(IPUp{Local: c.local, Peer: c.peer, DNS: dns, PeerMRU: c.peerMRU})
	if c.ipv6cp != nil && c.ipv6cp.state == stInitial && !c.ipv6cp.stopped {
		c.ipv6cp.open()
	}
	return nil
}
