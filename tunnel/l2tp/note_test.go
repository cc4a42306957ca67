package l2tp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestNoteIsBounded: a path anomaly is logged at Info the 1st, 2nd, 4th,
// 8th... time, so a peer repeating it cannot flood the log, and each kind
// is counted on its own.
func TestNoteIsBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEngine(Config{Logger: log}, nil, roleLAC)
	for range 100 {
		e.note("duplicate", "ns", 1)
	}
	e.note("retransmitting", "ns", 2)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 8 { // 1 2 4 8 16 32 64 of the first kind, 1 of the second
		t.Fatalf("%d Info lines, want 8:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"times=1", "times=2", "times=4", "times=64"} {
		if k := []int{0, 1, 2, 6}[i]; !strings.Contains(lines[k], want) {
			t.Errorf("line %d = %q, want %s", k, lines[k], want)
		}
	}
	if !strings.Contains(lines[7], "retransmitting") || !strings.Contains(lines[7], "times=1") {
		t.Errorf("last line = %q, want the second kind's first", lines[7])
	}
}
