package ike

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// restartLink carries one direction between an initiator and a responder in
// a synctest bubble. filter sees each message with its index in this
// direction and says whether it is delivered.
type restartLink struct {
	mu     sync.Mutex
	to     func([]byte)
	sent   [][]byte
	filter func(i int, msg []byte) bool
}

func (l *restartLink) WriteIKE(msg []byte, natt bool) error {
	l.mu.Lock()
	i := len(l.sent)
	l.sent = append(l.sent, append([]byte(nil), msg...))
	deliver := l.filter == nil || l.filter(i, msg)
	l.mu.Unlock()
	if deliver {
		l.to(append([]byte(nil), msg...))
	}
	return nil
}

func (l *restartLink) messages() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.sent...)
}

// restartPeers runs an initiator and a responder (real clock: the bubble's)
// and returns the initiator, the link to the responder and Run's result.
func restartPeers(t *testing.T, ctx context.Context, filter func(ini *Initiator, i int, msg []byte) bool) (*Initiator, *restartLink, <-chan error) {
	t.Helper()
	toResp, toIni := &restartLink{}, &restartLink{}
	ini, err := NewInitiator(Config{PSK: []byte("testpsk"), LocalAddr: clientAddr, RemoteAddr: serverAddr, Clock: clock.Real}, toResp)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := NewResponder(ResponderConfig{PSK: []byte("testpsk"), LocalAddr: serverAddr, Clock: clock.Real}, toIni)
	if err != nil {
		t.Fatal(err)
	}
	toResp.to, toIni.to = resp.HandlePacket, ini.HandlePacket
	if filter != nil {
		toResp.filter = func(i int, msg []byte) bool { return filter(ini, i, msg) }
	}
	iErr := make(chan error, 1)
	go func() { _ = resp.Run(ctx) }()
	go func() { iErr <- ini.Run(ctx) }()
	return ini, toResp, iErr
}

// isMM3 reports whether msg is a cleartext Main Mode message with the
// responder's cookie set and a KE payload first: MM3.
func isMM3(msg []byte) bool {
	m, err := Parse(msg)
	return err == nil && m.Exchange == ExchangeIdentityProtection && m.Flags&FlagEncryption == 0 &&
		m.RCookie != ([8]byte{}) && m.NextPayload == PayloadKE
}

// cookieI is the initiator cookie of an ISAKMP message.
func cookieI(msg []byte) []byte { return msg[:8] }

// TestPhase1RestartsWhenMM3IsNeverAnswered: the server answers MM1 and then
// swallows every MM3 of that exchange (seen in CI from SoftEther and
// Libreswan). After mm3Tries transmissions (7 s) the initiator starts a new
// exchange with a new cookie, which comes up.
func TestPhase1RestartsWhenMM3IsNeverAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var first []byte // the first exchange's initiator cookie
		ini, toResp, iErr := restartPeers(t, ctx, func(_ *Initiator, i int, msg []byte) bool {
			if i == 0 {
				first = cookieI(msg)
			}
			return !(isMM3(msg) && bytes.Equal(cookieI(msg), first))
		})
		start := time.Now()
		waitChildUp(t, ini, iErr)
		took := time.Since(start)
		if took < 7*time.Second || took > 8*time.Second {
			t.Errorf("up after %v, want the new exchange to start at 7 s (3 tries of MM3)", took)
		}
		msgs := toResp.messages()
		var mm1s, stale int
		for _, m := range msgs {
			h, _ := Parse(m)
			if h.RCookie == ([8]byte{}) {
				mm1s++
			}
			if isMM3(m) && bytes.Equal(cookieI(m), first) {
				stale++
			}
		}
		if mm1s != 2 || stale != mm3Tries {
			t.Errorf("%d MM1s and %d MM3s of the first exchange, want 2 and %d", mm1s, stale, mm3Tries)
		}
		cancel()
		<-iErr
	})
}

// TestPhase1RestartsAreBounded: a server that never answers MM3 gets
// 1+maxP1Restarts exchanges, then Run fails with ErrTimeout naming MM3.
func TestPhase1RestartsAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, toResp, iErr := restartPeers(t, ctx, func(_ *Initiator, _ int, msg []byte) bool { return !isMM3(msg) })
		start := time.Now()
		err := <-iErr
		took := time.Since(start)
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no answer to MM3") {
			t.Fatalf("Run = %v, want ErrTimeout for MM3", err)
		}
		var rs restartable
		if errors.As(err, &rs) {
			t.Errorf("Run's error still carries the restart mark: %v", err)
		}
		mm1s := 0
		for _, m := range toResp.messages() {
			if h, _ := Parse(m); h.RCookie == ([8]byte{}) {
				mm1s++
			}
		}
		if want := 1 + maxP1Restarts; mm1s != want || took != time.Duration(want)*7*time.Second {
			t.Errorf("%d exchanges in %v, want %d in %v", mm1s, took, want, time.Duration(want)*7*time.Second)
		}
	})
}

// TestPhase1RestartsOnInvalidCookie: the server answers the first MM3 with
// INVALID-COOKIE (RFC 2408 §3.14.1: it lost the exchange, e.g. it
// restarted). The initiator starts a new exchange at once.
func TestPhase1RestartsOnInvalidCookie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		answered := false
		ini, _, iErr := restartPeers(t, ctx, func(ini *Initiator, _ int, msg []byte) bool {
			if !isMM3(msg) || answered {
				return true
			}
			answered = true
			h, _ := Parse(msg)
			b := newBuilder()
			b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: notifyInvalidCookie, SPI: msg[:16]}.encode())
			n := Header{ICookie: h.ICookie, RCookie: h.RCookie, NextPayload: b.first, Version: isakmpVersion,
				Exchange: ExchangeInformational, MessageID: 0x01020304, Length: uint32(HeaderLen + len(b.buf))}
			go ini.HandlePacket(append(n.AppendTo(nil), b.buf...))
			return false
		})
		start := time.Now()
		waitChildUp(t, ini, iErr)
		if took := time.Since(start); took > time.Second {
			t.Errorf("up after %v, want the new exchange at once", took)
		}
		if !answered {
			t.Error("no MM3 was answered with INVALID-COOKIE")
		}
		cancel()
		<-iErr
	})
}

// waitChildUp waits for the initiator's ChildSAUp; Run ending first fails.
func waitChildUp(t *testing.T, ini *Initiator, iErr <-chan error) {
	t.Helper()
	timeout := time.After(time.Minute) // bubble time
	for {
		select {
		case ev := <-ini.Events():
			if _, ok := ev.(ChildSAUp); ok {
				return
			}
		case err := <-iErr:
			t.Fatalf("initiator ended before its IPsec SA was up: %v", err)
		case <-timeout:
			t.Fatal("no IPsec SA within a minute")
		}
	}
}
