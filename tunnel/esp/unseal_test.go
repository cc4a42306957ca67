package esp

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"testing"
)

// hostileStream is a burst mix: fresh packets out of order, duplicates
// (inside one half and across halves), forged ICVs (of fresh and of
// replayed sequence numbers), bad trailers, packets left of the window,
// truncated and foreign-SPI packets.
func hostileStream(t *testing.T, o *Outbound, r *mrand.Rand) [][]byte {
	t.Helper()
	var pkts [][]byte
	for i := 0; i < 3*ReplayWindow; i++ {
		switch k := r.IntN(20); {
		case k == 0 && len(pkts) > 0: // duplicate of any earlier packet
			pkts = append(pkts, bytes.Clone(pkts[r.IntN(len(pkts))]))
		case k == 1: // forged ICV of a fresh packet
			p := sealCopy(t, o, []byte{byte(i), 1, 2, 3}, 17)
			p[len(p)-1] ^= 0x80
			pkts = append(pkts, p)
		case k == 2 && len(pkts) > 0: // forged copy of an earlier packet
			p := bytes.Clone(pkts[r.IntN(len(pkts))])
			p[len(p)-1] ^= 1
			pkts = append(pkts, p)
		case k == 3:
			pkts = append(pkts, sealTrailer(o, []byte{0x01, 0x03, 0x02, 0x11}, false))
		case k == 4 && len(pkts) > 1: // truncated
			p := pkts[r.IntN(len(pkts))]
			pkts = append(pkts, bytes.Clone(p[:r.IntN(len(p)+1)/2+1]))
		case k == 5: // another SPI
			p := sealCopy(t, o, []byte{9}, 17)
			p[0] ^= 0xFF
			pkts = append(pkts, p)
		case k == 6 && len(pkts) > 2: // swap the last two: reordering
			p := sealCopy(t, o, []byte{byte(i), 7}, 17)
			pkts = append(pkts, p)
			n := len(pkts)
			pkts[n-1], pkts[n-3] = pkts[n-3], pkts[n-1]
		default:
			payload := make([]byte, 1+r.IntN(200))
			payload[0] = byte(i)
			pkts = append(pkts, sealCopy(t, o, payload, 17))
		}
	}
	return pkts
}

type openResult struct {
	payload []byte
	nh      byte
	err     error
}

// TestUnsealCommitMatchesOpen runs the same hostile streams through Open,
// one packet after the other, and through Unseal on two goroutines per
// burst (one also committing its half in order, as the datapath's reader
// does, while the other unseals) with Commit in arrival order: every
// packet must get the same payload and error both ways.
func TestUnsealCommitMatchesOpen(t *testing.T) {
	for _, alg := range []Algorithm{
		{Enc: EncAESCBC, EncKeyBits: 128, Auth: AuthHMACSHA1},
		{Enc: EncAESGCM16, EncKeyBits: 128},
		{Enc: EncAESGCM8, EncKeyBits: 128},
	} {
		for seed := range uint64(4) {
			r := mrand.New(mrand.NewPCG(seed, 99))
			o, serial := newPair(t, alg)
			_, parallel := newPair(t, alg)
			pkts := hostileStream(t, o, r)

			want := make([]openResult, len(pkts))
			for i, p := range pkts {
				pl, nh, err := serial.Open(bytes.Clone(p))
				want[i] = openResult{bytes.Clone(pl), nh, err}
			}

			got := make([]openResult, 0, len(pkts))
			us := make([]Unsealed, 64)
			for start := 0; start < len(pkts); {
				n := min(1+r.IntN(64), len(pkts)-start)
				burst := make([][]byte, n)
				for i := range burst {
					burst[i] = bytes.Clone(pkts[start+i])
				}
				half := n / 2
				var wg sync.WaitGroup
				wg.Go(func() {
					for i := half; i < n; i++ {
						parallel.Unseal(burst[i], &us[i])
					}
				})
				for i := range half {
					parallel.Unseal(burst[i], &us[i])
				}
				for i := range half {
					pl, nh, err := parallel.Commit(&us[i])
					got = append(got, openResult{bytes.Clone(pl), nh, err})
				}
				wg.Wait()
				for i := half; i < n; i++ {
					pl, nh, err := parallel.Commit(&us[i])
					got = append(got, openResult{bytes.Clone(pl), nh, err})
				}
				start += n
			}

			var accepted, replays, forged int
			for i := range pkts {
				w, g := want[i], got[i]
				if !errors.Is(g.err, w.err) || !errors.Is(w.err, g.err) || g.nh != w.nh || !bytes.Equal(g.payload, w.payload) {
					t.Fatalf("%v seed %d packet %d: Unseal+Commit %v nh %d %x, Open %v nh %d %x",
						alg, seed, i, g.err, g.nh, g.payload, w.err, w.nh, w.payload)
				}
				switch w.err {
				case nil:
					accepted++
				case ErrReplay:
					replays++
				case ErrAuth:
					forged++
				}
			}
			// The stream must exercise every outcome, or the comparison
			// proves little.
			if accepted == 0 || replays == 0 || forged == 0 {
				t.Fatalf("%v seed %d: %d accepted, %d replays, %d forged", alg, seed, accepted, replays, forged)
			}
			if serial.HighestSeq() != parallel.HighestSeq() {
				t.Fatalf("%v: highest seq %d serial, %d parallel", alg, serial.HighestSeq(), parallel.HighestSeq())
			}
		}
	}
}

func TestUnsealCommitZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	o, in := newPair(t, Algorithm{Enc: EncAESCBC, EncKeyBits: 128, Auth: AuthHMACSHA1})
	hr := o.Headroom()
	buf := make([]byte, hr+1400, hr+1400+o.Tailroom())
	var u Unsealed
	run := func() {
		pkt, err := o.Seal(buf[:hr+1400], hr, 17)
		if err != nil {
			t.Fatal(err)
		}
		in.Unseal(pkt, &u)
		if _, _, err := in.Commit(&u); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("%.1f allocs per Seal+Unseal+Commit", n)
	}
}
