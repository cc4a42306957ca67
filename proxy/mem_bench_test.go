package proxy

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// BenchmarkIdleTunnelMemory reports the heap and stack held per open,
// idle proxied connection (client -> proxy -> loopback server), for
// SOCKS5 CONNECT and HTTP CONNECT: what 1,000 concurrent users cost.
func BenchmarkIdleTunnelMemory(b *testing.B) {
	for _, kind := range []string{"socks5", "http"} {
		b.Run(kind, func(b *testing.B) {
			res := newResolver()
			var addr string
			if kind == "socks5" {
				addr = startServe(b, NewSOCKS5(&recordingDialer{r: res}, res, nil).Serve)
			} else {
				addr = startServe(b, NewHTTP(&recordingDialer{r: res}, nil).Serve)
			}
			port := startHashEcho(b)
			const n = 200
			for range b.N {
				before := memInUse()
				conns := make([]net.Conn, 0, n)
				for range n {
					var c net.Conn
					if kind == "socks5" {
						var rep byte
						c, rep = socksConnect(b, addr, "127.0.0.1", portOf(b, port))
						if rep != 0 {
							b.Fatal(rep)
						}
					} else {
						c, _, _ = connectViaHTTP(b, addr, "127.0.0.1:"+port)
					}
					conns = append(conns, c)
				}
				time.Sleep(50 * time.Millisecond)
				after := memInUse()
				b.ReportMetric(float64(after-before)/n, "B/conn")
				for _, c := range conns {
					c.Close()
				}
			}
		})
	}
}

// memInUse is heap in use plus goroutine stacks, after a GC.
func memInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
