package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// serverFlags are the flags for the test server, the secrets passed in the
// environment (as CI does), so that CMD's environment can be checked for
// them.
func serverFlags(t *testing.T, srv *testserver.Server) []string {
	t.Setenv("L2TPPROXY_PSK", "testpsk")
	t.Setenv("L2TPPROXY_PASSWORD", "vpnpass")
	return []string{"--server", srv.IKEAddr().String(), "--natt-port", fmt.Sprint(srv.NATTAddr().Port()),
		"--user", "vpnuser", "--log-level", "warn"}
}

func newServer(t *testing.T, cfg testserver.Config) *testserver.Server {
	t.Helper()
	if cfg.BigSize == 0 {
		cfg.BigSize = 1 << 10
	}
	srv, err := testserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// runExecCmd runs `l2tpproxy exec [flags] -- argv...` in-process against a
// new test server and returns its exit code.
func runExecCmd(t *testing.T, flags []string, argv ...string) int {
	t.Helper()
	srv := newServer(t, testserver.Config{})
	args := append([]string{"l2tpproxy", "exec"}, serverFlags(t, srv)...)
	args = append(append(append(args, flags...), "--"), argv...)
	return run(args)
}

// TestExecExitCodes: exec exits with the command's code, 128+N for a
// signal, 127 for a command that does not exist.
func TestExecExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv []string
		want int
	}{
		{"success", []string{"true"}, 0},
		{"exit 7", []string{"sh", "-c", "exit 7"}, 7},
		{"killed", []string{"sh", "-c", "kill -KILL $$"}, 128 + int(syscall.SIGKILL)},
		{"terminated", []string{"sh", "-c", "kill -TERM $$"}, 128 + int(syscall.SIGTERM)},
		{"not found", []string{"/nonexistent/l2tpproxy-test-cmd"}, exitNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runExecCmd(t, nil, tc.argv...); got != tc.want {
				t.Errorf("exit code %d, want %d", got, tc.want)
			}
		})
	}
}

// TestExecTunnelFails: a wrong PSK gives the IKE class code and one line,
// and the command never runs.
func TestExecTunnelFails(t *testing.T) {
	srv := newServer(t, testserver.Config{})
	marker := filepath.Join(t.TempDir(), "ran")
	args := append([]string{"l2tpproxy", "exec"}, serverFlags(t, srv)...)
	t.Setenv("L2TPPROXY_PSK", "wrong-psk-XyZ")
	args = append(args, "--", "sh", "-c", `touch "$1"`, "sh", marker)
	var code int
	start := time.Now()
	out := captureStderr(t, func() { code = run(args) })
	if code != exitIKE {
		t.Errorf("exit code %d, want %d; stderr %q", code, exitIKE, out)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the command ran (marker %v) although the tunnel did not come up", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "l2tpproxy: IKE: ") || !strings.Contains(last, "pre-shared key") {
		t.Errorf("last line %q, want the IKE error", last)
	}
	if strings.Contains(out, "XyZ") {
		t.Error("the PSK appears in the output")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

// readEnv parses `env` output.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestExecEnvironment: the command sees both spellings of the proxy
// variables, pointing at free loopback ports, and none of our secrets.
func TestExecEnvironment(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "env")
	t.Setenv("HTTP_PROXY", "http://stale.example:1") // replaced, not kept
	t.Setenv("VPN_PASSWORD", "other-secret")         // another name we read secrets from
	if code := runExecCmd(t, nil, "sh", "-c", `env >"$1"`, "sh", envFile); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	env := readEnv(t, envFile)
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"} {
		if env[k] == "" || env[k] != env[strings.ToLower(k)] {
			t.Errorf("%s=%q, %s=%q: want both set, equal", k, env[k], strings.ToLower(k), env[strings.ToLower(k)])
		}
	}
	if env["NO_PROXY"] != "localhost,127.0.0.1,::1" {
		t.Errorf("NO_PROXY=%q", env["NO_PROXY"])
	}
	for k, scheme := range map[string]string{"HTTP_PROXY": "http", "HTTPS_PROXY": "http", "ALL_PROXY": "socks5h"} {
		u, err := url.Parse(env[k])
		if err != nil || u.Scheme != scheme || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Port() == "1080" || u.Port() == "3128" {
			t.Errorf("%s=%q: want %s://127.0.0.1:<free port>", k, env[k], scheme)
		}
	}
	for _, k := range []string{"L2TPPROXY_PSK", "L2TPPROXY_PASSWORD", "VPN_PASSWORD"} {
		if _, ok := env[k]; ok {
			t.Errorf("the command's environment has the secret %s", k)
		}
	}
	if env["PATH"] != os.Getenv("PATH") {
		t.Errorf("environment not passed on: PATH=%q", env["PATH"])
	}
}

// TestExecHelperProcess is the command of TestExecThroughProxies, run by
// exec as a child process: it fetches the URL through HTTP_PROXY and through
// ALL_PROXY, as a Go program in CI would, and exits 0 only if both worked.
func TestExecHelperProcess(t *testing.T) {
	target := os.Getenv("L2TPPROXY_TEST_FETCH")
	if target == "" {
		t.Skip("the child process of TestExecThroughProxies")
	}
	want := os.Getenv("L2TPPROXY_TEST_BODY")
	socks, err := url.Parse(os.Getenv("ALL_PROXY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ALL_PROXY:", err)
		os.Exit(3)
	}
	for name, proxy := range map[string]func(*http.Request) (*url.URL, error){
		"HTTP_PROXY": http.ProxyFromEnvironment,
		"ALL_PROXY":  http.ProxyURL(socks),
	} {
		hc := &http.Client{Transport: &http.Transport{Proxy: proxy}, Timeout: 10 * time.Second}
		resp, err := hc.Get(target)
		if err != nil {
			fmt.Fprintf(os.Stderr, "via %s: %v\n", name, err)
			os.Exit(3)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			fmt.Fprintf(os.Stderr, "via %s: %q, want %q\n", name, b, want)
			os.Exit(3)
		}
	}
	os.Exit(0)
}

// TestExecThroughProxies: the command reaches the far side of the tunnel
// through both proxies, with nothing but the variables exec set: a Go
// program (by address and by name), and curl if it is installed.
func TestExecThroughProxies(t *testing.T) {
	srv := newServer(t, testserver.Config{})
	byName := strings.Replace(srv.URL("/hello.txt"), testserver.ServerIP.String(), testserver.TargetName, 1)
	t.Run("go", func(t *testing.T) {
		for _, u := range []string{srv.URL("/hello.txt"), byName} {
			t.Setenv("L2TPPROXY_TEST_FETCH", u)
			t.Setenv("L2TPPROXY_TEST_BODY", srv.HelloBody())
			if code := runExecCmd(t, nil, os.Args[0], "-test.run=^TestExecHelperProcess$"); code != 0 {
				t.Errorf("%s: the helper exited %d", u, code)
			}
		}
	})
	t.Run("go with proxy credentials", func(t *testing.T) {
		// The proxies require credentials: exec puts them in the URLs.
		t.Setenv("L2TPPROXY_TEST_FETCH", srv.URL("/hello.txt"))
		t.Setenv("L2TPPROXY_TEST_BODY", srv.HelloBody())
		if code := runExecCmd(t, []string{"--proxy-user", "ci", "--proxy-password", "s3cret"}, os.Args[0], "-test.run=^TestExecHelperProcess$"); code != 0 {
			t.Errorf("the helper exited %d", code)
		}
	})
	t.Run("curl", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("curl not installed (the Go helper above covers the same path)")
		}
		dir := t.TempDir()
		// http_proxy for the http:// URL; then without it, all_proxy
		// (socks5h: the name is resolved on the far side).
		script := `curl -fsS "$1" >"$3/http" && env -u http_proxy -u HTTP_PROXY curl -fsS "$2" >"$3/socks"`
		if code := runExecCmd(t, nil, "sh", "-c", script, "sh", srv.URL("/hello.txt"), byName, dir); code != 0 {
			t.Fatalf("curl exited %d", code)
		}
		for _, f := range []string{"http", "socks"} {
			if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != srv.HelloBody() {
				t.Errorf("curl via %s: %q", f, b)
			}
		}
	})
}

// awaitLine reads one line from the named pipe path, which the command
// writes once it runs; it fails the test if exec ends first.
func awaitLine(t *testing.T, path string, codec <-chan int) string {
	t.Helper()
	linec := make(chan string, 1)
	go func() {
		f, err := os.Open(path) // blocks until the command opens it
		if err != nil {
			linec <- err.Error()
			return
		}
		defer f.Close()
		line, _ := bufio.NewReader(f).ReadString('\n')
		linec <- line
	}()
	select {
	case line := <-linec:
		return line
	case code := <-codec:
		t.Fatalf("exec ended (%d) before the command said anything", code)
	case <-time.After(20 * time.Second):
		t.Fatal("the command did not start")
	}
	return ""
}

// mkfifo makes a named pipe the test and the command synchronise on.
func mkfifo(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExecForwardsSIGTERM: a SIGTERM to exec goes to the command, which
// decides how to end; exec tears down and exits with its code.
func TestExecForwardsSIGTERM(t *testing.T) {
	ready := mkfifo(t, "ready")
	codec := make(chan int, 1)
	go func() {
		codec <- runExecCmd(t, nil, "sh", "-c", `trap 'exit 42' TERM; echo up >"$1"; while :; do sleep 0.05; done`, "sh", ready)
	}()
	// Once the command runs, exec's signal handler is in place.
	if line := awaitLine(t, ready, codec); line != "up\n" {
		t.Fatalf("command said %q", line)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-codec:
		if code != 42 {
			t.Errorf("exit code %d, want 42 (the command's trap)", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exec did not end after SIGTERM")
	}
}

// TestExecSurvivesReconnect: the server restarts while the command runs;
// the command is not disturbed, its new connections wait for the reconnect
// and go through the same proxy, and exec still exits with its code.
func TestExecSurvivesReconnect(t *testing.T) {
	srv := newServer(t, testserver.Config{})
	dir := t.TempDir()
	up, finish := mkfifo(t, "up"), mkfifo(t, "finish")
	args := append([]string{"l2tpproxy", "exec"}, serverFlags(t, srv)...)
	args = append(args, "--", "sh", "-c", `env >"$1/env"; echo up >"$2"; read x <"$3"; exit 3`, "sh", dir, up, finish)
	codec := make(chan int, 1)
	go func() { codec <- run(args) }()
	if line := awaitLine(t, up, codec); line != "up\n" {
		t.Fatalf("command said %q", line)
	}
	pu, err := url.Parse(readEnv(t, filepath.Join(dir, "env"))["HTTP_PROXY"])
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr, err := net.ResolveTCPAddr("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}

	srv.Close()
	srv2 := newServer(t, testserver.Config{IKEAddr: srv.IKEAddr(), NATTAddr: srv.NATTAddr()})
	// Made right after the restart, most likely while exec is still
	// reconnecting: it waits (--connect-wait 15 s) and goes through.
	if st, b, _, err := get("http", proxyAddr, srv2.URL("/hello.txt")); err != nil || st != 200 || b != srv2.HelloBody() {
		t.Errorf("through exec's proxy after the restart: %d %q %v", st, b, err)
	}
	w, err := os.OpenFile(finish, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w, "done")
	w.Close()
	select {
	case code := <-codec:
		if code != 3 {
			t.Errorf("exit code %d, want the command's 3", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exec did not end after the command")
	}
}

// TestProxyEnv: URLs for wildcard listeners point at loopback, credentials
// go into the URLs, one proxy alone serves every variable.
func TestProxyEnv(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	get := func(env []string, k string) string {
		for _, kv := range env {
			if n, v, _ := strings.Cut(kv, "="); n == k {
				return v
			}
		}
		return ""
	}
	env := proxyEnv([]string{"PATH=/bin", "SECRET=x", "all_proxy=old"}, tcp("0.0.0.0:1080"), tcp("[::]:3128"), url.UserPassword("u", "p@ss"), []string{"SECRET"})
	for k, want := range map[string]string{
		"PATH": "/bin", "SECRET": "", "ALL_PROXY": "socks5h://u:p%40ss@127.0.0.1:1080", "all_proxy": "socks5h://u:p%40ss@127.0.0.1:1080",
		"HTTP_PROXY": "http://u:p%40ss@[::1]:3128", "https_proxy": "http://u:p%40ss@[::1]:3128",
	} {
		if got := get(env, k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	env = proxyEnv(nil, tcp("127.0.0.1:1080"), nil, nil, nil)
	if get(env, "http_proxy") != "socks5h://127.0.0.1:1080" || get(env, "ALL_PROXY") != "socks5h://127.0.0.1:1080" {
		t.Errorf("SOCKS5 alone: %q", env)
	}
}
