package capture

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

const root = "../../testdata/captures"

func TestRealSessions(t *testing.T) {
	dirs, err := Sessions(root)
	if err != nil || len(dirs) != 3 {
		t.Fatalf("sessions %v (%v)", dirs, err)
	}
	for _, dir := range dirs {
		for _, file := range []string{"outer.pcap", "decrypted-l2tp.pcap"} {
			ds, err := Datagrams(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) < 40 {
				t.Fatalf("%s %s: %d datagrams", filepath.Base(dir), file, len(ds))
			}
			for i, d := range ds {
				if !d.Src.Addr().Is4() || !d.Dst.Addr().Is4() || d.Src.Port() == 0 || d.Dst.Port() == 0 {
					t.Fatalf("%s #%d: %v -> %v", file, d.Frame, d.Src, d.Dst)
				}
				if d.Time.Year() < 2020 || i > 0 && d.Frame <= ds[i-1].Frame {
					t.Fatalf("%s #%d: time %v", file, d.Frame, d.Time)
				}
				if cap(d.Payload) != len(d.Payload) {
					t.Fatalf("%s #%d: payload capacity reaches past the datagram", file, d.Frame)
				}
			}
			t.Logf("%s %s: %d datagrams", filepath.Base(dir), file, len(ds))
		}
		k, err := LoadKeys(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.PSK) == 0 || len(k.ICookie) != 8 || len(k.RCookie) != 8 || len(k.QMNi) == 0 || len(k.ESP) != 2 {
			t.Fatalf("%s: keys %d %d %d %d %d", dir, len(k.PSK), len(k.ICookie), len(k.RCookie), len(k.QMNi), len(k.ESP))
		}
		for name, e := range k.ESP {
			if e.SPI < 256 || len(e.EncKey) != 16 || len(e.AuthKey) != 20 || e.ICVBits != 96 {
				t.Errorf("%s %s: %+v", dir, name, e)
			}
		}
	}
}

// pcapLE builds a little-endian microsecond pcap of the given link type.
func pcapLE(link uint32, recs ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = append(b, 2, 0, 4, 0)
	b = append(b, make([]byte, 12)...)
	b = binary.LittleEndian.AppendUint32(b, link)
	for i, r := range recs {
		b = binary.LittleEndian.AppendUint32(b, uint32(1700000000+i))
		b = binary.LittleEndian.AppendUint32(b, 250000)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r)))
		b = append(b, r...)
	}
	return b
}

// ipUDP builds an IPv4 packet of protocol proto carrying a UDP header for
// payload (ulen 0: the correct length), with flagsFrag as bytes 6-7.
func ipUDP(proto byte, flagsFrag uint16, ulen int, payload []byte) []byte {
	if ulen == 0 {
		ulen = 8 + len(payload)
	}
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[6:], flagsFrag)
	ip = append(ip, 0x11, 0x94, 0x06, 0xa5, byte(ulen>>8), byte(ulen), 0xab, 0xcd)
	return append(ip, payload...)
}

func TestParse(t *testing.T) {
	udp := ipUDP(17, 0x4000, 0, []byte("hi")) // DF set
	eth := append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00}, udp...)
	eth = append(eth, make([]byte, 60-len(eth))...) // Ethernet padding
	arp := append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x06}, make([]byte, 28)...)
	for _, c := range []struct {
		name string
		data []byte
		want int // datagrams; -1: ErrFormat
	}{
		{"raw", pcapLE(101, udp, ipUDP(6, 0, 0, nil), ipUDP(17, 0x2000, 0, []byte("frag")), udp), 2},
		{"ethernet", pcapLE(1, arp, eth), 1},
		{"bad link", pcapLE(113, udp), -1},
		{"bad magic", append([]byte{1}, pcapLE(101, udp)[1:]...), -1},
		{"short header", pcapLE(101)[:20], -1},
		{"truncated record", pcapLE(101, udp)[:24+16+10], -1},
		{"truncated record header", pcapLE(101, udp)[:24+8], -1},
		{"UDP length", pcapLE(101, ipUDP(17, 0, 99, []byte("x"))), -1},
		{"IP length", pcapLE(101, udp[:25]), -1},
	} {
		ds, err := parse(c.data, c.name)
		if c.want < 0 {
			if !errors.Is(err, ErrFormat) {
				t.Errorf("%s: %v, want ErrFormat", c.name, err)
			}
			continue
		}
		if err != nil || len(ds) != c.want {
			t.Fatalf("%s: %d datagrams, %v", c.name, len(ds), err)
		}
		d := ds[len(ds)-1]
		if d.Src.String() != "10.0.0.1:4500" || d.Dst.String() != "10.0.0.2:1701" || d.Checksum != 0xabcd ||
			string(d.Payload) != "hi" || d.Time.UnixMicro() != int64(1700000000+d.Frame-1)*1e6+250000 {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
	if ds, _ := parse(pcapLE(101, udp, ipUDP(6, 0, 0, nil), udp), "n"); ds[1].Frame != 3 {
		t.Errorf("frame numbers %d, %d", ds[0].Frame, ds[1].Frame)
	}
}

// FuzzParse: parse never panics, and what it returns lies inside the input.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"outer.pcap", "decrypted-l2tp.pcap"} {
		b, err := os.ReadFile(filepath.Join(root, "a-libreswan-server_strongswan-client", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 2000)])
	}
	f.Add(pcapLE(101, ipUDP(17, 0, 0, []byte("hi"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := parse(data, "fuzz")
		if err != nil {
			return
		}
		total := 0
		for _, d := range ds {
			total += 16 + 28 + len(d.Payload)
		}
		if total > len(data) {
			t.Fatalf("%d datagrams, %d bytes of records from %d bytes", len(ds), total, len(data))
		}
	})
}
