package main

import (
	"bytes"
	endian "encoding/binary"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// pcapRecord is one packet of a pcap file.
type pcapRecord struct {
	inclLen, origLen uint32
	data             []byte
}

// readPcap parses a classic pcap file (the format gVisor's sniffer
// writes: https://wiki.wireshark.org/Development/LibpcapFileFormat) and
// checks its header: microsecond magic, version 2.4, LINKTYPE_RAW.
func readPcap(t *testing.T, b []byte) []pcapRecord {
	t.Helper()
	if len(b) < pcapHeaderLen {
		t.Fatalf("pcap file of %d bytes: no header", len(b))
	}
	le := endian.LittleEndian
	if magic, major, minor, link := le.Uint32(b), le.Uint16(b[4:]), le.Uint16(b[6:]), le.Uint32(b[20:]); magic != 0xa1b2c3d4 || major != 2 || minor != 4 || link != 101 {
		t.Fatalf("pcap header: magic %#x, version %d.%d, link type %d", magic, major, minor, link)
	}
	var recs []pcapRecord
	for p := b[pcapHeaderLen:]; len(p) > 0; {
		if len(p) < 16 {
			t.Fatalf("truncated record header after %d records", len(recs))
		}
		r := pcapRecord{inclLen: le.Uint32(p[8:]), origLen: le.Uint32(p[12:])}
		if int(r.inclLen) > len(p)-16 || r.inclLen > r.origLen {
			t.Fatalf("record %d: incl_len %d, orig_len %d, %d bytes left", len(recs), r.inclLen, r.origLen, len(p)-16)
		}
		r.data = p[16 : 16+r.inclLen]
		if r.data[0]>>4 != 4 {
			t.Fatalf("record %d is not IPv4: % x", len(recs), r.data[:min(20, len(r.data))])
		}
		recs = append(recs, r)
		p = p[16+r.inclLen:]
	}
	return recs
}

// tcpPayload returns the TCP payload of an IPv4 packet (nil if it is not
// TCP).
func tcpPayload(ip []byte) []byte {
	if len(ip) < 20 || ip[9] != 6 {
		return nil
	}
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+20 {
		return nil
	}
	tcp := ip[ihl:]
	off := int(tcp[12]>>4) * 4
	if len(tcp) < off {
		return nil
	}
	return tcp[off:]
}

// TestPcapCapture: --pcap holds the inner IP packets of a download through
// the HTTP proxy, the request among them, in one valid pcap file across a
// reconnect (one file header); never a secret. With a small
// --pcap-max-size it stops at that size and logs it once.
func TestPcapCapture(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		max  int64
	}{{"complete", 100 << 20}, {"bounded", 16 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, testserver.Config{BigSize: 256 << 10})
			path := filepath.Join(dir, tc.name+".pcap")
			logs := &syncBuffer{}
			pf, err := createPcap(path, tc.max, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ps := proxySettings{Routes: &proxy.Routes{}}
			r := startServeMonitored(t, srv, nil, ps, func(sc *serveConfig) { sc.Tunnel.Capture = pf.stream })
			if b, err := fetchAuth("http", r.http, nil, srv.URL("/hello.txt")); err != nil || b != srv.HelloBody() {
				t.Fatalf("hello: %q, %v", b, err)
			}
			if b, err := fetchAuth("http", r.http, nil, srv.URL("/big.bin")); err != nil || len(b) != 256<<10 {
				t.Fatalf("big: %d bytes, %v", len(b), err)
			}
			r.stop(t)
			if err := pf.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			recs := readPcap(t, b)
			var sawGET bool
			var payload int
			for _, r := range recs {
				p := tcpPayload(r.data)
				payload += len(p)
				if bytes.HasPrefix(p, []byte("GET /hello.txt HTTP/1.1\r\n")) && bytes.Contains(p, []byte("Host: "+testserver.TargetName)) {
					sawGET = true
				}
			}
			if !sawGET {
				t.Errorf("no GET /hello.txt among %d packets", len(recs))
			}
			for _, secret := range []string{"testpsk", "vpnpass"} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("the capture contains %q", secret)
				}
			}
			full := strings.Count(logs.String(), "reached --pcap-max-size")
			switch tc.name {
			case "complete":
				if payload < 256<<10 || full != 0 {
					t.Errorf("%d TCP payload bytes captured (want the 256 KiB download), %d 'reached' lines", payload, full)
				}
			case "bounded":
				if int64(len(b)) > tc.max || int64(len(b)) < tc.max-70000 || full != 1 {
					t.Errorf("file of %d bytes with --pcap-max-size %d, %d 'reached' lines (want 1)", len(b), tc.max, full)
				}
			}
			t.Logf("%d packets, %d bytes", len(recs), len(b))
			// A second, independent reader when the machine has one.
			if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
				out, err := exec.Command(tcpdump, "-nn", "-A", "-r", path).CombinedOutput()
				if err != nil || !bytes.Contains(out, []byte("GET /hello.txt HTTP/1.1")) || bytes.Contains(out, []byte("truncated")) {
					t.Errorf("tcpdump -r: %v, %d bytes of output without the request (or truncated):\n%.2000s", err, len(out), out)
				}
			} else {
				t.Log("tcpdump not installed: the capture was checked by readPcap only")
			}
		})
	}
}

// TestPcapStreams: the file header of a second stream (the network stack
// of a tunnel after a reconnect) is dropped, its packets are kept.
func TestPcapStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcap")
	pf, err := createPcap(path, 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, pcapHeaderLen)
	endian.LittleEndian.PutUint32(hdr, 0xa1b2c3d4)
	endian.LittleEndian.PutUint16(hdr[4:], 2)
	endian.LittleEndian.PutUint16(hdr[6:], 4)
	endian.LittleEndian.PutUint32(hdr[20:], 101)
	rec := func(n byte) []byte {
		r := make([]byte, 16+20)
		endian.LittleEndian.PutUint32(r[8:], 20)
		endian.LittleEndian.PutUint32(r[12:], 20)
		r[16], r[16+19] = 0x45, n
		return r
	}
	for i := range 2 {
		s := pf.stream()
		s.Write(hdr)
		s.Write(rec(byte(i)))
	}
	pf.Close()
	b, _ := os.ReadFile(path)
	if recs := readPcap(t, b); len(recs) != 2 || recs[1].data[19] != 1 {
		t.Errorf("%d records, want 2 after one header", len(recs))
	}
}

// TestLogFormatJSON: exec --log-format json logs one JSON object a line.
func TestLogFormatJSON(t *testing.T) {
	srv := newServer(t, testserver.Config{})
	args := append([]string{"l2tpproxy", "exec"}, serverFlags(t, srv)...)
	args = append(args, "--log-level", "info", "--log-format", "json", "--", "true")
	var code int
	out := captureStderr(t, func() { code = run(args) })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	msgs := map[string]bool{}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not a JSON line: %q (%v)", l, err)
		}
		if _, ok := rec["time"]; !ok || rec["level"] == nil {
			t.Errorf("line without time or level: %q", l)
		}
		msg, _ := rec["msg"].(string)
		msgs[msg] = true
	}
	for _, want := range []string{"IKE SA established", "IPCP up", "tunnel up"} {
		if !msgs[want] {
			t.Errorf("no %q among %d JSON lines", want, len(lines))
		}
	}
	if strings.Contains(out, "testpsk") || strings.Contains(out, "vpnpass") {
		t.Error("a secret in the log")
	}
}
