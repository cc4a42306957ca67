// Package ike implements the IKEv1 exchanges an L2TP/IPsec client needs:
// Main Mode or Aggressive Mode with a pre-shared key (RFC 2409 §5, §5.4), always-forced NAT
// traversal (RFC 3947), Quick Mode for one UDP-encapsulated transport-mode
// ESP SA carrying L2TP (RFC 2409 §5.5, RFC 3948), and the Informational
// exchanges that follow (Delete, DPD R-U-THERE of RFC 3706, notifies).
//
// Initiator is the client; Responder is the server side used by in-process
// tests. Each runs in one goroutine (Run) that owns all state and selects
// over received packets, a retransmission timer and its context.
package ike

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/dh"
	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// Sentinel errors returned (wrapped) by Run.
var (
	ErrTimeout          = errors.New("ike: peer did not answer")
	ErrNoProposalChosen = errors.New("ike: no proposal chosen")
	ErrAuthFailed       = errors.New("ike: authentication failed")
	ErrPhase2Failed     = errors.New("ike: quick mode failed")
	ErrDeleted          = errors.New("ike: ISAKMP SA deleted by peer")
	ErrNATTUnsupported  = errors.New("ike: peer does not support NAT traversal")
	ErrConfig           = errors.New("ike: invalid configuration")
	// ErrPeerDead: dead-peer detection (RFC 3706) got no answer and
	// nothing else arrived from the peer.
	ErrPeerDead = errors.New("ike: peer is dead")
	// ErrLostState: during Main Mode the server answered INVALID-COOKIE
	// (RFC 2408 §3.14.1, type 4): it no longer knows the exchange (it
	// restarted, or a backlog of our retransmitted MM1s made it start
	// another). Retransmitting cannot help; a new attempt can.
	ErrLostState = errors.New("ike: the server lost the exchange")
)

// Transport sends IKE messages to the peer.
type Transport interface {
	// WriteIKE sends one ISAKMP message. natt=false: to the peer's IKE port (500) as is.
	// natt=true: to the peer's NAT-T port; the transport prepends the 4-byte non-ESP marker.
	WriteIKE(msg []byte, natt bool) error
}

// Phase1Transform is one phase-1 (ISAKMP SA) suite offered or accepted.
type Phase1Transform struct {
	Enc     uint16 // 1 DES, 5 3DES, 7 AES-CBC (RFC 2409 Appendix A)
	KeyBits int    // AES key length; ignored for DES/3DES
	Hash    uint16 // 1 MD5, 2 SHA1, 4 SHA2-256, 5 SHA2-384, 6 SHA2-512
	Group   uint16 // DH group: MODP 2, 5, 14, 15, 16 or ECP 19, 20, 21 (crypto/dh)
}

// String names the suite as events print it, e.g. "AES-CBC-256/HMAC-SHA2-256/MODP2048".
func (t Phase1Transform) String() string {
	return t.encName() + "/HMAC-" + ikev1.HashAlg(t.Hash).String() + "/" + groupName(t.Group)
}

// short is the form used in the "offered ..." list of ErrNoProposalChosen.
func (t Phase1Transform) short() string {
	return t.encName() + "/" + ikev1.HashAlg(t.Hash).String() + "/" + groupName(t.Group)
}

func (t Phase1Transform) encName() string {
	switch t.Enc {
	case EncDES:
		return "DES-CBC"
	case Enc3DES:
		return "3DES-CBC"
	case EncAESCBC:
		return fmt.Sprintf("AES-CBC-%d", t.KeyBits)
	}
	return fmt.Sprintf("enc#%d", t.Enc)
}

func groupName(g uint16) string { return dh.Name(g) }

func (t Phase1Transform) normalized() Phase1Transform {
	if t.Enc != EncAESCBC {
		t.KeyBits = 0
	}
	return t
}

// DefaultPhase1 is offered as one proposal with these transforms, in this
// order: the union of what Windows 10/11 and macOS/iOS offer (nm-l2tp's
// merged list; the macOS list from a strongSwan "received proposals" log,
// see shared/protocol/NOTES.md §4) plus AES-128 with SHA2-256/SHA1 and
// MODP2048 (hwdsl2's Libreswan), strongest first: AES-256 before AES-128
// before 3DES, SHA2 before SHA1 before MD5, ECP and MODP2048 before the
// smaller MODP groups. As ParsePhase1 writes it:
//
//	aes256-sha512-modp2048, aes256-sha256-ecp384, aes256-sha256-ecp256,
//	aes256-sha256-modp2048, aes256-sha1-ecp384, aes256-sha1-modp2048,
//	aes128-sha256-modp2048, aes128-sha1-ecp256, aes128-sha1-modp2048,
//	aes256-sha256-modp3072, aes256-sha256-modp4096,
//	aes256-sha256-modp1536, aes256-sha1-modp1536,
//	aes256-sha256-modp1024, aes256-sha1-modp1024, aes128-sha1-modp1024,
//	3des-sha1-modp2048, 3des-sha1-modp1024, aes256-md5-modp2048,
//	aes256-md5-modp1536, aes256-md5-modp1024, aes128-md5-modp1024,
//	3des-md5-modp1024
//
// Beyond the union: ECP384/256 and MODP3072/4096 with AES-256/SHA2-256, as
// servers configured for "only strong groups" (strongSwan/Libreswan ECP or
// MODP3072 lists) accept nothing else. MODP3072/4096 come after MODP2048:
// their DH costs both sides several times more, so they are chosen only by
// a server that requires them.
//
// 23 transforms in one proposal (an 832-byte SA payload), an MM1 of about 950
// bytes, below any path MTU (macOS sends 14). We found no transform-count
// limit in strongSwan (proposal_substructure.c checks the count only against
// the parsed list), Libreswan (ikev1_spdb_struct.c) or SoftEther
// (Proto_IkePacket.c); make interop checks each with this offer.
// SoftEther and Libreswan take the first transform they accept in our
// order (SoftEther skips ECP, Debian's Libreswan skips MODP1024/MD5 it
// is built without); strongSwan uses its own order. Each is checked in
// make interop.
var DefaultPhase1 = []Phase1Transform{
	{Enc: EncAESCBC, KeyBits: 256, Hash: 6, Group: 14},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 4, Group: 20},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 4, Group: 19},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 4, Group: 14},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 2, Group: 20},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 2, Group: 14},
	{Enc: EncAESCBC, KeyBits: 128, Hash: 4, Group: 14},
	{Enc: EncAESCBC, KeyBits: 128, Hash: 2, Group: 19},
	{Enc: EncAESCBC, KeyBits: 128, Hash: 2, Group: 14},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 4, Group: 15},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 4, Group: 16},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 4, Group: 5},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 2, Group: 5},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 4, Group: 2},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 2, Group: 2},
	{Enc: EncAESCBC, KeyBits: 128, Hash: 2, Group: 2},
	{Enc: Enc3DES, Hash: 2, Group: 14},
	{Enc: Enc3DES, Hash: 2, Group: 2},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 1, Group: 14},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 1, Group: 5},
	{Enc: EncAESCBC, KeyBits: 256, Hash: 1, Group: 2},
	{Enc: EncAESCBC, KeyBits: 128, Hash: 1, Group: 2},
	{Enc: Enc3DES, Hash: 1, Group: 2},
}

// DefaultPhase2 is offered as one ESP proposal with these transforms. AES-GCM
// comes first: it is the cheapest suite for a userspace ESP, Libreswan
// (hwdsl2 offers aes_gcm-null first) picks the first acceptable transform in
// the initiator's order, and SoftEther, which has no GCM, skips transforms it
// does not know and takes the first CBC+SHA1 one. strongSwan responders use
// their own preference order. After ours come the rest of the Windows and
// macOS/iOS lists (AES-CBC and 3DES with SHA1 or MD5). As ParsePhase2 writes it:
//
//	aes128gcm16, aes256gcm16, aes128-sha1, aes256-sha1, aes256-sha256,
//	3des-sha1, aes256-md5, aes128-md5, 3des-md5
var DefaultPhase2 = []esp.Algorithm{
	{Enc: esp.EncAESGCM16, EncKeyBits: 128},
	{Enc: esp.EncAESGCM16, EncKeyBits: 256},
	{Enc: esp.EncAESCBC, EncKeyBits: 128, Auth: esp.AuthHMACSHA1},
	{Enc: esp.EncAESCBC, EncKeyBits: 256, Auth: esp.AuthHMACSHA1},
	{Enc: esp.EncAESCBC, EncKeyBits: 256, Auth: esp.AuthHMACSHA256},
	{Enc: esp.Enc3DES, EncKeyBits: 192, Auth: esp.AuthHMACSHA1},
	{Enc: esp.EncAESCBC, EncKeyBits: 256, Auth: esp.AuthHMACMD5},
	{Enc: esp.EncAESCBC, EncKeyBits: 128, Auth: esp.AuthHMACMD5},
	{Enc: esp.Enc3DES, EncKeyBits: 192, Auth: esp.AuthHMACMD5},
}

// Config configures an Initiator.
type Config struct {
	PSK                            []byte            // secret: never logged, never in errors
	LocalAddr                      netip.AddrPort    // our UDP socket's address as we see it (IDii = ID_IPV4_ADDR of it; NAT-OAi)
	RemoteAddr                     netip.AddrPort    // server IKE address (port usually 500)
	L2TPPort                       uint16            // our inner L2TP port for IDci (default 1701); server side is 17/1701
	Phase1                         []Phase1Transform // nil = DefaultPhase1
	Phase2                         []esp.Algorithm   // nil = DefaultPhase2
	Phase1Lifetime, Phase2Lifetime time.Duration     // defaults 8h / 1h
	PFS                            PFS               // Diffie-Hellman in Quick Mode (default PFSAuto)
	// Mode is the phase-1 exchange (default ModeMain). In Aggressive Mode
	// only the transforms of Phase1's first DH group are offered.
	Mode Mode
	// LocalID is our identity in IDii (nil: the address of LocalAddr);
	// RemoteID, if set, is the identity the server must show in IDir.
	LocalID, RemoteID *Identity
	Clock             clock.Clock
	Logger            *slog.Logger
	Rand              io.Reader

	// Cert, if set, authenticates with RSA signatures and certificates
	// (RFC 2409 §5.1) instead of PSK; the server's certificate is checked
	// against CertRemoteID, else Cert.ServerName.
	Cert *Certificates
	// CertRemoteID is the identity the server's certificate must carry
	// (--remote-id with --cert: a name, an address or a DN); RemoteID is
	// not used with certificates (the certificate proves the identity).
	CertRemoteID string
	// FragmentSize is the largest ISAKMP message we send unfragmented to a
	// peer that announced IKE fragmentation (0: defaultFragmentSize).
	FragmentSize int

	// DPDInterval is how long the peer may be silent before we send an
	// R-U-THERE (RFC 3706); after 3 unanswered, one per interval, Run
	// returns ErrPeerDead. 0 disables dead-peer detection.
	DPDInterval time.Duration
	// PeerActivity, if set, counts what else arrived from the peer
	// (authenticated ESP, NAT-T keepalives): while it grows the peer is
	// alive without R-U-THERE.
	PeerActivity func() uint64

	// PrepareInbound, if set, is given the inbound keys of each ESP SA
	// pair before the peer can send on it: before our QM3 leaves (Quick
	// Modes we start: the server may send once it has QM3) or our QM2
	// (the server's: its first ESP may come before we have processed its
	// QM3). The pair itself still
	// comes as ChildSAUp; until then the data path must open packets on
	// the prepared SA (datapath.Path.PrepareInbound). Called on Run's
	// goroutine: it must not block.
	PrepareInbound func(esp.Keys) error
}

// ResponderConfig configures a Responder.
type ResponderConfig struct {
	PSK       []byte
	LocalAddr netip.AddrPort    // our address: IDir and our NAT-D
	Phase1    []Phase1Transform // accepted; nil = DefaultPhase1
	Phase2    []esp.Algorithm   // accepted; nil = DefaultPhase2
	// RequirePFS refuses a Quick Mode without a KE payload, as Libreswan's
	// default pfs=yes does. A KE is accepted either way.
	RequirePFS bool
	// Mode is the only phase-1 exchange accepted (default ModeMain);
	// LocalID our IDir (nil: our address); RemoteID, if set, the only
	// initiator identity accepted (Aggressive Mode: INVALID-ID otherwise).
	Mode              Mode
	LocalID, RemoteID *Identity
	// Cert, if set, authenticates with RSA signatures (RFC 2409 §5.1) and
	// requires a client certificate issued by one of Cert.CAs.
	Cert *Certificates
	// FragmentSize as in Config.
	FragmentSize int
	Clock        clock.Clock
	Logger       *slog.Logger
	Rand         io.Reader

	// Phase2LifeKilobytes, if set, is the ESP SA lifetime in kilobytes
	// (RFC 2407 §4.5) the responder answers with and offers in its own
	// Quick Modes (tests of the client's byte-limited rekeys).
	Phase2LifeKilobytes uint64
	// PrepareInbound as in Config: given the inbound keys before our QM2
	// (the peer's Quick Modes) or QM3 (ours) leaves.
	PrepareInbound func(esp.Keys) error
}

// PFS says whether our Quick Modes carry a Diffie-Hellman exchange, for
// perfect forward secrecy of the ESP keys (RFC 2409 §5.5: a KE payload and
// the Group Description attribute in every transform).
type PFS uint8

const (
	// PFSAuto offers no PFS first, as Windows, macOS, iOS and Android do,
	// and retries once with the phase-1 group if the server answers
	// NO-PROPOSAL-CHOSEN (a server that requires PFS: Libreswan's default
	// pfs=yes, strongSwan with a DH group in esp_proposals).
	PFSAuto PFS = iota
	// PFSOff never offers PFS.
	PFSOff
	// PFSOn always offers PFS with the phase-1 group.
	PFSOn
)

func (p PFS) String() string {
	switch p {
	case PFSAuto:
		return "auto"
	case PFSOff:
		return "no"
	case PFSOn:
		return "yes"
	}
	return fmt.Sprintf("PFS(%d)", uint8(p))
}

// ParsePFS reads a mode by its String name: "auto", "yes" or "no".
func ParsePFS(name string) (PFS, bool) {
	for _, p := range []PFS{PFSAuto, PFSOn, PFSOff} {
		if p.String() == name {
			return p, true
		}
	}
	return 0, false
}

// Event is something Run reports on Events().
type Event interface{ ikeEvent() }

// Phase1Up reports an established ISAKMP SA.
type Phase1Up struct{ Suite string } // e.g. "AES-CBC-256/HMAC-SHA2-256/MODP2048"

// ChildSAUp reports a new ESP SA pair.
type ChildSAUp struct{ Child ChildSA }

// ChildSADeleted reports that an ESP SA pair is gone: the peer deleted it
// (ByPeer), or we retired it after a rekey.
type ChildSADeleted struct {
	InboundSPI uint32
	ByPeer     bool
}

func (Phase1Up) ikeEvent()       {}
func (ChildSAUp) ikeEvent()      {}
func (ChildSADeleted) ikeEvent() {}

// ChildSA is one negotiated ESP SA pair. Inbound holds the keys we receive
// with (our SPI), Outbound the keys we send with (the peer's SPI).
type ChildSA struct {
	Inbound, Outbound esp.Keys
	Lifetime          time.Duration
	EncapMode         uint16 // 4 (RFC 3947 UDP-Encapsulated-Transport) or 61444 (draft)
	PFS               string // the Quick Mode's Diffie-Hellman group, e.g. "MODP2048"; "" without PFS
	// Initiated: we started its Quick Mode, so the peer installs the pair
	// only when our QM3 arrives; it may not take packets on it yet.
	Initiated bool

	// LifeKilobytes is the pair's lifetime in kilobytes (RFC 2407 §4.5
	// SA Life Type 2), 0 for none: each SA of the pair may protect this
	// many kilobytes; the owner rekeys before (datapath byte counts).
	LifeKilobytes uint64
}

func p1List(ts []Phase1Transform) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.short()
	}
	return strings.Join(s, ", ")
}

func p2List(as []esp.Algorithm) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// ---- SA payload encoding and matching ----

// Phase-1 attribute classes (RFC 2409 Appendix A).
const (
	attrEnc       = 1
	attrHash      = 2
	attrAuth      = 3
	attrGroup     = 4
	attrLifeType  = 11
	attrLifeDur   = 12
	attrKeyLength = 14
	authPSK       = 1
	lifeSeconds   = 1
	lifeKilobytes = 2
)

// Phase-2 attribute classes (RFC 2407 §4.5).
const (
	p2LifeType  = 1
	p2LifeDur   = 2
	p2Group     = 3
	p2Encap     = 4
	p2Auth      = 5
	p2KeyLength = 6
)

// Encapsulation modes (RFC 2407 §4.5, RFC 3947 §5.1, draft-ietf-ipsec-nat-t-ike-02).
const (
	EncapTransport         uint16 = 2
	EncapUDPTransport      uint16 = 4
	EncapUDPTransportDraft uint16 = 61444
)

func p1Attrs(t Phase1Transform, life time.Duration) []attrPair {
	return p1AttrsAuth(t, life, authPSK)
}

// p1AttrsAuth is p1Attrs with the Authentication Method attribute given
// (authPSK or authRSASig).
func p1AttrsAuth(t Phase1Transform, life time.Duration, method uint64) []attrPair {
	a := []attrPair{{attrEnc, uint64(t.Enc)}}
	if t.Enc == EncAESCBC {
		a = append(a, attrPair{attrKeyLength, uint64(t.KeyBits)})
	}
	a = append(a, attrPair{attrHash, uint64(t.Hash)}, attrPair{attrAuth, method}, attrPair{attrGroup, uint64(t.Group)})
	if secs := uint64(life / time.Second); secs > 0 {
		a = append(a, attrPair{attrLifeType, lifeSeconds}, attrPair{attrLifeDur, secs})
	}
	return a
}

func encodeP1SA(ts []Phase1Transform, life time.Duration) []byte {
	return encodeP1SAAuth(ts, life, authPSK)
}

func encodeP1SAAuth(ts []Phase1Transform, life time.Duration, method uint64) []byte {
	ids := make([]uint8, len(ts))
	attrs := make([][]attrPair, len(ts))
	for i, t := range ts {
		ids[i] = 1 // KEY_IKE
		attrs[i] = p1AttrsAuth(t, life, method)
	}
	return encodeSA(1, nil, ids, attrs)
}

// lifetimeOf reads life type/duration pairs (in attribute order) and returns
// the seconds value, 0 if none.
func lifetimeOf(attrs []Attribute, typeAttr, durAttr uint16) time.Duration {
	var curType uint64
	var d time.Duration
	for _, a := range attrs {
		switch a.Type {
		case typeAttr:
			curType, _ = a.Uint()
		case durAttr:
			v, ok := a.Uint()
			if ok && curType == lifeSeconds && v < 1<<31 {
				d = time.Duration(v) * time.Second
			}
		}
	}
	return d
}

// lifeKilobytesOf is lifetimeOf for the kilobytes life type: the value,
// 0 if none.
func lifeKilobytesOf(attrs []Attribute, typeAttr, durAttr uint16) uint64 {
	var curType, kb uint64
	for _, a := range attrs {
		switch a.Type {
		case typeAttr:
			curType, _ = a.Uint()
		case durAttr:
			if v, ok := a.Uint(); ok && curType == lifeKilobytes {
				kb = v
			}
		}
	}
	return kb
}

// minLife is the shorter of two limits, 0 meaning none.
func minLife(a, b uint64) uint64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// p1FromTransform decodes a phase-1 transform; auth must be PSK.
func p1FromTransform(tr *Transform) (Phase1Transform, bool) {
	return p1FromTransformAuth(tr, authPSK)
}

// p1FromTransformAuth decodes a phase-1 transform whose Authentication
// Method must be method.
func p1FromTransformAuth(tr *Transform, method uint64) (Phase1Transform, bool) {
	if tr.ID != 1 {
		return Phase1Transform{}, false
	}
	enc, ok1 := tr.Attr(attrEnc)
	h, ok2 := tr.Attr(attrHash)
	auth, ok3 := tr.Attr(attrAuth)
	g, ok4 := tr.Attr(attrGroup)
	if !ok1 || !ok2 || !ok3 || !ok4 || auth != method || enc > 0xffff || h > 0xffff || g > 0xffff {
		return Phase1Transform{}, false
	}
	t := Phase1Transform{Enc: uint16(enc), Hash: uint16(h), Group: uint16(g)}
	if t.Enc == EncAESCBC {
		kl, ok := tr.Attr(attrKeyLength)
		if !ok || kl > 1024 {
			return Phase1Transform{}, false // AES without Key Length: RFC 3602/SoftEther reject it
		}
		t.KeyBits = int(kl)
	}
	return t, true
}

func containsP1(list []Phase1Transform, t Phase1Transform) bool {
	for _, c := range list {
		if c.normalized() == t.normalized() {
			return true
		}
	}
	return false
}

// p2Attrs are an ESP transform's attributes; group is the PFS group (0: none).
func p2Attrs(a esp.Algorithm, life time.Duration, lifeKB uint64, encap, group uint16) []attrPair {
	var out []attrPair
	if secs := uint64(life / time.Second); secs > 0 {
		out = append(out, attrPair{p2LifeType, lifeSeconds}, attrPair{p2LifeDur, secs})
	}
	if lifeKB > 0 {
		out = append(out, attrPair{p2LifeType, lifeKilobytes}, attrPair{p2LifeDur, lifeKB})
	}
	if group != 0 {
		out = append(out, attrPair{p2Group, uint64(group)})
	}
	out = append(out, attrPair{p2Encap, uint64(encap)})
	if !a.IsAEAD() {
		out = append(out, attrPair{p2Auth, uint64(a.Auth)})
	}
	if a.Enc != esp.Enc3DES {
		out = append(out, attrPair{p2KeyLength, uint64(a.EncKeyBits)})
	}
	return out
}

func encodeP2SA(spi uint32, algs []esp.Algorithm, life time.Duration, lifeKB uint64, encap, group uint16) []byte {
	ids := make([]uint8, len(algs))
	attrs := make([][]attrPair, len(algs))
	for i, a := range algs {
		ids[i] = uint8(a.Enc)
		attrs[i] = p2Attrs(a, life, lifeKB, encap, group)
	}
	return encodeSA(3, be32(spi), ids, attrs)
}

// p2Transform is a decoded ESP transform.
type p2Transform struct {
	alg   esp.Algorithm
	encap uint16
	group uint16 // PFS group (Group Description), 0 if none
}

// p2FromTransform decodes an ESP transform: its algorithm, encapsulation
// mode and PFS group; ok is false for an algorithm we cannot key.
func p2FromTransform(tr *Transform) (p2Transform, bool) {
	a := esp.Algorithm{Enc: esp.EncTransform(tr.ID)}
	if v, ok := tr.Attr(p2Auth); ok && v <= 0xffff {
		a.Auth = esp.AuthAlg(v)
	}
	if a.Enc == esp.Enc3DES {
		a.EncKeyBits = 192
	} else if v, ok := tr.Attr(p2KeyLength); ok && v <= 1024 {
		a.EncKeyBits = int(v)
	}
	t := p2Transform{alg: a}
	if v, ok := tr.Attr(p2Group); ok {
		if v == 0 || v > 0xffff {
			return t, false
		}
		t.group = uint16(v)
	}
	if v, ok := tr.Attr(p2Encap); ok && v <= 0xffff {
		t.encap = uint16(v)
	}
	if _, _, err := a.KeymatLen(); err != nil {
		return t, false
	}
	return t, true
}

func containsP2(list []esp.Algorithm, a esp.Algorithm) bool {
	for _, c := range list {
		if c == a {
			return true
		}
	}
	return false
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

const (
	defaultP1Life = 8 * time.Hour
	defaultP2Life = time.Hour
)
