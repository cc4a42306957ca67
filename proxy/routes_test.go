package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

func TestParseRoutes(t *testing.T) {
	for _, tc := range []struct {
		nets, domains []string
		others        string
		want          string // error substring, or ""
	}{
		{nil, nil, "", ""},
		{[]string{"10.0.0.0/8", "192.168.1.7"}, []string{"corp.example", ".Intra.Example."}, "refuse", ""},
		{[]string{"10.0.0.1/8"}, nil, "direct", ""}, // masked
		{[]string{"nonsense"}, nil, "", "not a CIDR"},
		{[]string{"fd00::/8"}, nil, "", "IPv4 only"},
		{nil, []string{""}, "", "not a domain name"},
		{nil, []string{"a..b"}, "", "not a domain name"},
		{nil, []string{"bad/name"}, "", "not a domain name"},
		{nil, []string{"x"}, "sometimes", "--others must be"},
	} {
		r, err := ParseRoutes(tc.nets, tc.domains, tc.others)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadRoute)) {
			t.Errorf("ParseRoutes(%q, %q, %q) = %v, %v; want error %q", tc.nets, tc.domains, tc.others, r, err, tc.want)
		}
	}
	r, _ := ParseRoutes([]string{"10.0.0.1/8"}, []string{".Intra.Example."}, "")
	if r.Nets[0].String() != "10.0.0.0/8" || r.Domains[0] != "intra.example" || r.Others != ViaDirect {
		t.Errorf("normalised: %+v", r)
	}
}

// hostDNS is a host resolver with fixed answers.
type hostDNS map[string]string

func (h hostDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, errors.New("no such host")
}

// fakeDialer records the address it was asked to dial and fails.
type fakeDialer struct{ got string }

var errFakeDial = errors.New("fake dial")

func (d *fakeDialer) DialContext(_ context.Context, _, address string) (net.Conn, error) {
	d.got = address
	return nil, errFakeDial
}

func TestRouterDecide(t *testing.T) {
	dns := hostDNS{"public.example": "198.51.100.7", "splithorizon.example": "10.1.2.3"}
	split, _ := ParseRoutes([]string{"10.0.0.0/8"}, []string{"corp.example"}, "direct")
	refuse, _ := ParseRoutes([]string{"10.0.0.0/8"}, []string{"corp.example"}, "refuse")
	domainsOnly, _ := ParseRoutes(nil, []string{"corp.example"}, "direct")
	for _, tc := range []struct {
		r        *Routes
		host     string
		via      Via
		dialHost string
	}{
		{&Routes{}, "anything.example", ViaTunnel, "anything.example"},
		{&Routes{}, "8.8.8.8", ViaTunnel, "8.8.8.8"},
		{split, "10.9.9.9", ViaTunnel, "10.9.9.9"},
		{split, "11.0.0.1", ViaDirect, "11.0.0.1"},
		{split, "corp.example", ViaTunnel, "corp.example"},
		{split, "WWW.Corp.Example.", ViaTunnel, "WWW.Corp.Example."},
		{split, "notcorp.example", ViaDirect, "notcorp.example"}, // not resolvable here
		{split, "public.example", ViaDirect, "198.51.100.7"},
		{split, "splithorizon.example", ViaTunnel, "10.1.2.3"},
		{split, "::1", ViaDirect, "::1"},
		{refuse, "public.example", ViaRefuse, "198.51.100.7"},
		{refuse, "intranet.corp.example", ViaTunnel, "intranet.corp.example"},
		{domainsOnly, "10.9.9.9", ViaDirect, "10.9.9.9"},
		{domainsOnly, "public.example", ViaDirect, "public.example"}, // no routes: not resolved
	} {
		rt := &Router{Routes: tc.r, Host: dns}
		via, dh, err := rt.Decide(context.Background(), tc.host)
		if err != nil || via != tc.via || dh != tc.dialHost {
			t.Errorf("%v: Decide(%q) = %v %q %v, want %v %q", tc.r, tc.host, via, dh, err, tc.via, tc.dialHost)
		}
	}

	// DialContext goes to the chosen dialer; refused is ErrRefusedByRoutes.
	tun, direct := &fakeDialer{}, &fakeDialer{}
	rt := &Router{Routes: refuse, Tunnel: tun, Direct: direct, Host: dns}
	rt.DialContext(context.Background(), "tcp", "splithorizon.example:80")
	if tun.got != "10.1.2.3:80" {
		t.Errorf("tunnel dialled %q", tun.got)
	}
	if _, err := rt.DialContext(context.Background(), "tcp", "public.example:80"); !errors.Is(err, ErrRefusedByRoutes) {
		t.Errorf("refused: %v", err)
	}
	rt.Routes = split
	rt.DialContext(context.Background(), "udp", "public.example:53")
	if direct.got != "198.51.100.7:53" {
		t.Errorf("direct dialled %q", direct.got)
	}
}

// pacEval evaluates a PAC file with a real PAC engine (pacparser, the
// library behind many proxy tools; Debian python3-pacparser) and returns
// FindProxyForURL's result for each URL.
func pacEval(t *testing.T, pac string, urls []string) []string {
	t.Helper()
	// Debian's python3 first: another python3 earlier in PATH (pyenv,
	// a venv) does not see Debian's dist-packages.
	python := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import pacparser").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		t.Skip("python3 module pacparser is absent (Debian: apt-get install python3-pacparser; .ci/run installs it)")
	}
	in, _ := json.Marshal(map[string]any{"pac": pac, "urls": urls})
	script := `
import json, sys, pacparser
from urllib.parse import urlsplit
req = json.load(sys.stdin)
pacparser.init()
pacparser.parse_pac_string(req["pac"])
out = [pacparser.find_proxy(u, urlsplit(u).hostname) for u in req["urls"]]
pacparser.cleanup()
json.dump(out, sys.stdout)
`
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = strings.NewReader(string(in))
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("pacparser: %v\n%s", err, pac)
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPACEvaluated(t *testing.T) {
	const proxy = "PROXY 127.0.0.1:3128"
	split, _ := ParseRoutes([]string{"10.0.0.0/8", "192.168.7.0/24", "127.0.0.0/8"}, []string{"corp.example", "intra"}, "direct")
	refuse, _ := ParseRoutes([]string{"10.0.0.0/8"}, []string{"corp.example"}, "refuse")
	domainsOnly, _ := ParseRoutes(nil, []string{"corp.example"}, "direct")
	for _, tc := range []struct {
		name string
		r    *Routes
		want map[string]string
	}{
		{"everything", &Routes{}, map[string]string{
			"http://anything.invalid/": proxy,
			"https://10.1.1.1/":        proxy,
		}},
		{"split", split, map[string]string{
			"http://corp.example/":             proxy,
			"https://wiki.corp.example:8443/x": proxy,
			"http://WWW.CORP.EXAMPLE/":         proxy,
			"http://a.b.intra/":                proxy,
			"http://10.20.30.40/":              proxy,
			"http://192.168.7.200:8080/":       proxy,
			"http://192.168.8.1/":              "DIRECT",
			"http://11.0.0.1/":                 "DIRECT",
			"http://localhost/":                proxy, // resolved by the engine: 127.0.0.1
			"http://[2001:db8::1]/":            "DIRECT",
		}},
		{"refuse", refuse, map[string]string{
			"http://x.corp.example/": proxy,
			"http://11.0.0.1/":       proxy, // the proxy refuses it, with a reason
		}},
		{"domains only", domainsOnly, map[string]string{
			"http://x.corp.example/": proxy,
			"http://10.0.0.1/":       "DIRECT",
			"http://localhost/":      "DIRECT",
			// Not under the domain (no routes: nothing is resolved).
			"http://notcorp.example/":    "DIRECT",
			"http://corp.example.evil/":  "DIRECT",
			"http://x.corp.example.evil": "DIRECT",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var urls []string
			for u := range tc.want {
				urls = append(urls, u)
			}
			got := pacEval(t, tc.r.PAC("127.0.0.1:3128"), urls)
			for i, u := range urls {
				if got[i] != tc.want[u] {
					t.Errorf("%s: %q, want %q", u, got[i], tc.want[u])
				}
			}
		})
	}
}

// TestPACServed: GET /proxy.pac, addressed to the proxy (origin-form or its
// own address), returns the PAC file naming the listener's address; other
// paths are refused; it needs no credentials.
func TestPACServed(t *testing.T) {
	routes, _ := ParseRoutes([]string{"10.0.0.0/8"}, []string{"corp.example"}, "direct")
	opts := &Options{PAC: routes, Credentials: NewCredentials("u", []byte("p"))}
	addr := startServe(t, NewHTTP(&fakeDialer{}, opts).Serve)
	for _, get := range []func() (*http.Response, error){
		func() (*http.Response, error) { return http.Get("http://" + addr + "/proxy.pac") },
		func() (*http.Response, error) { return proxyClient(addr).Get("http://" + addr + "/proxy.pac") },
	} {
		resp, err := get()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
			t.Errorf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(body, `"PROXY `+addr+`"`) || !strings.Contains(body, "dnsDomainIs(host, \".corp.example\")") {
			t.Errorf("PAC body:\n%s", body)
		}
	}
	resp, err := http.Get("http://" + addr + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/other: %d", resp.StatusCode)
	}
}

func TestPACProxyAddrWildcard(t *testing.T) {
	self := &net.TCPAddr{IP: net.IPv4zero, Port: 3128}
	for host, want := range map[string]string{
		"192.0.2.5:3128": "192.0.2.5:3128",
		"proxyhost":      "proxyhost:3128",
		"[::1]:3128":     "[::1]:3128",
		"":               "127.0.0.1:3128",
	} {
		r, _ := http.NewRequest("GET", "/proxy.pac", nil)
		r.Host = host
		if got := pacProxyAddr(r, self); got != want {
			t.Errorf("Host %q: %q, want %q", host, got, want)
		}
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add("10.0.0.0/8", "corp.example", "direct")
	f.Add("1.2.3.4", ".a.b.", "refuse")
	f.Fuzz(func(t *testing.T, n, d, o string) {
		r, err := ParseRoutes([]string{n}, []string{d}, o)
		if err != nil {
			return
		}
		// What parses yields a PAC file whose strings are quoted: no
		// input can break out of a JavaScript string literal.
		pac := r.PAC("127.0.0.1:1")
		for _, dom := range r.Domains {
			if strings.ContainsAny(dom, "\"\\\n'") {
				t.Fatalf("domain %q reached the PAC file", dom)
			}
		}
		if !strings.HasSuffix(pac, "}\n") {
			t.Fatal(pac)
		}
		r.InDomains(d)
		r.ByAddr(netip.MustParseAddr("10.0.0.1"))
	})
}
