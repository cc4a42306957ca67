package esp

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"testing"
)

// TestByteLimitExact: with a limit of exactly three datagrams, three are
// sealed (the third reaching the limit exactly), the fourth fails with
// ErrByteLimit without touching its buffer or using a sequence number,
// and raising the limit lets sealing go on with the next number.
func TestByteLimitExact(t *testing.T) {
	for _, alg := range []Algorithm{{Enc: EncAESGCM16, EncKeyBits: 128}, {Enc: EncAESCBC, EncKeyBits: 256, Auth: AuthHMACSHA256}} {
		o, in := newPair(t, alg)
		payload := make([]byte, 100)
		dgLen := uint64(o.Headroom() + len(payload) + o.padLen(len(payload)) + 2 + o.s.icvLen)
		o.SetByteLimit(3 * dgLen)
		for i := range 3 {
			pkt := sealCopy(t, o, payload, 17)
			if uint64(len(pkt)) != dgLen {
				t.Fatalf("%v: datagram of %d bytes, computed %d", alg, len(pkt), dgLen)
			}
			if _, _, err := in.Open(pkt); err != nil {
				t.Fatalf("%v: packet %d: %v", alg, i, err)
			}
		}
		if got := o.SealedBytes(); got != 3*dgLen {
			t.Fatalf("%v: SealedBytes %d, want %d", alg, got, 3*dgLen)
		}
		buf := make([]byte, o.Headroom()+len(payload), o.Headroom()+len(payload)+o.Tailroom())
		whole := buf[:cap(buf)]
		for i := range whole {
			whole[i] = 0xAA
		}
		if _, err := o.Seal(buf, o.Headroom(), 17); !errors.Is(err, ErrByteLimit) {
			t.Fatalf("%v: 4th datagram past the limit: %v, want ErrByteLimit", alg, err)
		}
		for i, b := range whole {
			if b != 0xAA {
				t.Fatalf("%v: refused Seal wrote byte %d", alg, i)
			}
		}
		if o.SentSeq() != 3 || o.SealedBytes() != 3*dgLen {
			t.Fatalf("%v: after the refusal SentSeq %d SealedBytes %d, want 3 and %d", alg, o.SentSeq(), o.SealedBytes(), 3*dgLen)
		}
		o.SetByteLimit(4*dgLen - 1) // one byte short of a 4th
		if _, err := o.Seal(buf, o.Headroom(), 17); !errors.Is(err, ErrByteLimit) {
			t.Fatalf("%v: one byte over the limit: %v, want ErrByteLimit", alg, err)
		}
		o.SetByteLimit(0)
		pkt := sealCopy(t, o, payload, 17)
		if seq := binary.BigEndian.Uint32(pkt[4:]); seq != 4 {
			t.Fatalf("%v: seq %d after the limit was lifted, want 4", alg, seq)
		}
	}
}

// TestByteLimitConcurrent: sealers racing for the last bytes of a limit
// never take the SA past it, and together seal exactly as many datagrams
// as fit.
func TestByteLimitConcurrent(t *testing.T) {
	o, _ := newPair(t, Algorithm{Enc: EncAESGCM16, EncKeyBits: 128})
	payload := make([]byte, 64)
	dgLen := uint64(o.Headroom() + len(payload) + o.padLen(len(payload)) + 2 + o.s.icvLen)
	const fit = 1000
	o.SetByteLimit(fit*dgLen + dgLen - 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sealed, refused := 0, 0
	for range 4 {
		wg.Go(func() {
			buf := make([]byte, o.Headroom()+len(payload), o.Headroom()+len(payload)+o.Tailroom())
			for range fit / 2 {
				_, err := o.Seal(buf[:o.Headroom()+len(payload)], o.Headroom(), 17)
				mu.Lock()
				if err == nil {
					sealed++
				} else if errors.Is(err, ErrByteLimit) {
					refused++
				} else {
					t.Error(err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if sealed != fit || o.SealedBytes() != fit*dgLen || o.SentSeq() != fit {
		t.Fatalf("sealed %d (SealedBytes %d, SentSeq %d), refused %d; want %d sealed, %d bytes", sealed, o.SealedBytes(), o.SentSeq(), refused, fit, fit*dgLen)
	}
}

// TestSeqForTestHook: SetSeqForTest moves the counter, so that tests of the
// layers above reach ErrSeqExhausted in two packets.
func TestSeqForTestHook(t *testing.T) {
	o, _ := newPair(t, Algorithm{Enc: EncAESGCM16, EncKeyBits: 128})
	o.SetSeqForTest(math.MaxUint32 - 1)
	if pkt := sealCopy(t, o, []byte("x"), 17); binary.BigEndian.Uint32(pkt[4:]) != math.MaxUint32 {
		t.Fatalf("seq %#x, want 2^32-1", binary.BigEndian.Uint32(pkt[4:]))
	}
	buf := make([]byte, o.Headroom()+1, o.Headroom()+1+o.Tailroom())
	if _, err := o.Seal(buf, o.Headroom(), 17); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("after 2^32-1: %v", err)
	}
}
