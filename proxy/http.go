package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"
)

// HTTP is a forward HTTP proxy: CONNECT tunnels (RFC 9110 §9.3.6) and
// absolute-URI requests (RFC 9112 §3.2.2), forwarded by
// httputil.ReverseProxy: streaming bodies in both directions, keep-alive on
// both sides, hop-by-hop headers (RFC 9110 §7.6.1) removed, trailers and
// Upgrade (WebSocket over plain http://) passed through. Outbound
// connections use the Dialer, which resolves host names itself (through
// the tunnel, or as a Router decides).
//
// With Options.Credentials every request needs Proxy-Authorization: Basic
// (RFC 7617), else 407 with Proxy-Authenticate. With Options.PAC, a GET of
// /proxy.pac addressed to the proxy itself returns the PAC file for those
// routes (without credentials: browsers fetch it before they know any).
type HTTP struct {
	d         Dialer
	opts      Options
	logger    *slog.Logger
	transport *http.Transport
	rp        *httputil.ReverseProxy
}

// NewHTTP returns an HTTP proxy dialing with d. opts may be nil.
func NewHTTP(d Dialer, opts *Options) *HTTP {
	h := &HTTP{d: d}
	if opts != nil {
		h.opts = *opts
	}
	h.logger = h.opts.logger()
	h.transport = &http.Transport{
		Proxy: nil, // never chain to the host's $HTTP_PROXY
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				h.opts.Stats.refuseDial(err)
			}
			return c, err
		},
		ForceAttemptHTTP2:   false, // HTTP/1.1 upstream keeps the proxy transparent
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 15 * time.Second,
		// Pass Content-Encoding through untouched instead of letting the
		// transport add gzip and transparently decompress.
		DisableCompression: true,
		// 4 KiB (Go's default), not copyBufSize: each upstream
		// connection keeps both for its lifetime, held requests included
		// (BenchmarkIdleTunnelMemoryNetstack/http-get: 118 -> 58 KB per
		// held GET), and bulk bodies bypass a bufio buffer anyway (a read
		// or write larger than the buffer goes straight through).
		WriteBufferSize: 4 << 10,
		ReadBufferSize:  4 << 10,
	}
	h.rp = &httputil.ReverseProxy{
		// The request is already absolute (forward proxy): keep its URL,
		// Host and end-to-end headers as the client sent them (Rewrite
		// starts from a copy without the query parameters net/url cannot
		// parse and without Forwarded/X-Forwarded-*); add none of ours.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			for _, k := range forwardingHeaders {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
		},
		Transport:     h.transport,
		FlushInterval: -1, // flush every write: SSE, long polling
		BufferPool:    bufferPool{},
		ErrorLog:      slog.NewLogLogger(h.logger.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			h.logger.Debug("http proxy: upstream request failed", "url", r.URL.Redacted(), "err", err)
			if errors.Is(err, ErrRefusedByRoutes) {
				httpError(w, http.StatusForbidden, fmt.Sprintf("proxy: %s is outside the VPN's routes and domains, and others are refused", r.URL.Hostname()))
				return
			}
			httpError(w, http.StatusBadGateway, fmt.Sprintf("proxy: cannot reach %s: %v", r.URL.Host, err))
		},
	}
	return h
}

var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

type bufferPool struct{}

func (bufferPool) Get() []byte  { return *copyBufPool.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBufPool.Put(&b) }

const httpRefusalBody = "proxy: too many client connections, try again later\n"

var httpRefusal = fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
	"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(httpRefusalBody), httpRefusalBody)

type ctxKey int

const sniffConnKey ctxKey = 0

// Serve serves proxy clients on ln until ctx is cancelled (then it returns
// nil). Accept errors (EMFILE, ...) are retried with back-off, never
// returned. It closes ln and all client connections (including CONNECT
// tunnels) before returning.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener) error {
	var tunnels connTracker
	self := ln.Addr()
	gl := newGuardedListener(ln, h.opts.Limiter, h.opts.Stats, []byte(httpRefusal), h.logger)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.serveHTTP(ctx, w, r, self, &tunnels)
		}),
		ReadHeaderTimeout: h.opts.handshakeTimeout(),
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, sniffConnKey, c)
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(sniffListener{gl}) }()
	var err error
	select {
	case <-ctx.Done():
		srv.Close() // closes ln and every non-hijacked connection
		err = <-errc
	case err = <-errc:
		srv.Close()
	}
	tunnels.closeAll()
	h.transport.CloseIdleConnections()
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("http proxy: %w", err)
}

func (h *HTTP) serveHTTP(ctx context.Context, w http.ResponseWriter, r *http.Request, self net.Addr, tunnels *connTracker) {
	sc, _ := r.Context().Value(sniffConnKey).(*sniffConn)
	if sc != nil && sc.both.Swap(false) {
		// Both Content-Length and Transfer-Encoding: net/http framed the
		// body by Transfer-Encoding (and forwards no Content-Length);
		// close after responding, against request smuggling
		// (RFC 9112 §6.1, §6.3 item 3).
		w.Header().Set("Connection", "close")
	}
	if r.Method != http.MethodConnect && h.addressedToSelf(r, self) {
		h.serveSelf(w, r, self)
		return
	}
	if !h.authorized(r) {
		h.opts.Stats.refuse(RefusedAuth)
		w.Header().Set("Proxy-Authenticate", `Basic realm="l2tpproxy", charset="UTF-8"`)
		httpError(w, http.StatusProxyAuthRequired, "proxy: authentication required (user name and password of this proxy)")
		return
	}
	if r.Method == http.MethodConnect {
		h.serveConnect(ctx, w, r, tunnels, sc)
		return
	}
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" {
		httpError(w, http.StatusBadRequest, "unsupported URI scheme "+r.URL.Scheme)
		return
	}
	// Full duplex: keep reading the request body while the response
	// streams (HTTP/1 servers otherwise stop reading once the handler
	// starts writing).
	_ = http.NewResponseController(w).EnableFullDuplex()
	h.rp.ServeHTTP(w, r)
}

// authorized checks Proxy-Authorization: Basic (RFC 7617) in constant time.
func (h *HTTP) authorized(r *http.Request) bool {
	c := h.opts.Credentials
	return c == nil || c.ValidBasic(r.Header.Get("Proxy-Authorization"))
}

// addressedToSelf: an origin-form request (RFC 9112 §3.2.1), or an
// absolute one naming the proxy's own address.
func (h *HTTP) addressedToSelf(r *http.Request, self net.Addr) bool {
	if !r.URL.IsAbs() || r.URL.Host == "" {
		return true
	}
	if r.URL.Host == self.String() {
		return true
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && r.URL.Host == la.String() {
		return true
	}
	return false
}

// serveSelf answers requests for the proxy itself: the PAC file, or an
// explanation.
func (h *HTTP) serveSelf(w http.ResponseWriter, r *http.Request, self net.Addr) {
	if h.opts.PAC == nil || r.URL.Path != "/proxy.pac" {
		httpError(w, http.StatusBadRequest, "this is a proxy: request an absolute URI (http://host/path) or use CONNECT")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, "proxy: GET /proxy.pac")
		return
	}
	pac := h.opts.PAC.PAC(pacProxyAddr(r, self))
	h.logger.Debug("http proxy: serving /proxy.pac", "client", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", fmt.Sprint(len(pac)))
	if r.Method == http.MethodGet {
		io.WriteString(w, pac)
	}
}

// pacProxyAddr is the proxy address the PAC file names: the listener's,
// or for a wildcard listener the host the client reached us by.
func pacProxyAddr(r *http.Request, self net.Addr) string {
	ta, ok := self.(*net.TCPAddr)
	if !ok {
		return self.String()
	}
	if !ta.IP.IsUnspecified() {
		return ta.String()
	}
	host := r.Host
	if r.URL.IsAbs() {
		host = r.URL.Host
	}
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(ta.Port))
}

func (h *HTTP) serveConnect(ctx context.Context, w http.ResponseWriter, r *http.Request, tunnels *connTracker, sc *sniffConn) {
	target := r.Host
	if _, port, err := net.SplitHostPort(target); err != nil || port == "" {
		httpError(w, http.StatusBadRequest, "CONNECT target must be host:port")
		return
	}
	// Not r.Context(): net/http cancels it when the client half-closes,
	// which a CONNECT client may legitimately do right after its request.
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	up, err := h.d.DialContext(dctx, "tcp", target)
	cancel()
	if err != nil {
		h.logger.Debug("http proxy: CONNECT dial failed", "target", target, "err", err)
		h.opts.Stats.refuseDial(err)
		if errors.Is(err, ErrRefusedByRoutes) {
			httpError(w, http.StatusForbidden, fmt.Sprintf("proxy: %s is outside the VPN's routes and domains, and others are refused", target))
			return
		}
		httpError(w, http.StatusBadGateway, fmt.Sprintf("proxy: cannot connect to %s: %v", target, err))
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		httpError(w, http.StatusInternalServerError, "proxy: cannot hijack connection")
		return
	}
	if sc != nil {
		sc.off.Store(true) // tunnel bytes are not HTTP
	}
	if !tunnels.add(client) {
		up.Close()
		return
	}
	defer tunnels.remove(client)
	client.SetDeadline(time.Time{}) // clear the server's read/header deadlines
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		up.Close()
		return
	}
	// Bytes the client pipelined after the CONNECT request (e.g. a TLS
	// ClientHello) may already sit in the server's read buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		buffered, _ := brw.Reader.Peek(n)
		if _, err := up.Write(buffered); err != nil {
			client.Close()
			up.Close()
			return
		}
	}
	relay(client, up)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
