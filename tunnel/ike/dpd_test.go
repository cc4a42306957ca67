package ike

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// dpdPair runs an initiator with dead-peer detection against a responder,
// on the synctest bubble's clock, up to the first ESP SA on both sides.
func dpdPair(t *testing.T, icfg Config) (toResp, toIni *pipe, iErr chan error, ini *Initiator) {
	t.Helper()
	toResp, toIni = &pipe{drop: map[int]bool{}}, &pipe{drop: map[int]bool{}}
	icfg.PSK, icfg.LocalAddr, icfg.RemoteAddr = []byte("testpsk"), clientAddr, serverAddr
	ini, err := NewInitiator(icfg, toResp)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := NewResponder(ResponderConfig{PSK: []byte("testpsk"), LocalAddr: serverAddr}, toIni)
	if err != nil {
		t.Fatal(err)
	}
	toResp.peer, toIni.peer = resp.HandlePacket, ini.HandlePacket
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	iErr = make(chan error, 1)
	go func() { iErr <- ini.Run(ctx) }()
	go func() { _ = resp.Run(ctx) }()
	go func() { // drain the responder's events
		for {
			select {
			case <-resp.Events():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case ev := <-ini.Events():
			if _, ok := ev.(ChildSAUp); ok {
				return toResp, toIni, iErr, ini
			}
		case err := <-iErr:
			t.Fatalf("initiator ended: %v", err)
		}
	}
}

// informationals counts the Informational exchanges among msgs[from:].
func informationals(msgs [][]byte, from int) int {
	n := 0
	for _, raw := range msgs[from:] {
		if m, err := Parse(raw); err == nil && m.Exchange == ExchangeInformational {
			n++
		}
	}
	return n
}

// TestDPDIdleAnswered: an idle tunnel to a live peer. We send R-U-THERE
// about once per interval of silence, the responder acks each, and Run
// goes on.
func TestDPDIdleAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		toResp, _, iErr, ini := dpdPair(t, Config{DPDInterval: 10 * time.Second})
		start := len(mustMessages(toResp))
		time.Sleep(65 * time.Second)
		synctest.Wait()
		select {
		case err := <-iErr:
			t.Fatalf("initiator ended: %v", err)
		default:
		}
		n := informationals(mustMessages(toResp), start)
		if acks := ini.r.dpdAcks.Load(); n < 5 || n > 7 || acks != uint64(n) {
			t.Errorf("65 s idle: %d R-U-THERE sent, %d acked; want 5-7, all acked", n, acks)
		}
	})
}

// TestDPDQuietWhileTraffic: while the client sees traffic from the peer
// (PeerActivity grows), no R-U-THERE is sent.
func TestDPDQuietWhileTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rx atomic.Uint64
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			tick := time.NewTicker(3 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					rx.Add(1)
				case <-ctx.Done():
					return
				}
			}
		}()
		toResp, _, iErr, _ := dpdPair(t, Config{DPDInterval: 10 * time.Second, PeerActivity: rx.Load})
		start := len(mustMessages(toResp))
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if n := informationals(mustMessages(toResp), start); n != 0 {
			t.Errorf("%d R-U-THERE sent although the peer was sending", n)
		}
		select {
		case err := <-iErr:
			t.Fatalf("initiator ended: %v", err)
		default:
		}
	})
}

// TestDPDPeerDead: the peer freezes (nothing arrives any more, nothing we
// send reaches it). We send 3 R-U-THEREs, at 1, 1.5 and 2 intervals of
// silence, and one interval after the third Run ends with ErrPeerDead:
// three intervals after the last message.
func TestDPDPeerDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		toResp, toIni, iErr, _ := dpdPair(t, Config{DPDInterval: 10 * time.Second})
		for _, p := range []*pipe{toResp, toIni} {
			p.mu.Lock()
			p.dropAll = true
			p.mu.Unlock()
		}
		start := len(mustMessages(toResp))
		frozen := time.Now()
		err := <-iErr
		took := time.Since(frozen)
		if !errors.Is(err, ErrPeerDead) {
			t.Fatalf("Run: %v, want ErrPeerDead", err)
		}
		if took < 30*time.Second || took > 30*time.Second+time.Second {
			t.Errorf("dead after %v, want 30-31 s (R-U-THERE at 10, 15 and 20 s, dead at 30 s)", took)
		}
		if n := informationals(mustMessages(toResp), start); n != dpdTries {
			t.Errorf("%d R-U-THERE sent, want %d", n, dpdTries)
		}
		t.Logf("frozen peer declared dead after %v: %v", took, err)
	})
}

// TestDPDDisabled: interval 0 sends no R-U-THERE, however long the silence.
func TestDPDDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		toResp, _, iErr, _ := dpdPair(t, Config{})
		start := len(mustMessages(toResp))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if n := informationals(mustMessages(toResp), start); n != 0 {
			t.Errorf("%d R-U-THERE with DPD off", n)
		}
		select {
		case err := <-iErr:
			t.Fatalf("initiator ended: %v", err)
		default:
		}
	})
}
