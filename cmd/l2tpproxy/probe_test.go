package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProbe: 200 is exit 0 and silent; another status or no answer is
// exit 1 with one line; no URL is a usage error (2).
func TestProbe(t *testing.T) {
	ready := true
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer ts.Close()
	if code, out, errs := runCapture(t, "probe", ts.URL+"/readyz"); code != 0 || out != "" || errs != "" {
		t.Errorf("ready: %d %q %q", code, out, errs)
	}
	ready = false
	if code, _, errs := runCapture(t, "probe", ts.URL+"/readyz"); code != exitFailure || !strings.Contains(errs, "503 Service Unavailable") || strings.Count(errs, "\n") != 1 {
		t.Errorf("not ready: %d %q", code, errs)
	}
	addr := ts.Listener.Addr().String()
	ts.Close()
	if code, _, errs := runCapture(t, "probe", "--timeout", "1s", "http://"+addr+"/readyz"); code != exitFailure || !strings.Contains(errs, "probe:") {
		t.Errorf("closed: %d %q", code, errs)
	}
	if code, _, _ := runCapture(t, "probe"); code != exitConfig {
		t.Errorf("no URL: %d", code)
	}
}
