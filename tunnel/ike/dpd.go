package ike

import (
	"encoding/binary"
	"fmt"
	"time"
)

// dpdTries is how many R-U-THEREs go unanswered before the peer is dead.
const dpdTries = 3

// dpd is our side of dead-peer detection (RFC 3706) on the current IKE SA:
// when nothing has arrived from the peer for the interval (an IKE message
// for one of our SAs, or whatever the client counts: authenticated ESP,
// NAT-T keepalives), send R-U-THERE; resend it (with the next sequence
// number) every half interval while none is answered; one interval after the
// dpdTries-th the peer is dead. So a frozen peer is declared dead three
// intervals after the last thing it sent (10 s + 5 s + 5 s + 10 s at the
// default; RFC 3706 §5.5 leaves the schedule to us). Any traffic from the
// peer counts as an answer (RFC 3706 §5.3: DPD is only needed in the
// absence of traffic). Only the Run goroutine touches it.
type dpd struct {
	interval time.Duration
	activity func() uint64 // the client's count of datagrams from the peer; may be nil

	sa         *ikeSA    // the SA the state below belongs to
	count      uint64    // activity + IKE messages at lastSeen
	lastSeen   time.Time // when count last changed (as polled)
	seq        uint32    // last sequence number sent (RFC 3706 §7)
	unanswered int       // R-U-THEREs sent since lastSeen
	lastSent   time.Time
	nextAt     time.Time // next poll; zero: not running
	noVID      *ikeSA    // the SA we said lacks the DPD vendor ID
}

// step is the polling period: the silence is measured to within a
// twentieth of the interval, so a dead peer is declared within 3.05
// intervals.
func (d *dpd) step() time.Duration {
	return max(d.interval/20, 10*time.Millisecond)
}

// dpdArm (re)starts the poll for the current SA, if DPD is on.
func (r *runner) dpdArm() {
	d := &r.dpd
	if d.interval <= 0 || !d.nextAt.IsZero() || r.sas.current() == nil {
		return
	}
	d.nextAt = r.clk.Now().Add(d.step())
	r.armTimer()
}

func (r *runner) activityCount() uint64 {
	n := r.heard
	if r.dpd.activity != nil {
		n += r.dpd.activity()
	}
	return n
}

// dpdPoll runs when the poll is due; it returns ErrPeerDead once the peer
// left dpdTries R-U-THEREs unanswered.
func (r *runner) dpdPoll(now time.Time) error {
	d := &r.dpd
	if d.nextAt.IsZero() || now.Before(d.nextAt) {
		return nil
	}
	d.nextAt = time.Time{}
	sa := r.sas.current()
	if sa == nil {
		return nil // restarted by dpdArm when an SA is up again
	}
	if !sa.peerDPD {
		// RFC 3706 §5.1: R-U-THERE only to a peer that sent the vendor ID.
		if d.noVID != sa {
			d.noVID = sa
			r.log.Warn("ike: the server did not offer dead-peer detection (RFC 3706 vendor ID): a silent server is noticed only by L2TP")
		}
		return nil
	}
	if d.sa != sa {
		seq, err := r.randomID(1) // RFC 3706 §7: a random initial sequence number
		if err != nil {
			return err
		}
		*d = dpd{interval: d.interval, activity: d.activity, sa: sa, count: r.activityCount(),
			lastSeen: r.heardAt, seq: seq & 0x7fffffff, noVID: d.noVID}
	}
	if c := r.activityCount(); c != d.count {
		d.count, d.lastSeen, d.unanswered = c, now, 0
	}
	switch {
	case d.unanswered == 0 && now.Sub(d.lastSeen) >= d.interval,
		d.unanswered > 0 && d.unanswered < dpdTries && now.Sub(d.lastSent) >= d.interval/2:
		d.seq++
		d.unanswered++
		d.lastSent = now
		r.log.Debug("ike: DPD R-U-THERE", "seq", d.seq, "try", d.unanswered, "silent_for", now.Sub(d.lastSeen))
		if err := sa.sendNotify(NotifyRUThere, binary.BigEndian.AppendUint32(nil, d.seq)); err != nil {
			return err
		}
	case d.unanswered >= dpdTries && now.Sub(d.lastSent) >= d.interval:
		return fmt.Errorf("%w: nothing over IKE or ESP for %s, %d R-U-THERE unanswered (RFC 3706)",
			ErrPeerDead, now.Sub(d.lastSeen).Round(time.Second), d.unanswered)
	}
	d.nextAt = now.Add(d.step())
	return nil
}

// onDPDAck checks an R-U-THERE-ACK against what we sent (RFC 3706 §7: the
// sequence number of an outstanding R-U-THERE). The message itself already
// counted as activity.
func (r *runner) onDPDAck(sa *ikeSA, n Notify) {
	r.dpdAcks.Add(1)
	d := &r.dpd
	if len(n.Data) != 4 || d.sa != sa {
		return
	}
	if seq := binary.BigEndian.Uint32(n.Data); d.seq-seq >= uint32(max(d.unanswered, 1)) {
		r.log.Debug("ike: R-U-THERE-ACK for no outstanding R-U-THERE", "seq", seq, "last_sent", d.seq)
	}
}

// sendNotify sends an encrypted Informational with one notify about this
// ISAKMP SA (SPI = the cookies, RFC 3706 §5.2).
func (sa *ikeSA) sendNotify(t uint16, data []byte) error {
	return sa.sendInformational(func(b *builder) {
		b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: t, SPI: sa.cookies(), Data: data}.encode())
	})
}
