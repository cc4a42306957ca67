package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// HTTP is a forward HTTP proxy: CONNECT tunnels (RFC 9110 §9.3.6) and
// absolute-URI requests (RFC 9112 §3.2.2) with streaming bodies in both
// directions and keep-alive on both sides. Hop-by-hop headers (RFC 9110
// §7.6.1) are removed. Outbound connections use the Dialer, which resolves
// host names itself (through the tunnel). Upgrade requests (WebSocket over
// plain http://) are not supported; clients use CONNECT for those in
// practice.
type HTTP struct {
	d         Dialer
	logger    *slog.Logger
	transport *http.Transport
}

// NewHTTP returns an HTTP proxy dialing with d. A nil logger discards logs.
func NewHTTP(d Dialer, logger *slog.Logger) *HTTP {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &HTTP{d: d, logger: logger}
	h.transport = &http.Transport{
		Proxy: nil, // never chain to the host's $HTTP_PROXY
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:   false, // HTTP/1.1 upstream keeps the proxy transparent
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 15 * time.Second,
		// Pass Content-Encoding through untouched instead of letting the
		// transport add gzip and transparently decompress.
		DisableCompression: true,
		WriteBufferSize:    copyBufSize,
		ReadBufferSize:     copyBufSize,
	}
	return h
}

// Serve serves proxy clients on ln until ctx is cancelled (then it returns
// nil) or ln fails. It closes ln and all client connections (including
// CONNECT tunnels) before returning.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener) error {
	var tunnels connTracker
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serveHTTP(ctx, w, r, &tunnels) }),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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
	if err == nil || errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("http proxy: %w", err)
}

func (h *HTTP) serveHTTP(ctx context.Context, w http.ResponseWriter, r *http.Request, tunnels *connTracker) {
	if r.Method == http.MethodConnect {
		h.serveConnect(ctx, w, r, tunnels)
		return
	}
	if !r.URL.IsAbs() || r.URL.Host == "" {
		httpError(w, http.StatusBadRequest, "this is a proxy: request an absolute URI (http://host/path) or use CONNECT")
		return
	}
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" {
		httpError(w, http.StatusBadRequest, "unsupported URI scheme "+r.URL.Scheme)
		return
	}
	h.forward(w, r)
}

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 plus the
// de-facto Proxy-Connection and Keep-Alive.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(hdr http.Header) {
	for _, v := range hdr["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				hdr.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		hdr.Del(k)
	}
}

func (h *HTTP) forward(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Close = false
	removeHopHeaders(out.Header)
	if r.ContentLength == 0 {
		out.Body = nil // no body: lets the transport retry idempotent requests
	}
	// "TE: trailers" is the one TE value worth forwarding (RFC 9110 §10.1.4).
	if hasToken(r.Header, "Te", "trailers") {
		out.Header.Set("Te", "trailers")
	}
	// Full duplex: keep reading the request body while the response
	// streams (HTTP/1 servers otherwise stop reading once the handler
	// starts writing).
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()

	resp, err := h.transport.RoundTrip(out)
	if err != nil {
		h.logger.Debug("http proxy: upstream request failed", "url", r.URL.Redacted(), "err", err)
		httpError(w, http.StatusBadGateway, fmt.Sprintf("proxy: cannot reach %s: %v", r.URL.Host, err))
		return
	}
	defer resp.Body.Close()

	removeHopHeaders(resp.Header)
	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = append(dst[k][:0:0], vv...)
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst.Set("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	_ = rc.Flush()
	if _, err := copyBuffer(flushWriter{w, rc}, resp.Body); err != nil {
		// Headers are gone already. Take the connection over and close
		// it without the final chunk, so the client sees a truncated
		// response instead of a complete-looking short one.
		h.logger.Debug("http proxy: response body copy failed", "url", r.URL.Redacted(), "err", err)
		if conn, _, herr := rc.Hijack(); herr == nil {
			conn.Close()
		}
		return
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
}

func hasToken(hdr http.Header, key, token string) bool {
	for _, v := range hdr.Values(key) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// flushWriter flushes after every write so streamed responses (SSE, long
// polling, chunked downloads) reach the client without delay.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

func (h *HTTP) serveConnect(ctx context.Context, w http.ResponseWriter, r *http.Request, tunnels *connTracker) {
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
		httpError(w, http.StatusBadGateway, fmt.Sprintf("proxy: cannot connect to %s: %v", target, err))
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		httpError(w, http.StatusInternalServerError, "proxy: cannot hijack connection")
		return
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
