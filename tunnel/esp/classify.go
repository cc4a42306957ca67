package esp

import "encoding/binary"

// Kind is what a datagram received on the shared UDP 4500 socket carries
// (RFC 3948 §2).
type Kind uint8

const (
	KindInvalid   Kind = iota // none of the below: drop
	KindKeepalive             // NAT-keepalive, the single byte 0xFF (RFC 3948 §2.3): ignore
	KindIKE                   // non-ESP marker (4 zero bytes) + IKE message (RFC 3948 §2.2)
	KindESP                   // ESP packet, SPI != 0 (RFC 3948 §2.1)
)

func (k Kind) String() string {
	switch k {
	case KindKeepalive:
		return "keepalive"
	case KindIKE:
		return "ike"
	case KindESP:
		return "esp"
	}
	return "invalid"
}

// NATKeepalive is the NAT-keepalive datagram (RFC 3948 §2.3). Do not modify.
var NATKeepalive = []byte{0xFF}

// NonESPMarkerLen is the length of the zero marker that prefixes IKE
// messages on port 4500 (RFC 3948 §2.2); the IKE message starts after it.
const NonESPMarkerLen = 4

const (
	ikeHeaderLen = 28 // ISAKMP header (RFC 2408 §3.1)
	// minESPLen: SPI, Seq, the smallest IV (8), the smallest encrypted
	// trailer (4, GCM) and the smallest ICV (8). Anything shorter cannot be
	// an ESP packet of any suite we speak.
	minESPLen = hdrLen + 8 + 4 + 8
)

// Classify demultiplexes a UDP 4500 datagram. It looks at no more than the
// first 4 bytes and the length, and never panics.
func Classify(dgram []byte) Kind {
	switch {
	case len(dgram) == 1 && dgram[0] == 0xFF:
		return KindKeepalive
	case len(dgram) < 4:
		return KindInvalid
	}
	spi := binary.BigEndian.Uint32(dgram)
	switch {
	case spi == 0:
		if len(dgram) >= NonESPMarkerLen+ikeHeaderLen {
			return KindIKE
		}
		return KindInvalid
	case spi < 256:
		return KindInvalid // reserved SPIs 1..255 (RFC 4303 §2.1)
	case len(dgram) < minESPLen:
		return KindInvalid
	}
	return KindESP
}

// PeekSPI returns the SPI of an ESP datagram, to pick the Inbound SA (the
// client has one per direction, but two during a rekey).
func PeekSPI(dgram []byte) (uint32, bool) {
	if Classify(dgram) != KindESP {
		return 0, false
	}
	return binary.BigEndian.Uint32(dgram), true
}
