package tunnel

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrStopTimeout is the class of a Close that found a goroutine of the
// tunnel (a layer's Run, the socket reader, the event loop) still running
// after the time it had to stop: it is reported, never ignored.
var ErrStopTimeout = errors.New("did not stop in time")

// goroutineLabel is the pprof label key of the tunnel's goroutines.
const goroutineLabel = "l2tpproxy.tunnel"

// supervisor owns every goroutine of one tunnel. Each is started through Go
// under a name; Wait returns once none is left, or names those still running
// when its time is up.
type supervisor struct {
	mu      sync.Mutex
	running map[string]int
	n       int
	idle    chan struct{} // closed when n drops to 0; nil while n == 0
}

// Go runs f in a goroutine the supervisor owns.
func (s *supervisor) Go(name string, f func()) {
	s.mu.Lock()
	if s.running == nil {
		s.running = make(map[string]int)
	}
	s.running[name]++
	if s.n == 0 {
		s.idle = make(chan struct{})
	}
	s.n++
	s.mu.Unlock()
	go func() {
		defer s.exited(name)
		// The label marks the goroutine and every goroutine it starts (a
		// layer's timers, the network stack's workers) as the tunnel's, so
		// a goroutine profile shows what is left (TestCloseLeavesNothing).
		pprof.Do(context.Background(), pprof.Labels(goroutineLabel, name), func(context.Context) { f() })
	}()
}

func (s *supervisor) exited(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[name]--; s.running[name] == 0 {
		delete(s.running, name)
	}
	if s.n--; s.n == 0 {
		close(s.idle)
		s.idle = nil
	}
}

// Running lists the goroutines that have not ended, sorted.
func (s *supervisor) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, k := range s.running {
		if k > 1 {
			name = fmt.Sprintf("%s (%d)", name, k)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Wait waits up to timeout for every goroutine to end. The error names the
// ones still running (ErrStopTimeout).
func (s *supervisor) Wait(timeout time.Duration) error {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	if idle == nil {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return nil
	case <-t.C:
		return fmt.Errorf("tunnel: %s %w (within %s)", strings.Join(s.Running(), ", "), ErrStopTimeout, timeout)
	}
}

// layerRun is one layer's Run goroutine: its own context so teardown can go
// top-down (PPP, then L2TP, then IKE), each layer saying goodbye in turn.
type layerRun struct {
	name   string
	cancel context.CancelCauseFunc
	done   chan struct{}
	err    error // valid after done is closed
}

func (r *layerRun) start(sup *supervisor, name string, run func(context.Context) error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	r.name, r.cancel = name, cancel
	r.done = make(chan struct{})
	sup.Go(name, func() {
		defer close(r.done)
		r.err = run(ctx)
	})
}

// stop cancels the layer with cause (nil: context.Canceled; a layer's
// ErrPeerUnreachable: no goodbye) and waits up to timeout for its goodbye
// to finish. A layer still running then is an error (ErrStopTimeout).
func (r *layerRun) stop(timeout time.Duration, cause error) error {
	if r.done == nil {
		return nil
	}
	r.cancel(cause)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
		return fmt.Errorf("tunnel: %s %w (within %s of its cancellation)", r.name, ErrStopTimeout, timeout)
	}
}
