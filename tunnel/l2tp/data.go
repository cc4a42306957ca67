package l2tp

import "encoding/binary"

// IsControl reports whether pkt is an L2TP control message (T bit set,
// RFC 2661 §3.1). It only looks at the first byte.
func IsControl(pkt []byte) bool { return len(pkt) >= 2 && pkt[0]&0x80 != 0 }

// ParseData decodes an L2TPv2 data message header (RFC 2661 §3.1) and
// returns the recipient tunnel and session IDs and the PPP payload, which
// aliases pkt. The optional Length (L), sequence (S: Ns, Nr) and Offset (O:
// Offset Size + padding) fields are all handled; with L=1 bytes beyond
// Length are ignored. The P bit and reserved bits are ignored. It does not
// allocate.
func ParseData(pkt []byte) (tunnelID, sessionID uint16, payload []byte, err error) {
	if len(pkt) < 6 {
		return 0, 0, nil, errDataShort
	}
	w := binary.BigEndian.Uint16(pkt)
	if w&flagT != 0 {
		return 0, 0, nil, errDataControl
	}
	if w&versionMask != version2 {
		return 0, 0, nil, errDataVersion
	}
	off := 2
	end := len(pkt)
	if w&flagL != 0 {
		n := int(binary.BigEndian.Uint16(pkt[off:]))
		if n > len(pkt) {
			return 0, 0, nil, errDataLength
		}
		end = n
		off += 2
	}
	if end < off+4 {
		return 0, 0, nil, errDataShort
	}
	tunnelID = binary.BigEndian.Uint16(pkt[off:])
	sessionID = binary.BigEndian.Uint16(pkt[off+2:])
	off += 4
	if w&flagS != 0 {
		off += 4 // Ns, Nr
	}
	if w&flagO != 0 {
		if end < off+2 {
			return 0, 0, nil, errDataShort
		}
		pad := int(binary.BigEndian.Uint16(pkt[off:]))
		off += 2 + pad
	}
	if off > end {
		if w&flagO != 0 {
			return 0, 0, nil, errDataOffset
		}
		return 0, 0, nil, errDataShort
	}
	return tunnelID, sessionID, pkt[off:end], nil
}

// IsSequencedData reports whether pkt is a data message with the S bit set.
// RFC 2661 §5.4: once the LNS sends sequenced data, the LAC must as well.
func IsSequencedData(pkt []byte) bool {
	return len(pkt) >= 2 && pkt[0]&0x80 == 0 && binary.BigEndian.Uint16(pkt)&flagS != 0
}

// DataHeaderLen is the length of the data header PutDataHeader writes:
// 6 bytes (flags, tunnel, session), or 10 with sequence numbers.
func DataHeaderLen(sequenced bool) int {
	if sequenced {
		return 10
	}
	return 6
}

// PutDataHeader writes a data message header addressed to the peer's
// tunnel and session IDs into b[:DataHeaderLen(sequenced)]. L=0 (the UDP
// length delimits the packet), O=0; with sequenced, S=1 with Ns = ns and
// Nr = 0 (Nr is reserved in data messages, RFC 2661 §3.1). b must be at
// least DataHeaderLen(sequenced) bytes long.
func PutDataHeader(b []byte, peerTunnelID, peerSessionID uint16, sequenced bool, ns uint16) {
	if sequenced {
		_ = b[9]
		binary.BigEndian.PutUint16(b, flagS|version2)
		binary.BigEndian.PutUint16(b[2:], peerTunnelID)
		binary.BigEndian.PutUint16(b[4:], peerSessionID)
		binary.BigEndian.PutUint16(b[6:], ns)
		binary.BigEndian.PutUint16(b[8:], 0)
		return
	}
	_ = b[5]
	binary.BigEndian.PutUint16(b, version2)
	binary.BigEndian.PutUint16(b[2:], peerTunnelID)
	binary.BigEndian.PutUint16(b[4:], peerSessionID)
}
