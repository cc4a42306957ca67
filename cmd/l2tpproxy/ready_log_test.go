package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// readinessAtLog is a slog handler that, at each "proxy listening" line,
// asks the monitor whether it is ready, as a supervisor that waits for
// that line and then probes /readyz does.
type readinessAtLog struct {
	slog.Handler
	m    *monitor
	seen *seenLines // shared with the handler's WithAttrs/WithGroup copies
}

type seenLines struct {
	mu  sync.Mutex
	got []string // "msg: ready" or "msg: not ready (why)"
}

func (h *readinessAtLog) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasSuffix(r.Message, "proxy listening") {
		ok, why := h.m.ready()
		h.seen.mu.Lock()
		if ok {
			h.seen.got = append(h.seen.got, r.Message+": ready")
		} else {
			h.seen.got = append(h.seen.got, r.Message+": not ready ("+why+")")
		}
		h.seen.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *readinessAtLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &readinessAtLog{Handler: h.Handler.WithAttrs(as), m: h.m, seen: h.seen}
}

func (h *readinessAtLog) WithGroup(name string) slog.Handler {
	return &readinessAtLog{Handler: h.Handler.WithGroup(name), m: h.m, seen: h.seen}
}

// TestReadyBeforeListeningLogged: by the time "SOCKS5/HTTP proxy listening"
// is logged, /readyz answers 200 (interop against SoftEther saw a 503
// "proxies not listening yet" right after the HTTP line: the monitor was
// told after the log lines).
func TestReadyBeforeListeningLogged(t *testing.T) {
	srv := newServer(t, testserver.Config{})
	m := newMonitor()
	h := &readinessAtLog{Handler: slog.NewTextHandler(io.Discard, nil), m: m, seen: &seenLines{}}
	log := slog.New(h)
	r := startServeMonitored(t, srv, m, proxySettings{Routes: &proxy.Routes{}}, func(sc *serveConfig) { sc.Log = log })
	defer r.cancel()
	h.seen.mu.Lock()
	defer h.seen.mu.Unlock()
	if len(h.seen.got) != 2 {
		t.Fatalf("saw %d proxy-listening lines, want 2: %q", len(h.seen.got), h.seen.got)
	}
	for _, g := range h.seen.got {
		if !strings.HasSuffix(g, ": ready") {
			t.Errorf("%s", g)
		}
	}
}
