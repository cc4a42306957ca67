package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is returned by every parser for a message that violates the
// ISAKMP length rules (RFC 2408 §3).
var ErrMalformed = errors.New("ike: malformed message")

// HeaderLen is the ISAKMP header length (RFC 2408 §3.1).
const HeaderLen = 28

// Exchange types (RFC 2408 §3.1, RFC 2409 §5).
const (
	ExchangeIdentityProtection uint8 = 2 // Main Mode
	ExchangeAggressive         uint8 = 4
	ExchangeInformational      uint8 = 5
	ExchangeTransaction        uint8 = 6
	ExchangeQuickMode          uint8 = 32
)

// Header flags (RFC 2408 §3.1).
const (
	FlagEncryption uint8 = 0x01
	FlagCommit     uint8 = 0x02
	FlagAuthOnly   uint8 = 0x04
)

// Payload types (RFC 2408 §3.1, RFC 3947 §3.2, §5.2, draft-ietf-ipsec-nat-t-ike-02).
const (
	PayloadNone         uint8 = 0
	PayloadSA           uint8 = 1
	PayloadProposal     uint8 = 2
	PayloadTransform    uint8 = 3
	PayloadKE           uint8 = 4
	PayloadID           uint8 = 5
	PayloadCert         uint8 = 6
	PayloadCertReq      uint8 = 7
	PayloadHash         uint8 = 8
	PayloadSig          uint8 = 9
	PayloadNonce        uint8 = 10
	PayloadNotify       uint8 = 11
	PayloadDelete       uint8 = 12
	PayloadVendorID     uint8 = 13
	PayloadNATD         uint8 = 20
	PayloadNATOA        uint8 = 21
	PayloadNATDDraft    uint8 = 130
	PayloadNATOADraft   uint8 = 131
	PayloadFragment     uint8 = 132
	isakmpVersion       uint8 = 0x10
	genericHeaderLength       = 4
)

// Header is the fixed ISAKMP header.
type Header struct {
	ICookie, RCookie [8]byte
	NextPayload      uint8
	Version          uint8
	Exchange         uint8
	Flags            uint8
	MessageID        uint32
	Length           uint32
}

// ParseHeader decodes the ISAKMP header and checks that Length lies within
// [HeaderLen, len(b)].
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(b))
	}
	copy(h.ICookie[:], b[0:8])
	copy(h.RCookie[:], b[8:16])
	h.NextPayload = b[16]
	h.Version = b[17]
	h.Exchange = b[18]
	h.Flags = b[19]
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if h.Length < HeaderLen || uint64(h.Length) > uint64(len(b)) {
		return h, fmt.Errorf("%w: header length %d, datagram %d", ErrMalformed, h.Length, len(b))
	}
	if h.Version>>4 != 1 {
		return h, fmt.Errorf("%w: version 0x%02x", ErrMalformed, h.Version)
	}
	return h, nil
}

// AppendTo appends the encoded header.
func (h *Header) AppendTo(b []byte) []byte {
	b = append(b, h.ICookie[:]...)
	b = append(b, h.RCookie[:]...)
	b = append(b, h.NextPayload, h.Version, h.Exchange, h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// Payload is one payload of a message. Raw is the payload as on the wire
// including its 4-byte generic header; Body is Raw without that header. Both
// alias the buffer that was parsed.
type Payload struct {
	Type uint8
	Raw  []byte
	Body []byte
}

// ParsePayloads walks a payload chain starting with type first. It stops at
// next-payload 0 and returns the payloads and the offset just after the last
// one (so trailing encryption padding can be told apart). Every generic
// length is checked; unknown payload types are kept and otherwise ignored.
func ParsePayloads(first uint8, b []byte) ([]Payload, int, error) {
	var ps []Payload
	next := first
	off := 0
	for next != PayloadNone {
		if len(b)-off < genericHeaderLength {
			return nil, 0, fmt.Errorf("%w: truncated payload header (type %d)", ErrMalformed, next)
		}
		l := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		if l < genericHeaderLength || l > len(b)-off {
			return nil, 0, fmt.Errorf("%w: payload type %d length %d, %d left", ErrMalformed, next, l, len(b)-off)
		}
		raw := b[off : off+l]
		ps = append(ps, Payload{Type: next, Raw: raw, Body: raw[genericHeaderLength:]})
		next = b[off]
		off += l
		if len(ps) > 64 {
			return nil, 0, fmt.Errorf("%w: too many payloads", ErrMalformed)
		}
	}
	return ps, off, nil
}

// Message is a parsed ISAKMP message. For an encrypted message Payloads is
// empty until it has been decrypted (see Message.Ciphertext).
type Message struct {
	Header
	Payloads []Payload
	// Ciphertext is the encrypted body (after the header, Length-bounded)
	// when FlagEncryption is set.
	Ciphertext []byte
}

// Parse decodes one ISAKMP message (non-ESP marker already removed). Bytes
// after header Length are ignored. A cleartext payload chain must end at
// Length, give or take up to 3 zero bytes: Libreswan pads every IKEv1
// message to a multiple of 4 octets (its ikepad=yes default, after RFC
// 2408 §3.6), which shows in an Aggressive Mode AM2 whose ID is a name.
func Parse(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	m := &Message{Header: h}
	body := b[HeaderLen:h.Length]
	if h.Flags&FlagEncryption != 0 {
		m.Ciphertext = body
		return m, nil
	}
	ps, end, err := ParsePayloads(h.NextPayload, body)
	if err != nil {
		return nil, err
	}
	if pad := body[end:]; len(pad) > 3 || !allZero(pad) {
		return nil, fmt.Errorf("%w: %d bytes after the last payload", ErrMalformed, len(pad))
	}
	m.Payloads = ps
	return m, nil
}

// First returns the first payload of type t, or nil.
func First(ps []Payload, t uint8) *Payload {
	for i := range ps {
		if ps[i].Type == t {
			return &ps[i]
		}
	}
	return nil
}

// All returns every payload of type t.
func All(ps []Payload, t uint8) []Payload {
	var out []Payload
	for _, p := range ps {
		if p.Type == t {
			out = append(out, p)
		}
	}
	return out
}

// builder assembles a payload chain, patching each payload's next-payload
// field when the following one is added.
type builder struct {
	buf      []byte
	first    uint8
	lastNext int // offset of the previous payload's next-payload byte, -1 if none
	starts   []int
}

func newBuilder() *builder { return &builder{lastNext: -1} }

// add appends a payload of type t whose body is the concatenation of parts.
func (b *builder) add(t uint8, parts ...[]byte) {
	n := genericHeaderLength
	for _, p := range parts {
		n += len(p)
	}
	if b.lastNext < 0 {
		b.first = t
	} else {
		b.buf[b.lastNext] = t
	}
	b.lastNext = len(b.buf)
	b.starts = append(b.starts, len(b.buf))
	b.buf = append(b.buf, 0, 0, byte(n>>8), byte(n))
	for _, p := range parts {
		b.buf = append(b.buf, p...)
	}
}

// payloadStart returns the offset of the i-th payload added.
func (b *builder) payloadStart(i int) int { return b.starts[i] }

// ---- payload bodies ----

// Attribute is one data attribute (RFC 2408 §3.3). Short attributes (TV,
// AF bit set) keep their 2-byte value in Value as well.
type Attribute struct {
	Type  uint16 // without the AF bit
	TV    bool
	Value []byte
}

// Uint returns the attribute's value as an integer (TV or TLV up to 8 bytes).
func (a Attribute) Uint() (uint64, bool) {
	if len(a.Value) == 0 || len(a.Value) > 8 {
		return 0, false
	}
	var v uint64
	for _, c := range a.Value {
		v = v<<8 | uint64(c)
	}
	return v, true
}

// ParseAttributes decodes a list of TV/TLV attributes filling b exactly.
func ParseAttributes(b []byte) ([]Attribute, error) {
	var out []Attribute
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%w: truncated attribute", ErrMalformed)
		}
		t := binary.BigEndian.Uint16(b[off:])
		if t&0x8000 != 0 {
			out = append(out, Attribute{Type: t & 0x7fff, TV: true, Value: b[off+2 : off+4]})
			off += 4
			continue
		}
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if l > len(b)-off-4 {
			return nil, fmt.Errorf("%w: attribute %d length %d", ErrMalformed, t, l)
		}
		out = append(out, Attribute{Type: t, Value: b[off+4 : off+4+l]})
		off += 4 + l
		if len(out) > 64 {
			return nil, fmt.Errorf("%w: too many attributes", ErrMalformed)
		}
	}
	return out, nil
}

// appendAttr encodes an attribute as TV when v fits in 16 bits, else as a
// 4-byte TLV (strongSwan transform_attribute_create_value).
func appendAttr(b []byte, t uint16, v uint64) []byte {
	if v <= 0xffff {
		b = binary.BigEndian.AppendUint16(b, t|0x8000)
		return binary.BigEndian.AppendUint16(b, uint16(v))
	}
	b = binary.BigEndian.AppendUint16(b, t)
	b = binary.BigEndian.AppendUint16(b, 4)
	return binary.BigEndian.AppendUint32(b, uint32(v))
}

// Transform is a Transform payload (RFC 2408 §3.6).
type Transform struct {
	Num   uint8
	ID    uint8
	Attrs []Attribute
}

// Attr returns the integer value of attribute t.
func (t *Transform) Attr(typ uint16) (uint64, bool) {
	for _, a := range t.Attrs {
		if a.Type == typ {
			return a.Uint()
		}
	}
	return 0, false
}

// Proposal is a Proposal payload (RFC 2408 §3.5).
type Proposal struct {
	Num        uint8
	Protocol   uint8
	SPI        []byte
	Transforms []Transform
}

// SA is a Security Association payload body with the IPsec DOI (RFC 2407 §4.6.1).
type SA struct {
	DOI, Situation uint32
	Proposals      []Proposal
}

// ParseSA decodes an SA payload body (DOI, situation, proposals).
func ParseSA(body []byte) (*SA, error) {
	if len(body) < 8 {
		return nil, fmt.Errorf("%w: SA body %d bytes", ErrMalformed, len(body))
	}
	sa := &SA{DOI: binary.BigEndian.Uint32(body), Situation: binary.BigEndian.Uint32(body[4:])}
	if sa.DOI != 1 {
		return nil, fmt.Errorf("%w: SA DOI %d", ErrMalformed, sa.DOI)
	}
	rest := body[8:]
	props, end, err := ParsePayloads(PayloadProposal, rest)
	if err != nil {
		return nil, err
	}
	if end != len(rest) {
		return nil, fmt.Errorf("%w: bytes after the last proposal", ErrMalformed)
	}
	for _, pp := range props {
		if pp.Type != PayloadProposal {
			return nil, fmt.Errorf("%w: payload %d inside SA", ErrMalformed, pp.Type)
		}
		p := pp.Body
		if len(p) < 4 {
			return nil, fmt.Errorf("%w: short proposal", ErrMalformed)
		}
		prop := Proposal{Num: p[0], Protocol: p[1]}
		spiSize, nt := int(p[2]), int(p[3])
		if len(p) < 4+spiSize {
			return nil, fmt.Errorf("%w: proposal SPI size %d", ErrMalformed, spiSize)
		}
		prop.SPI = p[4 : 4+spiSize]
		trs, tend, err := ParsePayloads(PayloadTransform, p[4+spiSize:])
		if err != nil {
			return nil, err
		}
		if tend != len(p)-4-spiSize || len(trs) != nt {
			return nil, fmt.Errorf("%w: proposal has %d transforms, says %d", ErrMalformed, len(trs), nt)
		}
		for _, tp := range trs {
			if tp.Type != PayloadTransform || len(tp.Body) < 4 {
				return nil, fmt.Errorf("%w: bad transform", ErrMalformed)
			}
			attrs, err := ParseAttributes(tp.Body[4:])
			if err != nil {
				return nil, err
			}
			prop.Transforms = append(prop.Transforms, Transform{Num: tp.Body[0], ID: tp.Body[1], Attrs: attrs})
		}
		sa.Proposals = append(sa.Proposals, prop)
	}
	if len(sa.Proposals) == 0 {
		return nil, fmt.Errorf("%w: SA without proposals", ErrMalformed)
	}
	return sa, nil
}

// attrPair is one attribute to encode.
type attrPair struct {
	t uint16
	v uint64
}

// encodeSA builds an SA body: one proposal (number 1) with the given
// protocol, SPI and transforms, each transform's attributes in order.
func encodeSA(protocol uint8, spi []byte, ids []uint8, attrs [][]attrPair) []byte {
	b := make([]byte, 0, 256)
	b = binary.BigEndian.AppendUint32(b, 1) // DOI IPsec
	b = binary.BigEndian.AppendUint32(b, 1) // SIT_IDENTITY_ONLY
	propStart := len(b)
	b = append(b, 0, 0, 0, 0, 1, protocol, byte(len(spi)), byte(len(ids)))
	b = append(b, spi...)
	for i, id := range ids {
		start := len(b)
		next := PayloadTransform
		if i == len(ids)-1 {
			next = PayloadNone
		}
		b = append(b, next, 0, 0, 0, byte(i+1), id, 0, 0)
		for _, a := range attrs[i] {
			b = appendAttr(b, a.t, a.v)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	binary.BigEndian.PutUint16(b[propStart+2:], uint16(len(b)-propStart))
	return b
}

// ID is an Identification payload body (RFC 2407 §4.6.2).
type ID struct {
	Type     uint8
	Protocol uint8
	Port     uint16
	Data     []byte
}

// ID types (RFC 2407 §4.6.2.1).
const (
	IDIPv4Addr uint8 = 1
	IDFQDN     uint8 = 2
	IDUserFQDN uint8 = 3
	IDIPv6Addr uint8 = 5
)

// ParseID decodes an ID payload body.
func ParseID(body []byte) (ID, error) {
	if len(body) < 4 {
		return ID{}, fmt.Errorf("%w: ID body %d bytes", ErrMalformed, len(body))
	}
	return ID{Type: body[0], Protocol: body[1], Port: binary.BigEndian.Uint16(body[2:]), Data: body[4:]}, nil
}

func (id ID) encode() []byte {
	b := []byte{id.Type, id.Protocol, byte(id.Port >> 8), byte(id.Port)}
	return append(b, id.Data...)
}

// Notify is a Notification payload body (RFC 2408 §3.14).
type Notify struct {
	DOI      uint32
	Protocol uint8
	Type     uint16
	SPI      []byte
	Data     []byte
}

// Notify message types used here (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706).
const (
	NotifyInvalidPayloadType     uint16 = 1
	NotifyPayloadMalformed       uint16 = 16
	NotifyNoProposalChosen       uint16 = 14
	NotifyInvalidIDInformation   uint16 = 18
	NotifyInvalidHashInformation uint16 = 23
	NotifyAuthenticationFailed   uint16 = 24
	NotifyInvalidSignature       uint16 = 25
	NotifyResponderLifetime      uint16 = 24576
	NotifyInitialContact         uint16 = 24578
	NotifyRUThere                uint16 = 36136
	NotifyRUThereAck             uint16 = 36137
)

// ParseNotify decodes a Notification payload body.
func ParseNotify(body []byte) (Notify, error) {
	if len(body) < 8 {
		return Notify{}, fmt.Errorf("%w: notify body %d bytes", ErrMalformed, len(body))
	}
	n := Notify{DOI: binary.BigEndian.Uint32(body), Protocol: body[4], Type: binary.BigEndian.Uint16(body[6:])}
	spiSize := int(body[5])
	if len(body) < 8+spiSize {
		return Notify{}, fmt.Errorf("%w: notify SPI size %d", ErrMalformed, spiSize)
	}
	n.SPI = body[8 : 8+spiSize]
	n.Data = body[8+spiSize:]
	return n, nil
}

func (n Notify) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, n.DOI)
	b = append(b, n.Protocol, byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, n.Type)
	b = append(b, n.SPI...)
	return append(b, n.Data...)
}

// Delete is a Delete payload body (RFC 2408 §3.15).
type Delete struct {
	DOI      uint32
	Protocol uint8
	SPIs     [][]byte
}

// ParseDelete decodes a Delete payload body.
func ParseDelete(body []byte) (Delete, error) {
	if len(body) < 8 {
		return Delete{}, fmt.Errorf("%w: delete body %d bytes", ErrMalformed, len(body))
	}
	d := Delete{DOI: binary.BigEndian.Uint32(body), Protocol: body[4]}
	size, n := int(body[5]), int(binary.BigEndian.Uint16(body[6:]))
	if size == 0 || len(body)-8 != size*n {
		return Delete{}, fmt.Errorf("%w: delete with %d SPIs of %d bytes in %d bytes", ErrMalformed, n, size, len(body)-8)
	}
	for i := 0; i < n; i++ {
		d.SPIs = append(d.SPIs, body[8+i*size:8+(i+1)*size])
	}
	return d, nil
}

func (d Delete) encode() []byte {
	size := 0
	if len(d.SPIs) > 0 {
		size = len(d.SPIs[0])
	}
	b := binary.BigEndian.AppendUint32(nil, d.DOI)
	b = append(b, d.Protocol, byte(size))
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, s := range d.SPIs {
		b = append(b, s...)
	}
	return b
}

// ParseNATOA decodes a NAT-OA payload body (RFC 3947 §5.2): ID type,
// 3 reserved bytes, address.
func ParseNATOA(body []byte) (ID, error) {
	if len(body) < 4 {
		return ID{}, fmt.Errorf("%w: NAT-OA %d bytes", ErrMalformed, len(body))
	}
	return ID{Type: body[0], Data: body[4:]}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
