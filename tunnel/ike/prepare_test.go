package ike

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// prepareLog records, in order, what the initiator prepared
// (Config.PrepareInbound) and which Quick Mode messages it sent.
type prepareLog struct {
	mu      sync.Mutex
	entries []string
	keys    map[uint32]esp.Keys
	qmSent  map[uint32]int // M-ID: Quick Mode messages of ours sent so far
}

func (l *prepareLog) prepare(k esp.Keys) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf("prepare %08x", k.SPI))
	l.keys[k.SPI] = k
	return nil
}

// sent is the pipe's dropFn: it logs each Quick Mode message of ours as
// "QM#n <mid>", n counting the distinct ones of its exchange (our QM3 is
// QM#2 of a Quick Mode we start, our QM2 QM#1 of one the server starts),
// and drops nothing. A retransmission is not logged again.
func (l *prepareLog) sent(seen map[string]bool) func([]byte) bool {
	return func(msg []byte) bool {
		m, err := Parse(msg)
		if err != nil || m.Exchange != ExchangeQuickMode || seen[string(msg)] {
			return false
		}
		seen[string(msg)] = true
		l.mu.Lock()
		defer l.mu.Unlock()
		l.qmSent[m.MessageID]++
		l.entries = append(l.entries, fmt.Sprintf("QM#%d %08x", l.qmSent[m.MessageID], m.MessageID))
		return false
	}
}

// preparedBefore: the inbound keys of c were prepared, unchanged, and the
// next message we sent after that was Quick Mode message #n of ours (see
// sent) of some exchange.
func (l *prepareLog) preparedBefore(t *testing.T, c ChildSA, n int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	k, ok := l.keys[c.Inbound.SPI]
	if !ok {
		t.Fatalf("inbound SA %08x was never prepared; log %q", c.Inbound.SPI, l.entries)
	}
	if !bytes.Equal(k.EncKey, c.Inbound.EncKey) || !bytes.Equal(k.AuthKey, c.Inbound.AuthKey) || k.Alg != c.Inbound.Alg {
		t.Fatalf("prepared keys %+v differ from the child's %+v", k, c.Inbound)
	}
	for i, e := range l.entries {
		if e != fmt.Sprintf("prepare %08x", c.Inbound.SPI) {
			continue
		}
		var mid uint32
		if i+1 >= len(l.entries) {
			t.Fatalf("nothing sent after preparing %08x; log %q", c.Inbound.SPI, l.entries)
		}
		if _, err := fmt.Sscanf(l.entries[i+1], fmt.Sprintf("QM#%d %%x", n), &mid); err != nil {
			t.Fatalf("after preparing %08x the next message sent is %q, want our Quick Mode message #%d; log %q", c.Inbound.SPI, l.entries[i+1], n, l.entries)
		}
		return
	}
}

func newPrepareLog() *prepareLog {
	return &prepareLog{keys: map[uint32]esp.Keys{}, qmSent: map[uint32]int{}}
}

// TestPrepareInboundBeforeQM3: in a Quick Mode we start (the first and a
// rekey), our inbound keys go to Config.PrepareInbound before our QM3
// leaves: a responder may send on the pair once it has QM3. With a pipe
// that delivers synchronously, the responder has processed QM3 by the time
// WriteIKE returns, so preparing later would be too late.
func TestPrepareInboundBeforeQM3(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPrepareLog()
		p := newPair(t, Config{Phase2Lifetime: 100 * time.Second, PrepareInbound: l.prepare}, ResponderConfig{})
		p.toResp.dropFn = l.sent(map[string]bool{})
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		l.preparedBefore(t, first, 2)
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		l.preparedBefore(t, second, 2)
		if !second.Initiated {
			t.Error("our rekey's child is not marked Initiated")
		}
	})
}

// TestPrepareInboundBeforeQM2: in a Quick Mode the server starts, our
// inbound keys go to Config.PrepareInbound before our QM2 leaves: the
// server has the keys once QM2 arrives, and its first ESP may overtake its
// QM3 (or wait behind it in our IKE queue).
func TestPrepareInboundBeforeQM2(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPrepareLog()
		p := newPair(t, Config{PrepareInbound: l.prepare}, ResponderConfig{})
		p.toResp.dropFn = l.sent(map[string]bool{})
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		if err := p.resp.StartQuickMode(t.Context()); err != nil {
			t.Fatal(err)
		}
		c := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		if c.Initiated {
			t.Fatal("the server's Quick Mode's child is marked Initiated")
		}
		l.preparedBefore(t, c, 1)
	})
}
