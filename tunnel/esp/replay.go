package esp

// ReplayWindow is the number of sequence numbers, counting back from the
// highest one received, that are still accepted (once each). RFC 4303
// §3.4.3 requires at least 32 and recommends 64 by default; a wider window
// costs nothing here and tolerates reordering by concurrent senders.
const ReplayWindow = (replayWords - 1) * 64

const replayWords = 32 // bitmap of 2048 bits; one word is kept as slack

// replayWindow is the RFC 4303 §3.4.3 sliding window, kept as a ring of
// 64-bit words indexed by seq/64 (the layout of RFC 6479 §2.3): advancing
// the window clears whole words instead of shifting the bitmap.
//
// Invariants: top is the highest sequence number accepted (0: none).
// Bit seq%64 of word (seq/64)%replayWords is set iff seq was accepted and
// top-seq < ReplayWindow (words that rotated past are cleared in update).
// Not safe for concurrent use; Inbound holds its mutex around every call.
type replayWindow struct {
	top  uint32
	bits [replayWords]uint64
}

// check reports whether seq may be accepted. It changes nothing.
func (w *replayWindow) check(seq uint32) bool {
	switch {
	case seq == 0: // never sent (RFC 4303 §3.3.3: the first packet has 1)
		return false
	case seq > w.top:
		return true
	case w.top-seq >= ReplayWindow:
		return false // left of the window: too old
	}
	return w.bits[(seq/64)%replayWords]&(1<<(seq%64)) == 0
}

// update records seq as received, sliding the window if seq is new-highest.
// It reports false (and changes nothing) if check(seq) is false.
func (w *replayWindow) update(seq uint32) bool {
	if !w.check(seq) {
		return false
	}
	if seq > w.top {
		cur, next := w.top/64, seq/64
		n := next - cur
		if n > replayWords {
			n = replayWords
		}
		for i := uint32(1); i <= n; i++ {
			w.bits[(cur+i)%replayWords] = 0
		}
		w.top = seq
	}
	w.bits[(seq/64)%replayWords] |= 1 << (seq % 64)
	return true
}
