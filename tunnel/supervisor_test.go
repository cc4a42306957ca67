package tunnel

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestSupervisorReportsStuckGoroutine: Wait returns at once when nothing
// runs, waits for goroutines that end, and names one that does not stop in
// time (ErrStopTimeout) instead of ignoring it.
func TestSupervisorReportsStuckGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s supervisor
		if err := s.Wait(time.Second); err != nil {
			t.Fatalf("idle Wait: %v", err)
		}
		release := make(chan struct{})
		s.Go("quick", func() { time.Sleep(100 * time.Millisecond) })
		s.Go("stuck", func() { <-release })
		s.Go("stuck", func() { <-release })
		start := time.Now()
		err := s.Wait(time.Second)
		if !errors.Is(err, ErrStopTimeout) || !strings.Contains(err.Error(), "stuck (2)") || strings.Contains(err.Error(), "quick") {
			t.Fatalf("Wait = %v, want ErrStopTimeout naming only stuck (2)", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("Wait returned after %v, want 1s", d)
		}
		close(release)
		if err := s.Wait(time.Second); err != nil {
			t.Fatalf("Wait after release: %v", err)
		}
		if r := s.Running(); len(r) != 0 {
			t.Errorf("Running = %v", r)
		}
	})
}

// TestLayerRunStop: stop cancels the layer's context and waits for its
// goodbye; a layer that ignores cancellation is an error naming it.
func TestLayerRunStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s supervisor
		var polite, deaf layerRun
		if err := polite.stop(time.Second, nil); err != nil {
			t.Fatalf("stop of a layer never started: %v", err)
		}
		polite.start(&s, "PPP", func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(200 * time.Millisecond) // its goodbye
			return errors.New("bye")
		})
		release := make(chan struct{})
		deaf.start(&s, "L2TP", func(context.Context) error { <-release; return nil })
		if err := polite.stop(time.Second, nil); err != nil || polite.err == nil {
			t.Fatalf("polite stop = %v (err %v)", err, polite.err)
		}
		err := deaf.stop(time.Second, nil)
		if !errors.Is(err, ErrStopTimeout) || !strings.Contains(err.Error(), "L2TP") {
			t.Fatalf("deaf stop = %v, want ErrStopTimeout naming L2TP", err)
		}
		close(release)
		if err := s.Wait(time.Second); err != nil {
			t.Fatal(err)
		}
	})
}
