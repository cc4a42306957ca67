package ike

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
)

// capturedIKE is one ISAKMP message found in a capture.
type capturedIKE struct {
	src, dst netip.AddrPort
	natt     bool // arrived on port 4500 (non-ESP marker stripped)
	msg      []byte
}

// readCapturedIKE is a minimal pcap reader for the test captures: classic
// pcap, Ethernet link type, IPv4, UDP to/from 500 or 4500. On 4500 the
// 4-byte non-ESP marker is stripped (RFC 3948 §2.2); ESP and NAT keepalives
// are skipped.
func readCapturedIKE(path string) ([]capturedIKE, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(raw) < 24 {
		return nil, errors.New("short pcap")
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(raw) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, errors.New("not a pcap file")
	}
	if bo.Uint32(raw[20:]) != 1 {
		return nil, errors.New("not Ethernet")
	}
	var out []capturedIKE
	for off := 24; off+16 <= len(raw); {
		incl := int(bo.Uint32(raw[off+8:]))
		off += 16
		if incl > len(raw)-off {
			return nil, errors.New("truncated record")
		}
		frame := raw[off : off+incl]
		off += incl
		if len(frame) < 14 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 17 {
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || tot < ihl+8 || tot > len(ip) {
			continue
		}
		src := netip.AddrFrom4([4]byte(ip[12:16]))
		dst := netip.AddrFrom4([4]byte(ip[16:20]))
		udp := ip[ihl:tot]
		sp, dp := binary.BigEndian.Uint16(udp), binary.BigEndian.Uint16(udp[2:])
		payload := udp[8:]
		natt := false
		switch {
		case sp == 4500 || dp == 4500:
			if len(payload) < 4 || binary.BigEndian.Uint32(payload) != 0 {
				continue // ESP or keepalive
			}
			payload = payload[4:]
			natt = true
		case sp == 500 || dp == 500:
		default:
			continue
		}
		out = append(out, capturedIKE{
			src: netip.AddrPortFrom(src, sp), dst: netip.AddrPortFrom(dst, dp),
			natt: natt, msg: append([]byte(nil), payload...),
		})
	}
	return out, nil
}
