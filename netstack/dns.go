package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Resolver limits, modelled on resolv.conf(5) defaults (timeout:5,
// attempts:2) but with a shorter per-try timeout: a lost query inside the
// tunnel is better retried quickly than waited for.
const (
	dnsPort         = 53
	dnsTryTimeout   = 3 * time.Second
	dnsAttempts     = 2 // rounds over all servers
	dnsMaxMsg       = 4096
	dnsMaxCNAMEHops = 8
	dnsCacheMax     = 512
	dnsCacheMaxTTL  = 10 * time.Minute
)

// errDNSTruncated marks a UDP answer with the TC bit: retry over TCP
// (RFC 1035 §4.2.1, RFC 7766 §5).
var errDNSTruncated = errors.New("truncated DNS response")

type dnsEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

type dnsCache struct {
	mu sync.Mutex
	m  map[string]dnsEntry
}

func (c *dnsCache) get(name string, now time.Time) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[name]
	if !ok {
		return nil
	}
	if !now.Before(e.expires) {
		delete(c.m, name)
		return nil
	}
	return append([]netip.Addr(nil), e.addrs...)
}

func (c *dnsCache) put(name string, addrs []netip.Addr, ttl time.Duration, now time.Time) {
	if ttl <= 0 {
		return
	}
	ttl = min(ttl, dnsCacheMaxTTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]dnsEntry)
	}
	if len(c.m) >= dnsCacheMax {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < dnsCacheMax {
				break
			}
			delete(c.m, k) // arbitrary victim; the cache is only an optimisation
		}
	}
	c.m[name] = dnsEntry{addrs: append([]netip.Addr(nil), addrs...), expires: now.Add(ttl)}
}

// LookupHost resolves host to IPv4 addresses, and once IPv6 is up with a
// global address also to IPv6 ones (IPv4 first). IP literals are returned
// as is. Names are resolved with an A (then AAAA) query sent over UDP *through the stack*
// to the IPCP-provided DNS servers (never the host's resolver), trying each
// server in turn for dnsAttempts rounds, with a per-try timeout; truncated
// answers are retried over TCP. Answers are cached for their TTL (at most
// dnsCacheMaxTTL).
func (s *Stack) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == "" {
		return nil, fmt.Errorf("%w: empty host name", ErrBadAddress)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if len(s.cfg.DNS) == 0 {
		return nil, fmt.Errorf("%w: cannot resolve %q", ErrNoDNS, host)
	}
	if s.closed() {
		return nil, ErrClosed
	}
	fqdn := strings.ToLower(host)
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	name, err := dnsmessage.NewName(fqdn)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadAddress, host, err)
	}
	addrs, err := s.lookupType(ctx, host, fqdn, name, dnsmessage.TypeA)
	if !s.hasGlobalIPv6() {
		return addrs, err
	}
	// IPv6 is up: AAAA too (after A, so IPv4-only names cost one query
	// more only when IPv6 could reach the answer).
	addrs6, err6 := s.lookupType(ctx, host, fqdn, name, dnsmessage.TypeAAAA)
	if err != nil && err6 == nil {
		return addrs6, nil
	}
	if err != nil {
		return nil, err
	}
	return append(addrs, addrs6...), nil
}

// lookupType asks the DNS servers for one record type (A or AAAA).
func (s *Stack) lookupType(ctx context.Context, host, fqdn string, name dnsmessage.Name, qtype dnsmessage.Type) ([]netip.Addr, error) {
	key := fqdn
	if qtype == dnsmessage.TypeAAAA {
		key = "AAAA " + fqdn
	}
	if addrs := s.dns.get(key, time.Now()); addrs != nil {
		return addrs, nil
	}

	var lastErr error
	for attempt := 0; attempt < dnsAttempts; attempt++ {
		for _, server := range s.cfg.DNS {
			addrs, ttl, err := s.exchange(ctx, netip.AddrPortFrom(server, dnsPort), name, qtype)
			if errors.Is(err, errDNSTruncated) {
				addrs, ttl, err = s.exchangeTCP(ctx, netip.AddrPortFrom(server, dnsPort), name, qtype)
			}
			switch {
			case err == nil:
				s.dns.put(key, addrs, ttl, time.Now())
				return addrs, nil
			case errors.Is(err, ErrDNSNotFound):
				return nil, fmt.Errorf("%w: %s", err, host)
			case ctxDone(ctx) != nil:
				return nil, fmt.Errorf("%w: %s: %w", ErrDNSFailed, host, ctxDone(ctx))
			case errors.Is(err, ErrClosed):
				return nil, err
			}
			s.logger.Debug("netstack: DNS try failed", "server", server, "host", host, "type", qtype, "err", err)
			lastErr = err
		}
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrDNSFailed, host, lastErr)
}

// ctxDone is ctx.Err(), but also reports DeadlineExceeded once the deadline
// has passed even if ctx's own timer has not fired yet: the socket deadline
// (set to the same instant) can expire first, and without this the
// remaining tries would each fail instantly and the caller would see an
// I/O timeout instead of its context error.
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// buildQuery returns a recursive qtype/IN query for name with a random ID.
func buildQuery(name dnsmessage.Name, qtype dnsmessage.Type) (uint16, []byte, error) {
	id := uint16(rand.Uint32())
	b := dnsmessage.NewBuilder(make([]byte, 2, 2+len(name.Data)+32), dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return 0, nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		return 0, nil, err
	}
	msg, err := b.Finish()
	if err != nil {
		return 0, nil, err
	}
	// msg[:2] is room for the TCP length prefix (RFC 1035 §4.2.2).
	binary.BigEndian.PutUint16(msg[:2], uint16(len(msg)-2))
	return id, msg, nil
}

// tryDeadline is the earlier of now+dnsTryTimeout and ctx's deadline.
func tryDeadline(ctx context.Context) time.Time {
	d := time.Now().Add(dnsTryTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return d
}

// exchange sends one UDP query from a fresh socket (fresh random source
// port, RFC 5452 §9.2) and waits for the matching answer, ignoring datagrams
// whose ID or question does not match (RFC 5452 §4).
func (s *Stack) exchange(ctx context.Context, server netip.AddrPort, name dnsmessage.Name, qtype dnsmessage.Type) ([]netip.Addr, time.Duration, error) {
	id, msg, err := buildQuery(name, qtype)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	c, err := s.dialUDP(server)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(tryDeadline(ctx))
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()

	if _, err := c.Write(msg[2:]); err != nil {
		return nil, 0, fmt.Errorf("send query to %v: %w", server, err)
	}
	buf := make([]byte, dnsMaxMsg)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, 0, fmt.Errorf("read answer from %v: %w", server, err)
		}
		addrs, ttl, ok, err := parseAnswer(buf[:n], id, name, qtype)
		if !ok {
			continue // not ours (late answer to an earlier try, spoof, garbage)
		}
		return addrs, ttl, err
	}
}

// exchangeTCP repeats a query over TCP after a truncated UDP answer.
func (s *Stack) exchangeTCP(ctx context.Context, server netip.AddrPort, name dnsmessage.Name, qtype dnsmessage.Type) ([]netip.Addr, time.Duration, error) {
	id, msg, err := buildQuery(name, qtype)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	dctx, cancel := context.WithDeadline(ctx, tryDeadline(ctx))
	defer cancel()
	c, err := s.dialTCP(dctx, server)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(tryDeadline(ctx))
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(msg); err != nil {
		return nil, 0, fmt.Errorf("send TCP query to %v: %w", server, err)
	}
	var lenBuf [2]byte
	if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
		return nil, 0, fmt.Errorf("read TCP answer from %v: %w", server, err)
	}
	resp := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return nil, 0, fmt.Errorf("read TCP answer from %v: %w", server, err)
	}
	addrs, ttl, ok, err := parseAnswer(resp, id, name, qtype)
	if !ok {
		return nil, 0, fmt.Errorf("TCP answer from %v does not match the query", server)
	}
	if errors.Is(err, errDNSTruncated) {
		return nil, 0, fmt.Errorf("TCP answer from %v is truncated", server)
	}
	return addrs, ttl, err
}

// parseAnswer parses a response to the A or AAAA query (id, name, qtype). ok is false when
// msg is not a response to that query at all (wrong ID, question, or not
// parseable up to the question). Otherwise err is nil with the IPv4
// addresses found by following the CNAME chain from name, or wraps
// ErrDNSNotFound (NXDOMAIN, or no A record), errDNSTruncated, or another
// server failure. ttl is the smallest TTL along the chain.
func parseAnswer(msg []byte, id uint16, name dnsmessage.Name, qtype dnsmessage.Type) (addrs []netip.Addr, ttl time.Duration, ok bool, err error) {
	var p dnsmessage.Parser
	h, perr := p.Start(msg)
	if perr != nil || h.ID != id || !h.Response {
		return nil, 0, false, nil
	}
	q, perr := p.Question()
	if perr != nil || q.Type != qtype || q.Class != dnsmessage.ClassINET ||
		!strings.EqualFold(q.Name.String(), name.String()) {
		return nil, 0, false, nil
	}
	if h.Truncated {
		return nil, 0, true, errDNSTruncated
	}
	switch h.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return nil, 0, true, fmt.Errorf("%w (NXDOMAIN)", ErrDNSNotFound)
	default:
		return nil, 0, true, fmt.Errorf("server answered %v", h.RCode)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, 0, true, fmt.Errorf("malformed answer: %w", err)
	}

	type cname struct{ owner, target string }
	type arec struct {
		owner string
		addr  netip.Addr
		ttl   uint32
	}
	var cnames []cname
	var as []arec
	var cnameTTL []uint32
	for {
		ah, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return nil, 0, true, fmt.Errorf("malformed answer: %w", err)
		}
		if ah.Class != dnsmessage.ClassINET {
			if err := p.SkipAnswer(); err != nil {
				return nil, 0, true, fmt.Errorf("malformed answer: %w", err)
			}
			continue
		}
		switch ah.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return nil, 0, true, fmt.Errorf("malformed A record: %w", err)
			}
			if qtype == dnsmessage.TypeA {
				as = append(as, arec{strings.ToLower(ah.Name.String()), netip.AddrFrom4(r.A), ah.TTL})
			}
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return nil, 0, true, fmt.Errorf("malformed AAAA record: %w", err)
			}
			if qtype == dnsmessage.TypeAAAA {
				as = append(as, arec{strings.ToLower(ah.Name.String()), netip.AddrFrom16(r.AAAA), ah.TTL})
			}
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				return nil, 0, true, fmt.Errorf("malformed CNAME record: %w", err)
			}
			cnames = append(cnames, cname{strings.ToLower(ah.Name.String()), strings.ToLower(r.CNAME.String())})
			cnameTTL = append(cnameTTL, ah.TTL)
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, 0, true, fmt.Errorf("malformed answer: %w", err)
			}
		}
	}

	cur := strings.ToLower(name.String())
	minTTL := uint32(1<<32 - 1)
	for hop := 0; hop <= dnsMaxCNAMEHops; hop++ {
		for _, a := range as {
			if a.owner == cur {
				addrs = append(addrs, a.addr)
				minTTL = min(minTTL, a.ttl)
			}
		}
		if len(addrs) > 0 {
			return addrs, time.Duration(minTTL) * time.Second, true, nil
		}
		next := ""
		for i, c := range cnames {
			if c.owner == cur {
				next = c.target
				minTTL = min(minTTL, cnameTTL[i])
				break
			}
		}
		if next == "" {
			break
		}
		cur = next
	}
	if qtype == dnsmessage.TypeAAAA {
		return nil, 0, true, fmt.Errorf("%w (no IPv6 address)", ErrDNSNotFound)
	}
	return nil, 0, true, fmt.Errorf("%w (no IPv4 address)", ErrDNSNotFound)
}
