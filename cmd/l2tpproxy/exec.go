package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// execCommand is `l2tpproxy exec [up flags] -- CMD ARGS...`: one CI step
// through the VPN. It connects, serves the proxies (on free loopback ports
// unless given), runs CMD with the proxy variables set, tears down after CMD
// exits and exits with CMD's code.
func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "connect, run a command with HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY set to the proxies, disconnect; exit with its code",
		ArgsUsage: "-- CMD [ARGS...]",
		Description: "The proxies listen on free loopback ports unless --socks5 or --http is given. CMD's stdin, stdout and\n" +
			"stderr are ours; SIGINT and SIGTERM are passed on to it. exec exits with CMD's exit code (128+N if a signal\n" +
			"N ended it). If the tunnel cannot come up, CMD does not run and exec exits with the tunnel's code (2-6).\n" +
			"The secrets l2tpproxy reads from the environment are removed from CMD's environment.",
		Flags:  append(append(append(connectionFlags(), listenerFlags()...), waitFlags()...), serviceFlags()...),
		Action: runExec,
	}
}

// commandExit is exec's result when CMD ran: its exit code, which run
// returns as is (CMD has said what it had to say).
type commandExit struct{ code int }

func (e *commandExit) Error() string { return fmt.Sprintf("command exited with code %d", e.code) }

func commandExitCode(err error) (int, bool) {
	var ce *commandExit
	if errors.As(err, &ce) {
		return ce.code, true
	}
	return 0, false
}

// Conventional shell codes for a command that could not be started.
const (
	exitCannotRun = 126 // found but not executable
	exitNotFound  = 127
)

func runExec(cx *cli.Context) error {
	argv := cx.Args().Slice()
	if len(argv) == 0 {
		return configError("exec needs a command: l2tpproxy exec [flags] -- CMD [ARGS...]")
	}
	log, err := serviceLogger(cx)
	if err != nil {
		return err
	}
	wait, err := connectWait(cx)
	if err != nil {
		return err
	}
	cfg, err := tunnelConfig(cx, log)
	if err != nil {
		return err
	}
	cfg.ParallelDecrypt = cx.Bool("parallel-decrypt")
	socksAddr, httpAddr := cx.String("socks5"), cx.String("http")
	if !cx.IsSet("socks5") {
		socksAddr = "127.0.0.1:0"
	}
	if !cx.IsSet("http") {
		httpAddr = "127.0.0.1:0"
	}
	if socksAddr == "" && httpAddr == "" {
		return configError("exec needs at least one proxy: --socks5 and --http are both empty")
	}
	user, err := proxyUserinfo(cx)
	if err != nil {
		return err
	}
	ps, err := proxySettingsFrom(cx)
	if err != nil {
		return err
	}
	svc, err := startService(cx, ps, nil, log)
	if err != nil {
		return err
	}
	defer svc.Close()
	cfg.Capture = svc.capture()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "l2tpproxy: exec: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return &commandExit{exitNotFound}
		}
		return &commandExit{exitCannotRun}
	}

	// Signals are ours from here on: before CMD runs they stop the connect,
	// while it runs they are passed on to it.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)

	ctx, cancel := context.WithCancel(cx.Context)
	defer cancel()
	type addrs struct{ socks, http net.Addr }
	ready := make(chan addrs, 1)
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, serveConfig{Tunnel: cfg, SOCKS5: socksAddr, HTTP: httpAddr, Log: log, Proxy: ps, ConnectWait: wait, Monitor: svc.monitor,
			Ready: func(s, h net.Addr) { ready <- addrs{s, h} }})
	}()

	var a addrs
	select {
	case a = <-ready:
	case err := <-served:
		if err == nil { // serve gives up quietly only when ctx ended
			err = errors.New("tunnel closed")
		}
		return err
	case sig := <-sigc:
		log.Info("interrupted while connecting: the command does not run", "signal", sig.String())
		cancel()
		<-served
		return &commandExit{128 + int(sig.(syscall.Signal))}
	}

	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = proxyEnv(os.Environ(), a.socks, a.http, user, secretEnvNames(cx))
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "l2tpproxy: exec: %v\n", err)
		cancel()
		<-served
		return &commandExit{exitCannotRun}
	}
	// Only the program's name: its arguments may carry secrets of their own.
	log.Info("running the command", "cmd", argv[0], "pid", cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	for done := false; !done; {
		select {
		case sig := <-sigc:
			log.Info("passing the signal on to the command", "signal", sig.String())
			_ = cmd.Process.Signal(sig)
		case err := <-served:
			// The tunnel is gone for good (reconnecting cannot help): say so
			// at once, and leave CMD to finish (its connections fail).
			served = nil
			fmt.Fprintln(os.Stderr, "l2tpproxy:", oneLine(fmt.Errorf("exec: the command keeps running without the VPN: %w", err)))
		case <-exited:
			done = true
		}
	}
	code := exitStatus(cmd.ProcessState)
	log.Info("the command exited: tearing down", "code", code)
	cancel()
	if served != nil {
		if err := <-served; err != nil {
			log.Warn("teardown", "err", err.Error())
		}
	}
	if code == 0 {
		return nil
	}
	return &commandExit{code}
}

// exitStatus is a finished process's exit code as a shell reports it: 128+N
// if signal N ended it.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// proxyVars are the variables exec sets (both spellings: curl reads only
// the lowercase http_proxy, other tools only the uppercase forms).
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}

// proxyEnv is CMD's environment: base without the secrets (names in strip)
// and without any proxy variables of its own, plus ours.
func proxyEnv(base []string, socks, http net.Addr, user *url.Userinfo, strip []string) []string {
	drop := map[string]bool{}
	for _, n := range strip {
		drop[n] = true
	}
	for _, n := range proxyVars {
		drop[n], drop[strings.ToLower(n)] = true, true
	}
	var env []string
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	socksURL, httpURL := proxyURL("socks5h", socks, user), proxyURL("http", http, user)
	if httpURL == "" {
		httpURL = socksURL // both curl and Go accept a SOCKS proxy in HTTP_PROXY
	}
	if socksURL == "" {
		socksURL = httpURL
	}
	set := func(k, v string) { env = append(env, k+"="+v, strings.ToLower(k)+"="+v) }
	set("HTTP_PROXY", httpURL)
	set("HTTPS_PROXY", httpURL)
	set("ALL_PROXY", socksURL)
	set("NO_PROXY", "localhost,127.0.0.1,::1")
	return env
}

// proxyURL is scheme://[user@]host:port for a listener's address, with a
// wildcard address replaced by loopback (where CMD reaches it); "" for none.
func proxyURL(scheme string, a net.Addr, user *url.Userinfo) string {
	if a == nil {
		return ""
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return ""
	}
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = netip.MustParseAddr("127.0.0.1")
		if ap.Addr().Is6() && !ap.Addr().Is4In6() {
			ip = netip.IPv6Loopback()
		}
	}
	u := url.URL{Scheme: scheme, Host: netip.AddrPortFrom(ip, ap.Port()).String(), User: user}
	return u.String()
}

// proxyUserinfo is the proxies' credentials for CMD's proxy URLs, if the
// proxies require some (--proxy-user, --proxy-password[-file]).
func proxyUserinfo(cx *cli.Context) (*url.Userinfo, error) {
	name := cx.String("proxy-user")
	if name == "" {
		return nil, nil
	}
	pw, err := secret(cx, "proxy-password", "proxy-password-file")
	if err != nil {
		return nil, err
	}
	return url.UserPassword(name, string(pw)), nil
}

// secretFlags are the flags whose values are secrets; exec removes their
// environment variables from CMD's environment.
var secretFlags = map[string]bool{"psk": true, "password": true, "proxy-password": true, "p12-password": true}

func secretEnvNames(cx *cli.Context) []string {
	var names []string
	for _, f := range cx.Command.Flags {
		if !secretFlags[f.Names()[0]] {
			continue
		}
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			names = append(names, ev.GetEnvVars()...)
		}
	}
	return names
}
