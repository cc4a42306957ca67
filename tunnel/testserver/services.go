package testserver

// What the far side of the tunnel serves: HTTP, DNS and UDP echo on the
// server's own stack.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// startServices runs HTTP, DNS and UDP echo on the far-side stack.
func (s *Server) startServices(ctx context.Context) error {
	if err := s.serveHTTP(ctx, netip.AddrPortFrom(ServerIP, HTTPPort)); err != nil {
		return err
	}

	dns, err := s.stack.ListenUDP(netip.AddrPortFrom(ServerIP, DNSPort))
	if err != nil {
		return err
	}
	s.servePackets(ctx, dns, 1500, answerDNS)
	echo, err := s.stack.ListenUDP(netip.AddrPortFrom(ServerIP, UDPEchoPort))
	if err != nil {
		return err
	}
	s.servePackets(ctx, echo, 65535, func(q []byte) []byte { return q })
	return nil
}

// serveHTTP serves httpHandler on a of the far-side stack until ctx ends.
func (s *Server) serveHTTP(ctx context.Context, a netip.AddrPort) error {
	ln, err := s.stack.ListenTCP(a)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	s.goRun(func() { srv.Serve(ln) })
	s.goRun(func() {
		<-ctx.Done()
		srv.Close()
	})
	return nil
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello.txt", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, helloBody)
	})
	mux.HandleFunc("/big.bin", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(s.cfg.BigSize, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, io.LimitReader(&pattern{}, s.cfg.BigSize))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x\n", n, h.Sum(nil))
	})
	return mux
}

// pattern is an endless deterministic byte stream (offset mod 251), so the
// size and hash of /big.bin need no stored file.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// servePackets answers each datagram on pc with answer's reply (nil: none)
// until ctx ends; both goroutines are the server's.
func (s *Server) servePackets(ctx context.Context, pc net.PacketConn, size int, answer func(query []byte) []byte) {
	s.goRun(func() { <-ctx.Done(); pc.Close() })
	s.goRun(func() {
		buf := make([]byte, size)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := answer(buf[:n]); reply != nil {
				pc.WriteTo(reply, from)
			}
		}
	})
}

// answerDNS answers A queries for TargetName with ServerIP, AAAA queries for
// TargetName and Target6Name with ServerIP6, NXDOMAIN else; nil for what is
// not a query it can parse.
func answerDNS(query []byte) []byte {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	rh := dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true, RecursionDesired: hdr.RecursionDesired}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	name := q.Name.String()
	match := name == TargetName+"." || name == TargetName
	only6 := name == Target6Name+"."
	match = match || only6
	if !match {
		rh.RCode = dnsmessage.RCodeNameError
		b = dnsmessage.NewBuilder(nil, rh)
	}
	b.StartQuestions()
	b.Question(q)
	if match && q.Type == dnsmessage.TypeAAAA {
		b.StartAnswers()
		b.AAAAResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
			dnsmessage.AAAAResource{AAAA: ServerIP6.As16()})
	}
	if match && !only6 && q.Type == dnsmessage.TypeA {
		b.StartAnswers()
		b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
			dnsmessage.AResource{A: ServerIP.As4()})
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// DialContext dials from the far side of the tunnel (the server's stack, as
// a host on the VPN would): for tests of what a client offers on its VPN
// address.
func (s *Server) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return s.stack.DialContext(ctx, network, address)
}
