package esp

import (
	"bytes"
	"testing"
)

// TestSealToEqualsSeal: for every suite, packets sealed with SealTo and
// Finish are byte for byte the packets Seal makes (same keys, same IV key,
// same sequence numbers), for batches of 0-9 packets of mixed sizes, and
// interleaving two SAs in one batch; Inbound opens them.
func TestSealToEqualsSeal(t *testing.T) {
	ivKey := bytes.Repeat([]byte{0x5a}, 64)
	for _, alg := range allSuites() {
		t.Run(alg.String(), func(t *testing.T) {
			keys := []Keys{testKeys(t, alg, 0x1000a, 0x42), testKeys(t, alg, 0x2000b, 0x17)}
			var ref, got [2]*Outbound
			var in [2]*Inbound
			for i, k := range keys {
				var err error
				if ref[i], err = NewOutbound(k, bytes.NewReader(ivKey)); err != nil {
					t.Fatal(err)
				}
				if got[i], err = NewOutbound(k, bytes.NewReader(ivKey)); err != nil {
					t.Fatal(err)
				}
				if in[i], err = NewInbound(k); err != nil {
					t.Fatal(err)
				}
			}
			var b Batch
			for count := range 10 {
				var want, pkts [][]byte
				for i := range count {
					sa := 0
					if i%5 == 4 {
						sa = 1 // a run of the other SA in the batch
					}
					payload := bytes.Repeat([]byte{byte(i)}, 1+(i*397)%1460)
					want = append(want, sealCopy(t, ref[sa], payload, 17))
					hr := got[sa].Headroom()
					buf := make([]byte, hr+len(payload), hr+len(payload)+got[sa].Tailroom())
					copy(buf[hr:], payload)
					pkt, err := got[sa].SealTo(&b, buf, hr, 17)
					if err != nil {
						t.Fatal(err)
					}
					pkts = append(pkts, pkt)
				}
				if alg.Enc != EncAESCBC && b.Len() != 0 {
					t.Fatalf("%d packets of %v deferred; only AES-CBC defers", b.Len(), alg)
				}
				if err := b.Finish(); err != nil {
					t.Fatal(err)
				}
				if b.Len() != 0 {
					t.Fatalf("Finish left %d packets", b.Len())
				}
				for i := range pkts {
					if !bytes.Equal(pkts[i], want[i]) {
						t.Fatalf("batch of %d, packet %d: SealTo+Finish differs from Seal", count, i)
					}
					sa := 0
					if i%5 == 4 {
						sa = 1
					}
					if _, _, err := in[sa].Open(pkts[i]); err != nil {
						t.Fatalf("batch of %d, packet %d: Open: %v", count, i, err)
					}
				}
			}
		})
	}
}

// TestBatchFinishAllocs: a reused Batch allocates nothing.
func TestBatchFinishAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	o, _ := newPair(t, Algorithm{Enc: EncAESCBC, EncKeyBits: 128, Auth: AuthHMACSHA1})
	hr := o.Headroom()
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, hr+1400, hr+1400+o.Tailroom())
	}
	var b Batch
	allocs := testing.AllocsPerRun(100, func() {
		for _, buf := range bufs {
			if _, err := o.SealTo(&b, buf[:hr+1400], hr, 17); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Finish(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch of 8", allocs)
	}
}
