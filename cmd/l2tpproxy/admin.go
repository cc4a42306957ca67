package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/proxy"
)

// serviceFlags are the flags for running as a service: the admin endpoint,
// the capture and the log format. up and exec take them.
func serviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "admin", Usage: "serve /healthz, /readyz and /metrics (Prometheus) on `ADDR` (loopback unless proxy credentials are set; off by default)", EnvVars: env("L2TPPROXY_ADMIN")},
		&cli.StringFlag{Name: "pcap", Usage: "write the inner IP packets (what goes through the VPN, decrypted) to `FILE` as pcap", EnvVars: env("L2TPPROXY_PCAP")},
		&cli.StringFlag{Name: "pcap-max-size", Value: "100MiB", Usage: "stop writing --pcap at this `SIZE` (bytes, or with KiB, MiB, GiB)", EnvVars: env("L2TPPROXY_PCAP_MAX_SIZE")},
		&cli.BoolFlag{Name: "parallel-decrypt", Usage: "decrypt big received bursts of AES-CBC+HMAC on two cores, delivered in order (off: on a loaded 2-core VM it gave no consistent gain)", EnvVars: env("L2TPPROXY_PARALLEL_DECRYPT")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log as text or json (one JSON object a line)", EnvVars: env("L2TPPROXY_LOG_FORMAT")},
	}
}

// adminServer is the admin endpoint: health, readiness and metrics.
type adminServer struct {
	ln  net.Listener
	srv *http.Server
}

// listenAdmin listens on addr for the admin endpoint. Like the proxies, it
// stays on loopback unless proxy credentials are set; then every request
// must carry them (Authorization: Basic).
func listenAdmin(addr string, creds *proxy.Credentials, m *monitor, log *slog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, configError("cannot listen for the admin endpoint on %s: %v", addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !(ok && ta.IP.IsLoopback()) && creds == nil {
		ln.Close()
		return nil, configError("--admin %s is not a loopback address: proxy credentials are needed (--proxy-user and --proxy-password or --proxy-password-file), which the admin endpoint then requires too", addr)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// Every tunnel, or the one ?tunnel=NAME names.
		ok, why := m.ready()
		code := http.StatusServiceUnavailable
		if name, one := r.URL.Query()["tunnel"]; one {
			var known bool
			if ok, why, known = m.readyTunnel(name[0]); !known {
				code = http.StatusNotFound
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(code)
		}
		io.WriteString(w, why+"\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	var h http.Handler = mux
	if creds != nil {
		h = requireBasic(creds, mux)
	}
	a := &adminServer{ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: proxy.DefaultHandshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("admin endpoint stopped", "err", err.Error())
		}
	}()
	log.Info("admin endpoint listening", "addr", ln.Addr().String(), "paths", "/healthz /readyz /metrics")
	return a, nil
}

// Addr is where the endpoint listens.
func (a *adminServer) Addr() net.Addr { return a.ln.Addr() }

// Close stops the endpoint.
func (a *adminServer) Close() error {
	if a == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}

// requireBasic admits requests with the credentials in Authorization:
// Basic (RFC 7617), compared in constant time by Credentials.Valid.
func requireBasic(creds *proxy.Credentials, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !creds.ValidBasic(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Basic realm="l2tpproxy admin", charset="UTF-8"`)
			http.Error(w, "authentication required (the proxies' user name and password)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// service is what the service flags set up for one run of up or exec: the
// monitor serve reports to, the admin endpoint and the capture.
type service struct {
	monitor *monitor
	admin   *adminServer
	pcap    *pcapFile
}

// startService starts what the service flags ask for, the monitor
// following the named tunnels (tunnelNames). Its errors are configuration
// errors (exit 2).
func startService(cx *cli.Context, ps proxySettings, tunnels []string, log *slog.Logger) (*service, error) {
	s := &service{monitor: newMonitor(tunnels...)}
	if addr := cx.String("admin"); addr != "" {
		a, err := listenAdmin(addr, ps.Credentials, s.monitor, log)
		if err != nil {
			return nil, err
		}
		s.admin = a
	}
	if path := cx.String("pcap"); path != "" {
		max, err := parseSize(cx.String("pcap-max-size"))
		if err != nil {
			s.Close()
			return nil, configError("--pcap-max-size: %v", err)
		}
		if s.pcap, err = createPcap(path, max, log); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// capture is the tunnel's Capture function (nil without --pcap).
func (s *service) capture() func() io.Writer {
	if s.pcap == nil {
		return nil
	}
	return s.pcap.stream
}

// Close stops the admin endpoint and closes the capture.
func (s *service) Close() {
	s.admin.Close()
	if s.pcap != nil {
		s.pcap.Close()
	}
}

// parseSize parses a byte count: digits, optionally followed by KiB, MiB or
// GiB (or K, M, G, the same binary units).
func parseSize(v string) (int64, error) {
	num, mult := strings.TrimSpace(v), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"k", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a positive size (bytes, or KiB, MiB, GiB)", v)
	}
	return n * mult, nil
}
