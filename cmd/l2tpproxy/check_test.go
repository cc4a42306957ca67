package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// captureStdout runs f with os.Stdout redirected and returns what it wrote.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	f()
	os.Stdout = old
	w.Close()
	return string(<-done)
}

// runCheckCmd runs `l2tpproxy check` against srv and returns its exit code
// and stdout.
func runCheckCmd(t *testing.T, srv *testserver.Server, flags ...string) (int, string) {
	t.Helper()
	args := append(append([]string{"l2tpproxy", "check"}, serverFlags(t, srv)...), flags...)
	var code int
	out := captureStdout(t, func() { code = run(args) })
	return code, out
}

// TestCheckJSON: check --json prints one object whose fields are what the
// test server was set up to negotiate (one suite each, PFS required, MS-CHAPv2),
// with a time for every layer and an answered round trip.
func TestCheckJSON(t *testing.T) {
	p1 := ike.Phase1Transform{Enc: 7, KeyBits: 128, Hash: 2, Group: 14}
	p2 := esp.Algorithm{Enc: esp.EncAESCBC, EncKeyBits: 128, Auth: esp.AuthHMACSHA1}
	srv := newServer(t, testserver.Config{Phase1: []ike.Phase1Transform{p1}, Phase2: []esp.Algorithm{p2},
		RequirePFS: true})
	code, out := runCheckCmd(t, srv, "--json")
	if code != 0 {
		t.Fatalf("exit code %d, output %q", code, out)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("want one line, one object: %q", out)
	}
	var r struct {
		OK          bool               `json:"ok"`
		ExitCode    int                `json:"exit_code"`
		Error       *string            `json:"error"`
		Server      string             `json:"server"`
		Local       string             `json:"local"`
		IKESuite    string             `json:"ike_suite"`
		ESPSuite    string             `json:"esp_suite"`
		PFS         string             `json:"pfs"`
		L2TPPeer    string             `json:"l2tp_peer"`
		L2TPVendor  string             `json:"l2tp_vendor"`
		PPPAuth     string             `json:"ppp_auth"`
		Address     string             `json:"address"`
		PeerAddress string             `json:"peer_address"`
		DNS         []string           `json:"dns"`
		MTU         int                `json:"mtu"`
		Times       map[string]float64 `json:"times_ms"`
		RTT         struct {
			Method   string  `json:"method"`
			Target   string  `json:"target"`
			Query    string  `json:"query"`
			Sent     int     `json:"sent"`
			Answered int     `json:"answered"`
			MinMS    float64 `json:"min_ms"`
			MedianMS float64 `json:"median_ms"`
			MaxMS    float64 `json:"max_ms"`
			Error    string  `json:"error"`
		} `json:"rtt"`
		TeardownMS float64 `json:"teardown_ms"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	for _, c := range []struct{ field, got, want string }{
		{"server", r.Server, srv.IKEAddr().String()},
		{"ike_suite", r.IKESuite, "AES-CBC-128/HMAC-SHA1/MODP2048"},
		{"esp_suite", r.ESPSuite, "AES-CBC-128/HMAC-SHA1-96"},
		{"pfs", r.PFS, "MODP2048"},
		{"l2tp_peer", r.L2TPPeer, "testserver"},
		{"l2tp_vendor", r.L2TPVendor, "l2tpproxy-testserver"},
		{"ppp_auth", r.PPPAuth, "MS-CHAPv2"},
		{"address", r.Address, testserver.ClientIP.String()},
		{"peer_address", r.PeerAddress, testserver.ServerIP.String()},
		{"rtt.method", r.RTT.Method, "dns"},
		{"rtt.target", r.RTT.Target, testserver.ServerIP.String() + ":53"},
		{"rtt.query", r.RTT.Query, "localhost. A"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if !r.OK || r.ExitCode != 0 {
		t.Errorf("ok %v exit_code %d", r.OK, r.ExitCode)
	}
	if !strings.HasPrefix(r.Local, "127.0.0.1:") {
		t.Errorf("local = %q", r.Local)
	}
	if len(r.DNS) != 1 || r.DNS[0] != testserver.ServerIP.String() {
		t.Errorf("dns = %q", r.DNS)
	}
	if r.MTU < 576 || r.MTU > 1400 {
		t.Errorf("mtu = %d, want the PPP MTU (at most the server's 1400)", r.MTU)
	}
	sum := 0.0
	for _, k := range []string{"ike_phase1", "quick_mode", "l2tp", "ppp_lcp", "ppp_auth", "ipcp"} {
		v, ok := r.Times[k]
		if !ok || v <= 0 {
			t.Errorf("times_ms.%s = %v, want > 0", k, v)
		}
		sum += v
	}
	if total := r.Times["total"]; total < sum || total > 30000 {
		t.Errorf("times_ms.total %v, want at least the layers' sum %v", total, sum)
	}
	if r.RTT.Sent != rttSamples || r.RTT.Answered != rttSamples || r.RTT.Error != "" {
		t.Errorf("rtt: %d of %d answered, error %q", r.RTT.Answered, r.RTT.Sent, r.RTT.Error)
	}
	if !(0 < r.RTT.MinMS && r.RTT.MinMS <= r.RTT.MedianMS && r.RTT.MedianMS <= r.RTT.MaxMS && r.RTT.MaxMS < 2000) {
		t.Errorf("rtt min/median/max %v/%v/%v", r.RTT.MinMS, r.RTT.MedianMS, r.RTT.MaxMS)
	}
	if r.TeardownMS <= 0 {
		t.Errorf("teardown_ms = %v", r.TeardownMS)
	}
	if strings.Contains(out, "testpsk") || strings.Contains(out, "vpnpass") {
		t.Error("a secret appears in the output")
	}
}

// TestCheckText: without --json, one line per item.
func TestCheckText(t *testing.T) {
	srv := newServer(t, testserver.Config{})
	code, out := runCheckCmd(t, srv)
	if code != 0 {
		t.Fatalf("exit code %d, output %q", code, out)
	}
	for _, want := range []string{
		"IKE SA      AES-CBC-256/HMAC-SHA2-512/MODP2048\n",
		"IPsec SA    AES-GCM-128, PFS none\n",
		"L2TP peer   testserver (l2tpproxy-testserver)\n",
		"PPP auth    MS-CHAPv2\n",
		"address     192.168.77.10 (peer 192.168.77.1)\n",
		"DNS         192.168.77.1\n",
		"time        IKE phase 1 ",
		"RTT         ",
		"5 of 5 DNS queries \"localhost. A\" to 192.168.77.1:53 through the tunnel answered",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestCheckFails: a wrong PSK gives exit code 4 and, with --json, an
// object saying so; a wrong password 6.
func TestCheckFails(t *testing.T) {
	for _, tc := range []struct {
		env, value string
		code       int
		layer      string
	}{
		{"L2TPPROXY_PSK", "wrong-psk-XyZ", exitIKE, "IKE: "},
		{"L2TPPROXY_PASSWORD", "wrong-password-XyZ", exitPPP, "PPP: "},
	} {
		t.Run(tc.env, func(t *testing.T) {
			srv := newServer(t, testserver.Config{})
			args := append([]string{"l2tpproxy", "check", "--json"}, serverFlags(t, srv)...)
			t.Setenv(tc.env, tc.value)
			var code int
			var out string
			errOut := captureStderr(t, func() { out = captureStdout(t, func() { code = run(args) }) })
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			var r struct {
				OK       bool   `json:"ok"`
				Error    string `json:"error"`
				ExitCode int    `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v in %q", err, out)
			}
			if r.OK || r.ExitCode != tc.code || !strings.HasPrefix(r.Error, tc.layer) {
				t.Errorf("%+v, want ok false, exit_code %d, error from %s", r, tc.code, tc.layer)
			}
			if !strings.HasPrefix(errOut, "l2tpproxy: "+tc.layer) {
				t.Errorf("stderr %q, want the one-line error", errOut)
			}
			if strings.Contains(out+errOut, "XyZ") {
				t.Error("a secret appears in the output")
			}
		})
	}
}
