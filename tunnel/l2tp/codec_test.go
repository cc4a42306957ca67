package l2tp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/capture"
)

const (
	vectorsDir  = "../../testdata/vectors"
	capturesDir = "../../testdata/captures"
)

// capturePacket is one L2TP packet from a decrypted-l2tp.pcap.
type capturePacket struct {
	index int // 1-based pcap record number
	l2tp  []byte
}

// readL2TPPcap returns the UDP payloads of the UDP/1701 packets of a
// decrypted-l2tp.pcap, every record of which must be IPv4/UDP.
func readL2TPPcap(t testing.TB, path string) []capturePacket {
	t.Helper()
	ds, err := capture.Datagrams(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []capturePacket
	for i, d := range ds {
		if d.Frame != i+1 {
			t.Fatalf("%s #%d: not IPv4/UDP", path, i+1)
		}
		if d.Src.Port() != 1701 && d.Dst.Port() != 1701 {
			continue
		}
		out = append(out, capturePacket{index: d.Frame, l2tp: d.Payload})
	}
	return out
}

func capturePaths(t testing.TB) []string {
	dirs, err := capture.Sessions(capturesDir)
	if err != nil || len(dirs) != 3 {
		t.Fatalf("want 3 capture dirs, got %v (%v)", dirs, err)
	}
	m := make([]string, len(dirs))
	for i, d := range dirs {
		m[i] = filepath.Join(d, "decrypted-l2tp.pcap")
	}
	return m
}

// TestCapturesParse: every L2TP packet in the three real sessions parses,
// control messages pass Validate with no unknown mandatory AVP, data
// messages yield a PPP frame for a tunnel/session that the control
// messages established.
func TestCapturesParse(t *testing.T) {
	for _, path := range capturePaths(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			pkts := readL2TPPcap(t, path)
			var nCtl, nData, nZLB int
			seen := map[MessageType]int{}
			ids := map[uint16]bool{} // assigned tunnel IDs
			sids := map[uint16]bool{}
			for _, p := range pkts {
				if IsControl(p.l2tp) {
					nCtl++
					m, err := ParseControl(p.l2tp)
					if err != nil {
						t.Fatalf("#%d: %v (%x)", p.index, err, p.l2tp)
					}
					if err := m.Validate(); err != nil {
						t.Errorf("#%d %s: %v", p.index, m.Type, err)
					}
					if a, ok := m.UnknownMandatory(); ok {
						t.Errorf("#%d %s: unknown mandatory %s", p.index, m.Type, a)
					}
					if m.UsesTunnelAuth() {
						t.Errorf("#%d: unexpected tunnel auth", p.index)
					}
					if m.IsZLB() {
						nZLB++
						continue
					}
					seen[m.Type]++
					if v, ok := m.Uint16(AVPAssignedTunnelID); ok {
						ids[v] = true
					}
					if v, ok := m.Uint16(AVPAssignedSessionID); ok {
						sids[v] = true
					}
					switch m.Type {
					case MsgSCCRQ, MsgSCCRP:
						if v, _ := m.Uint16(AVPProtocolVersion); v != ProtocolVersion {
							t.Errorf("#%d: protocol version %#x", p.index, v)
						}
						if m.Text(AVPHostName) == "" {
							t.Errorf("#%d: no host name", p.index)
						}
					case MsgStopCCN, MsgCDN:
						rc, ok := m.ResultCode()
						if !ok {
							t.Errorf("#%d: bad result code", p.index)
						}
						t.Logf("#%d %s: %s", p.index, m.Type, rc.describe(m.Type))
					}
					continue
				}
				nData++
				tid, sid, payload, err := ParseData(p.l2tp)
				if err != nil {
					t.Fatalf("#%d: %v", p.index, err)
				}
				if !ids[tid] || !sids[sid] {
					t.Errorf("#%d: data for tunnel %d session %d not assigned by control messages", p.index, tid, sid)
				}
				if len(payload) < 2 {
					t.Errorf("#%d: empty PPP payload", p.index)
				}
			}
			// SoftEther (c) answers the client's CDN and StopCCN with its own.
			for _, mt := range []MessageType{MsgSCCRQ, MsgSCCRP, MsgSCCCN, MsgICRQ, MsgICRP, MsgICCN, MsgCDN, MsgStopCCN} {
				if seen[mt] < 1 || seen[mt] > 2 || (seen[mt] == 2 && mt != MsgCDN && mt != MsgStopCCN) {
					t.Errorf("%s seen %d times, want 1", mt, seen[mt])
				}
			}
			if nZLB < 4 || nData < 30 {
				t.Errorf("control %d (ZLB %d), data %d: fewer than expected", nCtl, nZLB, nData)
			}
		})
	}
}

// TestCaptureSoftEtherSCCRP checks decoded values of a real SCCRP (session
// c, SoftEther): facts listed in the captures README.
func TestCaptureSoftEtherSCCRP(t *testing.T) {
	pkts := readL2TPPcap(t, filepath.Join(capturesDir, "c-softether-server_strongswan-client", "decrypted-l2tp.pcap"))
	var m *ControlMessage
	for _, p := range pkts {
		if IsControl(p.l2tp) {
			if x, err := ParseControl(p.l2tp); err == nil && x.Type == MsgSCCRP {
				m = x
			}
		}
	}
	if m == nil {
		t.Fatal("no SCCRP")
	}
	if got := m.Text(AVPHostName); got != "vm" {
		t.Errorf("host %q", got)
	}
	if got := m.Text(AVPVendorName); got != "L2TP" {
		t.Errorf("vendor %q", got)
	}
	if v, _ := m.Uint32(AVPFramingCapabilities); v != FramingSync|FramingAsync {
		t.Errorf("framing %#x", v)
	}
	if v, _ := m.Uint16(AVPAssignedTunnelID); v != 1 {
		t.Errorf("tunnel %d", v)
	}
	if v, _ := m.Uint16(AVPReceiveWindowSize); v != 16 {
		t.Errorf("rws %d", v)
	}
	if m.TunnelID == 0 || m.Ns != 0 || m.Nr != 1 {
		t.Errorf("header %+v", m.Header)
	}
}

type vectorFile struct {
	Source  string `json:"source"`
	Packets []struct {
		Name    string `json:"name"`
		Source  string `json:"source"`
		Hex     string `json:"hex"`
		Decoded struct {
			Length   int    `json:"length"`
			TunnelID uint16 `json:"tunnel_id"`
			Session  uint16 `json:"session_id"`
			Ns       uint16 `json:"ns"`
			Nr       uint16 `json:"nr"`
			AVPs     []struct {
				M, H   int
				Length int    `json:"length"`
				Vendor uint16 `json:"vendor"`
				Type   uint16 `json:"type"`
				Value  string `json:"value"`
			} `json:"avps"`
		} `json:"decoded"`
	} `json:"packets"`
}

func TestVectors(t *testing.T) {
	d, err := os.ReadFile(filepath.Join(vectorsDir, "l2tp_packets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(d, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Packets) != 4 {
		t.Fatalf("%d packets", len(vf.Packets))
	}
	for _, v := range vf.Packets {
		t.Run(v.Name, func(t *testing.T) {
			pkt, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseControl(pkt)
			if err != nil {
				t.Fatal(err)
			}
			dec := v.Decoded
			if int(m.Length) != dec.Length || m.TunnelID != dec.TunnelID || m.SessionID != dec.Session || m.Ns != dec.Ns || m.Nr != dec.Nr {
				t.Errorf("header %+v, want %+v", m.Header, dec)
			}
			if len(m.AVPs) != len(dec.AVPs) {
				t.Fatalf("%d AVPs, want %d", len(m.AVPs), len(dec.AVPs))
			}
			for i, a := range m.AVPs {
				w := dec.AVPs[i]
				if a.Mandatory != (w.M == 1) || a.Hidden != (w.H == 1) || a.VendorID != w.Vendor ||
					uint16(a.Type) != w.Type || hex.EncodeToString(a.Value) != w.Value || len(a.Value)+6 != w.Length {
					t.Errorf("AVP %d = %+v, want %+v", i, a, w)
				}
			}
			if err := m.Validate(); err != nil {
				t.Error(err)
			}
			// Re-encode from the parsed AVPs: byte-identical.
			if m.IsZLB() {
				if z := appendZLB(nil, m.TunnelID, m.SessionID, m.Ns, m.Nr); !bytes.Equal(z, pkt) {
					t.Errorf("ZLB re-encode %x", z)
				}
				return
			}
			b := newMessage(m.Type, m.TunnelID, m.SessionID)
			for _, a := range m.AVPs[1:] {
				b.avp(a.Type, a.Mandatory, a.Value)
			}
			out, err := b.bytes()
			if err != nil {
				t.Fatal(err)
			}
			putNsNr(out, m.Ns, m.Nr)
			if !bytes.Equal(out, pkt) {
				t.Errorf("re-encode\n got %x\nwant %x", out, pkt)
			}
		})
	}
}

// TestBuilderRoundTrip: messages our engine builds parse back with the
// values put in, pass Validate, and carry Message Type first.
func TestBuilderRoundTrip(t *testing.T) {
	e := newEngine(Config{Rand: bytes.NewReader(bytes.Repeat([]byte{0x12, 0x34}, 64))}, nil, roleLAC)
	e.tr = &captureTransport{}
	if err := e.sendSCCRQ(); err != nil {
		t.Fatal(err)
	}
	pkt := e.tr.(*captureTransport).pkts[0]
	m, err := ParseControl(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if m.Type != MsgSCCRQ || m.TunnelID != 0 || m.Ns != 0 || m.Nr != 0 {
		t.Errorf("%+v", m)
	}
	checks := []struct {
		t    AVPType
		want uint32
	}{
		{AVPProtocolVersion, 0x0100}, {AVPFramingCapabilities, 3}, {AVPAssignedTunnelID, 0x1234}, {AVPReceiveWindowSize, 8},
	}
	for _, c := range checks {
		a, ok := m.Find(c.t)
		if !ok {
			t.Fatalf("no %s", c.t)
		}
		var v uint32
		for _, b := range a.Value {
			v = v<<8 | uint32(b)
		}
		if v != c.want || !a.Mandatory {
			t.Errorf("%s = %#x M=%v, want %#x M=1", c.t, v, a.Mandatory, c.want)
		}
	}
	if m.Text(AVPHostName) != "l2tpproxy" || m.Text(AVPVendorName) != "l2tpproxy" {
		t.Errorf("names %q %q", m.Text(AVPHostName), m.Text(AVPVendorName))
	}
	if a, _ := m.Find(AVPVendorName); a.Mandatory {
		t.Error("Vendor Name must be sent with M=0")
	}

	// Result Code forms: 2-byte, 4-byte, with message.
	for _, rc := range []ResultCode{
		{Result: 1},
		{Result: 2, Error: 6, HasError: true},
		{Result: 6, Error: 0, HasError: true, Message: "bye"},
	} {
		out, err := newMessage(MsgStopCCN, 7, 0).resultCode(rc).u16(AVPAssignedTunnelID, true, 9).bytes()
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseControl(out)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := m.ResultCode()
		if !ok || got != rc {
			t.Errorf("result code %+v, want %+v", got, rc)
		}
		if err := m.Validate(); err != nil {
			t.Error(err)
		}
	}
}

type captureTransport struct{ pkts [][]byte }

func (c *captureTransport) WriteL2TP(p []byte) error {
	c.pkts = append(c.pkts, append([]byte(nil), p...))
	return nil
}

func TestResultCodeParse(t *testing.T) {
	tests := []struct {
		hex  string
		want ResultCode
		ok   bool
		text string
	}{
		{"0001", ResultCode{Result: 1}, true, "result 1 (general request to clear control connection)"},
		{"00010000", ResultCode{Result: 1, HasError: true}, true, "result 1 (general request to clear control connection), error 0"},
		{"000200080000", ResultCode{Result: 2, Error: 8, HasError: true}, true, "error 8 (unknown mandatory AVP received)"},
		// SoftEther StopCCN (capture c #111): result 0, error 0x0600, NUL padding.
		{"0000060000000000", ResultCode{Result: 0, Error: 0x600, HasError: true}, true, "result 0, error 1536"},
		// xl2tpd StopCCN message (captures a/b).
		{"00010000476f6f6462796521", ResultCode{Result: 1, HasError: true, Message: "Goodbye!"}, true, `"Goodbye!"`},
		{"00", ResultCode{}, false, ""},
		{"000100", ResultCode{}, false, ""},
	}
	for _, tc := range tests {
		v, _ := hex.DecodeString(tc.hex)
		got, err := parseResultCode(v)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.hex, err)
			continue
		}
		if !tc.ok {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %v not ErrMalformed", tc.hex, err)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.hex, got, tc.want)
		}
		if s := got.describe(MsgStopCCN); !strings.Contains(s, tc.text) {
			t.Errorf("%s: describe %q lacks %q", tc.hex, s, tc.text)
		}
	}
}

func TestParseControlErrors(t *testing.T) {
	good := "c802001400010000000100018008000000000006" // HELLO
	tests := []struct {
		name, hex string
	}{
		{"short", "c80200"},
		{"data bit", "4802001400010000000100018008000000000006"},
		{"no S bit", "c002001400010000000100018008000000000006"},
		{"O bit", "ca02001400010000000100018008000000000006"},
		{"version 3", "c803001400010000000100018008000000000006"},
		{"length too big", "c802001500010000000100018008000000000006"},
		{"length too small", "c802000b00010000000100018008000000000006"},
		{"avp truncated", "c802001200010000000100018008000000"},
		{"avp length 5", "c802001400010000000100018005000000000006"},
		{"avp length beyond", "c802001400010000000100018009000000000006"},
		{"first not msg type", "c802001400010000000100018008000000070006"},
		{"msg type hidden", "c80200140001000000010001c008000000000006"},
		{"msg type zero", "c802001400010000000100018008000000000000"},
		{"msg type vendor", "c802001400010000000100018008000100000006"},
		{"bad known length", "c8020019000100000001000180080000000000068007000000090000"},
	}
	if _, err := ParseControl(mustHex(good)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		_, err := ParseControl(mustHex(tc.hex))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tc.name, err)
		}
	}
}

func TestValidateAndUnknown(t *testing.T) {
	// ICRP without Assigned Session ID.
	out, _ := newMessage(MsgICRP, 1, 2).bytes()
	m, err := ParseControl(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "Assigned Session ID") {
		t.Errorf("validate: %v", err)
	}
	// Unknown IETF type 99 with M=1, vendor AVP with M=0, hidden AVP.
	out, _ = newMessage(MsgHELLO, 1, 0).avp(99, true, []byte{1}).bytes()
	m, _ = ParseControl(out)
	if a, ok := m.UnknownMandatory(); !ok || a.Type != 99 {
		t.Errorf("unknown mandatory not found")
	}
	b := newMessage(MsgHELLO, 1, 0)
	b.avp(5, false, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	b.b = append(b.b, 0x00, 0x07, 0x01, 0x37, 0x00, 0x01, 0xff) // vendor 311, M=0
	out, _ = b.bytes()
	m, err = ParseControl(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.UnknownMandatory(); ok || m.UsesTunnelAuth() {
		t.Errorf("M=0 vendor AVP flagged")
	}
	out, _ = newMessage(MsgICRP, 1, 2).u16(AVPAssignedSessionID, true, 5).bytes()
	out[12+8] |= 0x40 // hide Assigned Session ID
	m, _ = ParseControl(out)
	if !m.UsesTunnelAuth() {
		t.Error("hidden AVP not flagged")
	}
	if _, ok := m.Uint16(AVPAssignedSessionID); ok {
		t.Error("hidden value returned")
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestDataHeader(t *testing.T) {
	payload := []byte{0xff, 0x03, 0xc0, 0x21, 1, 2, 3}
	for _, seq := range []bool{false, true} {
		b := make([]byte, DataHeaderLen(seq)+len(payload))
		PutDataHeader(b, 0x1234, 0x5678, seq, 42)
		copy(b[DataHeaderLen(seq):], payload)
		if IsControl(b) {
			t.Error("data header looks like control")
		}
		if IsSequencedData(b) != seq {
			t.Error("IsSequencedData")
		}
		tid, sid, p, err := ParseData(b)
		if err != nil || tid != 0x1234 || sid != 0x5678 || !bytes.Equal(p, payload) {
			t.Errorf("seq=%v: %d %d %x %v", seq, tid, sid, p, err)
		}
		if seq && binary.BigEndian.Uint16(b[6:]) != 42 {
			t.Error("Ns not written")
		}
	}
	tests := []struct {
		name, hex string
		tid, sid  uint16
		payload   string
		err       bool
	}{
		{"minimal", "00020001000aff03", 1, 10, "ff03", false},
		{"L bit", "4002000a0001000aff03", 1, 10, "ff03", false},
		{"L bit trailing junk ignored", "4002000a0001000aff03eeee", 1, 10, "ff03", false},
		{"L+S", "4802000e0001000a00050000ff03", 1, 10, "ff03", false},
		{"S", "08020001000a00050000ff03", 1, 10, "ff03", false},
		{"O with pad", "02020001000a0003aaaaaaff03", 1, 10, "ff03", false},
		{"L+S+O", "4a0200120001000a000500000002aaaaff03", 1, 10, "ff03", false},
		{"P bit ignored", "01020001000aff03", 1, 10, "ff03", false},
		{"empty payload", "00020001000a", 1, 10, "", false},
		{"control", "c802000c0001000000010001", 0, 0, "", true},
		{"version 3", "00030001000aff03", 0, 0, "", true},
		{"short", "00020001", 0, 0, "", true},
		{"L beyond", "400200ff0001000aff03", 0, 0, "", true},
		{"L below header", "400200050001000aff03", 0, 0, "", true},
		{"S truncated", "08020001000a0005", 0, 0, "", true},
		{"O beyond", "02020001000a0009aaff03", 0, 0, "", true},
		{"O truncated", "02020001000a00", 0, 0, "", true},
	}
	for _, tc := range tests {
		tid, sid, p, err := ParseData(mustHex(tc.hex))
		if tc.err {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: err %v", tc.name, err)
			}
			continue
		}
		if err != nil || tid != tc.tid || sid != tc.sid || hex.EncodeToString(p) != tc.payload {
			t.Errorf("%s: %d %d %x %v", tc.name, tid, sid, p, err)
		}
	}
}

func TestDataPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	pkt := mustHex("4a0200120001000a000500000002aaaaff03")
	bad := mustHex("02020001000a0009aaff03")
	hdr := make([]byte, 10)
	n := testing.AllocsPerRun(100, func() {
		_, _, _, _ = ParseData(pkt)
		_, _, _, _ = ParseData(bad)
		PutDataHeader(hdr, 1, 2, true, 3)
		_ = IsControl(pkt)
	})
	if n != 0 {
		t.Errorf("%v allocs", n)
	}
}

// FuzzParse: the control parser (with Validate and accessors) and
// ParseData never panic and stay within the input.
func FuzzParse(f *testing.F) {
	for _, path := range capturePaths(f) {
		for _, p := range readL2TPPcap(f, path) {
			f.Add(p.l2tp)
		}
	}
	d, err := os.ReadFile(filepath.Join(vectorsDir, "l2tp_packets.json"))
	if err != nil {
		f.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(d, &vf); err != nil {
		f.Fatal(err)
	}
	for _, v := range vf.Packets {
		f.Add(mustHex(v.Hex))
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if m, err := ParseControl(pkt); err == nil {
			_ = m.Validate()
			_, _ = m.UnknownMandatory()
			_ = m.UsesTunnelAuth()
			_, _ = m.ResultCode()
			_ = m.Text(AVPHostName)
			_, _ = m.Uint16(AVPAssignedTunnelID)
			_, _ = m.Uint32(AVPFramingCapabilities)
			if len(m.AVPs) > len(pkt)/avpHeaderLen {
				t.Fatalf("%d AVPs from %d bytes", len(m.AVPs), len(pkt))
			}
			for _, a := range m.AVPs {
				_ = a.String()
			}
		}
		if _, _, p, err := ParseData(pkt); err == nil && len(p) > len(pkt) {
			t.Fatal("payload longer than packet")
		}
		_ = IsControl(pkt)
		_ = IsSequencedData(pkt)
	})
}
