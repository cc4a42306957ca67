package memnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

func pair(t *testing.T, seed uint64) (a, b *Conn) {
	t.Helper()
	n := New(seed)
	a, err := n.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	b, err = n.Listen(netip.MustParseAddrPort("127.0.0.1:4500"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// sendAll sends datagrams "0".."n-1" from a to b and returns what b has
// queued once everything is delivered.
func sendAll(t *testing.T, a, b *Conn, n int) []string {
	t.Helper()
	for i := range n {
		if _, err := a.WriteToUDPAddrPort([]byte(fmt.Sprint(i)), b.AddrPort()); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	buf := make([]byte, 100)
	for len(b.queue) > 0 {
		k, from, err := b.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if from != a.AddrPort() {
			t.Fatalf("from %v, want %v", from, a.AddrPort())
		}
		got = append(got, string(buf[:k]))
	}
	return got
}

func TestDelivery(t *testing.T) {
	a, b := pair(t, 1)
	if got := sendAll(t, a, b, 5); fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("got %v", got)
	}
	// The sender's buffer is copied: reusing it changes nothing delivered.
	msg := []byte("abc")
	a.WriteToUDPAddrPort(msg, b.AddrPort())
	msg[0] = 'X'
	buf := make([]byte, 10)
	k, _, _ := b.ReadFromUDPAddrPort(buf)
	if string(buf[:k]) != "abc" {
		t.Fatalf("got %q", buf[:k])
	}
	if _, err := b.net.Listen(b.AddrPort()); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("second Listen on %v: %v", b.AddrPort(), err)
	}
}

// TestImpairmentsDeterministic: the same seed gives the same fate to the
// same sequence of sends; each impairment does what it says.
func TestImpairmentsDeterministic(t *testing.T) {
	run := func(seed uint64, imp Impairment) []string {
		a, b := pair(t, seed)
		a.SetImpairment(imp)
		return sendAll(t, a, b, 200)
	}
	for name, imp := range map[string]Impairment{
		"loss":      {Loss: 0.3},
		"duplicate": {Duplicate: 0.3},
		"reorder":   {Reorder: 0.3},
		"all":       {Loss: 0.1, Duplicate: 0.1, Reorder: 0.1},
	} {
		first, again, other := run(7, imp), run(7, imp), run(8, imp)
		if fmt.Sprint(first) != fmt.Sprint(again) {
			t.Errorf("%s: not deterministic", name)
		}
		if fmt.Sprint(first) == fmt.Sprint(other) {
			t.Errorf("%s: seeds 7 and 8 gave the same fate", name)
		}
		seen := map[string]int{}
		inOrder := true
		for i, s := range first {
			seen[s]++
			if i > 0 && len(s) == len(first[i-1]) && s < first[i-1] {
				inOrder = false
			}
		}
		switch name {
		case "loss":
			if len(first) < 110 || len(first) > 170 || !inOrder {
				t.Errorf("loss 0.3: %d of 200 delivered (in order %v)", len(first), inOrder)
			}
		case "duplicate":
			if len(first) < 230 || len(first) > 290 || len(seen) != 200 {
				t.Errorf("duplicate 0.3: %d delivered, %d distinct", len(first), len(seen))
			}
		case "reorder":
			if inOrder || len(seen) < 199 {
				t.Errorf("reorder 0.3: in order %v, %d distinct", inOrder, len(seen))
			}
		}
	}
	a, b := pair(t, 1)
	a.SetImpairment(Impairment{Blackhole: true})
	if got := sendAll(t, a, b, 10); len(got) != 0 {
		t.Errorf("blackhole delivered %v", got)
	}
	if sent, dropped := a.Stats(); sent != 10 || dropped != 10 {
		t.Errorf("blackhole stats %d sent, %d dropped", sent, dropped)
	}
	a.SetImpairment(Impairment{Rewrite: func(dg []byte) [][]byte { return [][]byte{dg[:1], bytes.Repeat(dg, 2)} }})
	if got := sendAll(t, a, b, 1); fmt.Sprint(got) != "[0 00]" {
		t.Errorf("rewrite delivered %v", got)
	}
}

// TestDelayAndClose runs in a synctest bubble: a delay takes fake time only,
// delayed datagrams keep their order, and Close ends a blocked read with
// net.ErrClosed.
func TestDelayAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := pair(t, 1)
		a.SetImpairment(Impairment{Delay: 50 * time.Millisecond})
		start := time.Now()
		a.WriteToUDPAddrPort([]byte("late"), b.AddrPort())
		buf := make([]byte, 10)
		k, _, err := b.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:k]) != "late" || time.Since(start) != 50*time.Millisecond {
			t.Fatalf("read %q %v after %v", buf[:k], err, time.Since(start))
		}
		// Datagrams sent one after the other arrive in that order.
		for i := range 20 {
			a.WriteToUDPAddrPort([]byte{byte(i)}, b.AddrPort())
		}
		for i := range 20 {
			if k, _, err := b.ReadFromUDPAddrPort(buf); err != nil || k != 1 || buf[0] != byte(i) {
				t.Fatalf("delayed datagram %d: got %v (%d bytes, %v)", i, buf[:k], k, err)
			}
		}
		done := make(chan error)
		go func() {
			_, _, err := b.ReadFromUDPAddrPort(buf)
			done <- err
		}()
		synctest.Wait()
		b.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v", err)
		}
		// A full queue drops instead of growing.
		c, _ := a.net.Listen(netip.AddrPort{})
		a.SetImpairment(Impairment{})
		for range QueueLen + 10 {
			a.WriteToUDPAddrPort([]byte("x"), c.AddrPort())
		}
		if len(c.queue) != QueueLen {
			t.Fatalf("queue holds %d", len(c.queue))
		}
		if _, dropped := a.Stats(); dropped != 10 {
			t.Fatalf("%d dropped at a full queue, want 10", dropped)
		}
		c.Close()
	})
}
