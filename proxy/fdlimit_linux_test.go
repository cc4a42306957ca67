package proxy

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const fdHelperEnv = "L2TPPROXY_TEST_FD_HELPER"

// TestAcceptSurvivesFDExhaustion runs a SOCKS5 proxy in a subprocess with
// RLIMIT_NOFILE lowered to 64 and opens more stalled handshakes (one byte,
// then silence) than it has descriptors. Accept fails with EMFILE; the
// proxy must back off instead of returning, time the stalled handshakes
// out, and serve a real client again.
func TestAcceptSurvivesFDExhaustion(t *testing.T) {
	if os.Getenv(fdHelperEnv) == "1" {
		fdHelper()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptSurvivesFDExhaustion$", "-test.v=false")
	cmd.Env = append(os.Environ(), fdHelperEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		stdin.Close() // the helper exits when its stdin closes
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("helper printed no address; stderr:\n%s", stderr.String())
	}
	addr := strings.TrimPrefix(sc.Text(), "ADDR=")
	go func() { exited <- cmd.Wait() }()

	const stalled = 200 // > 64 descriptors
	var conns []net.Conn
	for range stalled {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{5})
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	port := portOf(t, startHashEcho(t))
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("proxy process ended (%v); stderr:\n%s", err, stderr.String())
		default:
		}
		if ok := trySOCKSRoundTrip(addr, port); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful CONNECT within 30 s; stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	log := stderr.String()
	if !strings.Contains(log, "too many open files") || !strings.Contains(log, "accepting connections again") {
		t.Errorf("the helper never ran out of descriptors and recovered (the test proved nothing); stderr:\n%s", log)
	}
	if strings.Contains(log, "SERVE RETURNED") {
		t.Errorf("Serve returned:\n%s", log)
	}
}

// trySOCKSRoundTrip does a no-auth CONNECT to 127.0.0.1:port and a small
// exchange with the hash echo; it reports success.
func trySOCKSRoundTrip(addr string, port uint16) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	req := []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, byte(port >> 8), byte(port)}
	if _, err := c.Write(req); err != nil {
		return false
	}
	var rep [2 + 10]byte
	if _, err := readFull(c, rep[:]); err != nil || rep[3] != 0 {
		return false
	}
	c.Write([]byte("x"))
	c.(*net.TCPConn).CloseWrite()
	var h [64]byte
	n, _ := readFull(c, h[:])
	return n == 64 && string(h[:8]) == "2d711642" // sha256("x")
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func fdHelper() {
	lim := syscall.Rlimit{Cur: 64, Max: 64}
	var old syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old)
	lim.Max = old.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Printf("ADDR=%s\n", ln.Addr())
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		os.Stdin.Read(make([]byte, 1)) // EOF when the test ends
		cancel()
	}()
	res := newResolver()
	s := NewSOCKS5(&recordingDialer{r: res}, res, &Options{HandshakeTimeout: 300 * time.Millisecond, Logger: logger})
	err = s.Serve(ctx, ln)
	if ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "SERVE RETURNED:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// syncBuf is an io.Writer safe for a subprocess's output and the test.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
