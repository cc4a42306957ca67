package main

import (
	"context"
	"html"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// chromiumArgs are the flags for a headless Chromium that loads url with
// only a PAC URL as its proxy configuration, prints the DOM and exits.
func chromiumArgs(dataDir, pacURL, url string) []string {
	args := []string{"--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + dataDir, "--proxy-pac-url=" + pacURL, "--dump-dom", url}
	if os.Geteuid() == 0 {
		args = append([]string{"--no-sandbox"}, args...) // Chromium refuses to run as root otherwise
	}
	return args
}

// TestBrowserPAC: a real headless Chromium, configured only with
// --proxy-pac-url pointing at our /proxy.pac, loads the test server's page
// by a name only the VPN's DNS knows. Others are refused, so the PAC file
// sends the browser's every request to the proxy and nothing leaves
// loopback.
func TestBrowserPAC(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install -y --no-install-recommends chromium; .ci/run installs it)")
	}
	srv, err := testserver.Start(testserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	routes, _ := proxy.ParseRoutes(nil, []string{"vpn.test"}, "refuse")
	r := startServeWith(t, srv, proxySettings{Routes: routes})
	defer r.stop(t)

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, chromiumArgs(dir, "http://"+r.http.String()+"/proxy.pac", srv.URL("/hello.txt"))...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(html.UnescapeString(string(dom)), strings.TrimSpace(srv.HelloBody())) {
		t.Fatalf("the page lacks %q:\n%s\nchromium:\n%s", srv.HelloBody(), dom, stderr.String())
	}
}
