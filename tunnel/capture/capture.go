// Package capture reads the real L2TP/IPsec sessions recorded in
// testdata/captures, for tests: pcap records as UDP datagrams with addresses
// and ports, and the session keys.
package capture

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// ErrFormat reports a file that is not a complete classic pcap of a supported
// link type, or a record whose IPv4/UDP headers are inconsistent.
var ErrFormat = errors.New("capture: malformed pcap")

// Link types (https://www.tcpdump.org/linktypes.html).
const (
	linkEthernet = 1   // outer.pcap
	linkRawIP    = 101 // decrypted-l2tp.pcap
)

// Datagram is one IPv4/UDP packet of a pcap file.
type Datagram struct {
	Frame    int // 1-based record number in the file, as Wireshark numbers frames
	Time     time.Time
	Src, Dst netip.AddrPort
	Checksum uint16 // UDP checksum as recorded (0: none)
	Payload  []byte // UDP payload, bounded by the UDP length; its capacity ends there
}

// Datagrams returns the IPv4/UDP datagrams of the classic pcap file at path
// (link type Ethernet or raw IP), in file order. Records of other protocols
// and IPv4 fragments are skipped; truncated or snapped records are an error.
func Datagrams(path string) ([]Datagram, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(data, path)
}

// parse decodes the pcap file data; name is for errors.
func parse(data []byte, path string) ([]Datagram, error) {
	if len(data) < 24 {
		return nil, fmt.Errorf("%s: %w: short file header", path, ErrFormat)
	}
	var bo binary.ByteOrder
	nano := false
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4:
		bo = binary.LittleEndian
	case 0xa1b23c4d:
		bo, nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	case 0x4d3cb2a1:
		bo, nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("%s: %w: not a classic pcap", path, ErrFormat)
	}
	link := bo.Uint32(data[20:])
	if link != linkEthernet && link != linkRawIP {
		return nil, fmt.Errorf("%s: %w: link type %d", path, ErrFormat, link)
	}
	var out []Datagram
	for off, frame := 24, 1; off < len(data); frame++ {
		if len(data)-off < 16 {
			return nil, fmt.Errorf("%s #%d: %w: truncated record header", path, frame, ErrFormat)
		}
		h := data[off : off+16]
		incl, orig := bo.Uint32(h[8:]), bo.Uint32(h[12:])
		off += 16
		if incl != orig || uint64(incl) > uint64(len(data)-off) {
			return nil, fmt.Errorf("%s #%d: %w: truncated or snapped record", path, frame, ErrFormat)
		}
		rec := data[off : off+int(incl)]
		off += int(incl)
		sub := int64(bo.Uint32(h[4:]))
		if !nano {
			sub *= 1000
		}
		if link == linkEthernet {
			if len(rec) < 14 || binary.BigEndian.Uint16(rec[12:]) != 0x0800 {
				continue
			}
			rec = rec[14:]
		}
		d, ok, err := parseIPv4UDP(rec)
		if err != nil {
			return nil, fmt.Errorf("%s #%d: %w", path, frame, err)
		}
		if !ok {
			continue
		}
		d.Frame = frame
		d.Time = time.Unix(int64(bo.Uint32(h[0:])), sub).UTC()
		out = append(out, d)
	}
	return out, nil
}

// parseIPv4UDP decodes an IPv4 packet; ok is false for other protocols and
// for fragments.
func parseIPv4UDP(ip []byte) (d Datagram, ok bool, err error) {
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return d, false, nil
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return d, false, fmt.Errorf("%w: IPv4 header length %d, total %d, %d bytes", ErrFormat, ihl, total, len(ip))
	}
	if ip[9] != 17 || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 { // not UDP, or MF / fragment offset
		return d, false, nil
	}
	udp := ip[ihl:total]
	if len(udp) < 8 {
		return d, false, fmt.Errorf("%w: short UDP header", ErrFormat)
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if ulen < 8 || ulen > len(udp) {
		return d, false, fmt.Errorf("%w: UDP length %d, %d bytes", ErrFormat, ulen, len(udp))
	}
	d.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp[0:]))
	d.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:]))
	d.Checksum = binary.BigEndian.Uint16(udp[6:])
	d.Payload = udp[8:ulen:ulen]
	return d, true, nil
}

// Sessions returns the session directories under root (such as
// testdata/captures), as root-joined paths in name order.
func Sessions(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	return out, nil
}

// Hex is a byte string written in keys.json as lowercase hex.
type Hex []byte

// UnmarshalText decodes hex.
func (h *Hex) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Keys holds the keys.json values the tests use: phase-1 inputs and keys
// (the strongSwan end's log), the first Quick Mode's nonces, and the kernel's
// ESP SAs.
type Keys struct {
	PSK     Hex `json:"psk_hex"`
	ICookie Hex `json:"icookie"`
	RCookie Hex `json:"rcookie"`
	GXI     Hex `json:"g_xi"`
	GXR     Hex `json:"g_xr"`
	Ni      Hex `json:"ni"`
	Nr      Hex `json:"nr"`
	GXY     Hex `json:"dh_shared_secret"`
	SKEYID  Hex `json:"skeyid"`
	SKEYIDd Hex `json:"skeyid_d"`
	SKEYIDa Hex `json:"skeyid_a"`
	SKEYIDe Hex `json:"skeyid_e"`
	Ka      Hex `json:"ka"`
	IVMM5   Hex `json:"iv_mm5"`
	QMNi    Hex `json:"qm_ni"`
	QMNr    Hex `json:"qm_nr"`
	// ESP is keyed "client_to_server" and "server_to_client".
	ESP map[string]ESPKeys `json:"esp"`
}

// ESPKeys is one direction's ESP SA, as `ip xfrm state` showed it.
type ESPKeys struct {
	SPI     uint32 `json:"-"`
	EncAlg  string `json:"enc_alg"` // Linux name, e.g. "cbc(aes)"
	EncKey  Hex    `json:"enc_key"`
	AuthAlg string `json:"auth_alg"` // e.g. "hmac(sha1)"
	AuthKey Hex    `json:"auth_key"`
	ICVBits int    `json:"icv_bits"`
}

// UnmarshalJSON decodes the SPI from its 8 hex digits.
func (e *ESPKeys) UnmarshalJSON(b []byte) error {
	type fields ESPKeys
	var v struct {
		fields
		SPI Hex `json:"spi"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if len(v.SPI) != 4 {
		return fmt.Errorf("SPI of %d bytes", len(v.SPI))
	}
	*e = ESPKeys(v.fields)
	e.SPI = binary.BigEndian.Uint32(v.SPI)
	return nil
}

// LoadKeys reads dir/keys.json.
func LoadKeys(dir string) (*Keys, error) {
	path := filepath.Join(dir, "keys.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k Keys
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &k, nil
}
