package netstack

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// An RA from the peer gives the host a SLAAC address in its prefix and a
// default route; TCP then works end to end over IPv6.
func TestIPv6SLAACAndDial(t *testing.T) {
	a, b := mustPipe(t)
	iidA := [8]byte{0x02, 1, 2, 3, 4, 5, 6, 7}
	iidB := [8]byte{0x02, 9, 9, 9, 9, 9, 9, 9}
	prefix := netip.MustParsePrefix("2001:db8:77::/64")
	srvAddr := netip.MustParseAddr("2001:db8:77::1")
	if err := b.EnableIPv6(iidB, netip.PrefixFrom(srvAddr, 64)); err != nil {
		t.Fatal(err)
	}
	if a.hasGlobalIPv6() {
		t.Fatal("global IPv6 before EnableIPv6")
	}
	if err := a.EnableIPv6(iidA); err != nil {
		t.Fatal(err)
	}
	if err := a.EnableIPv6(iidA); err != nil { // again: no-op
		t.Fatal(err)
	}
	if got := a.IPv6Addrs(); len(got) != 1 || got[0] != netip.MustParsePrefix("fe80::201:203:405:607/64") {
		t.Fatalf("link-local: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.DialContext(ctx, "tcp", "[2001:db8:77::1]:80"); !errors.Is(err, ErrDial) {
		t.Fatalf("dial before the RA: %v", err)
	}
	ra, err := RouterAdvertisement(netip.MustParseAddr("fe80::209:909:909:909"), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.InjectInbound(ra); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !a.hasGlobalIPv6() {
		if time.Now().After(deadline) {
			t.Fatalf("no SLAAC address after the RA: %v", a.IPv6Addrs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var global netip.Prefix
	for _, p := range a.IPv6Addrs() {
		if !p.Addr().IsLinkLocalUnicast() {
			global = p
		}
	}
	if !prefix.Contains(global.Addr()) || global.Bits() != 64 {
		t.Fatalf("SLAAC address %v not in %v", global, prefix)
	}

	ln, err := b.ListenTCP(netip.AddrPortFrom(srvAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello over IPv6")
		c.Close()
	}()
	c, err := a.DialContext(ctx, "tcp", "[2001:db8:77::1]:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ra := c.RemoteAddr().String(); ra != "[2001:db8:77::1]:80" {
		t.Errorf("remote %s", ra)
	}
	if la := c.LocalAddr().String(); la != "["+global.Addr().String()+"]:"+portOf(la) {
		t.Errorf("local %s, want the SLAAC address %v", la, global.Addr())
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello over IPv6" {
		t.Fatalf("read %q %v", got, err)
	}
	if _, err := a.DialContext(ctx, "tcp4", "[2001:db8:77::1]:80"); !errors.Is(err, ErrDial) {
		t.Errorf("tcp4 to an IPv6 address: %v", err)
	}
}

func portOf(hostport string) string {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return ""
	}
	return strconv.Itoa(int(ap.Port()))
}

// Without EnableIPv6, IPv6 packets from the tunnel are dropped and the
// stack sends none (no Router Solicitation).
func TestIPv6OffUntilEnabled(t *testing.T) {
	sent := make(chan []byte, 16)
	s, err := New(Config{LocalAddr: netip.MustParseAddr("10.64.0.1"), MTU: 1400}, func(buf []byte, headroom int) error {
		sent <- append([]byte(nil), buf[headroom:]...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ra, _ := RouterAdvertisement(netip.MustParseAddr("fe80::1"), netip.MustParsePrefix("2001:db8::/64"))
	if err := s.InjectInbound(ra); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-sent:
		t.Fatalf("sent % x while IPv6 is off", p)
	case <-time.After(1200 * time.Millisecond): // > MaxRtrSolicitationDelay
	}
	if len(s.IPv6Addrs()) != 0 {
		t.Errorf("addresses %v", s.IPv6Addrs())
	}
	if err := s.EnableIPv6([8]byte{2, 0, 0, 0, 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-sent:
		if !IsRouterSolicitation(p) {
			t.Errorf("first IPv6 packet is not a Router Solicitation: % x", p)
		}
	case <-time.After(3 * time.Second):
		t.Error("no Router Solicitation after EnableIPv6")
	}
}
