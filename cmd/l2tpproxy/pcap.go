package main

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// pcapFile is the --pcap capture: one pcap file for the whole run, fed by
// gVisor's sniffer of each tunnel's network stack (netstack.Config.Capture).
// It holds only the inner IP packets (what the applications sent and
// received through the VPN): no IKE, no ESP, so no keys. It stops writing
// once the next packet would take it beyond max bytes, and says so once.
// Writes never fail (the sniffer panics on a write error): a write error
// stops the capture, logged once.
type pcapFile struct {
	log *slog.Logger
	max int64

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	size    int64
	header  bool // the file header is written
	stopped bool // full or failed: nothing more is written
	packets atomic.Uint64
}

// pcapHeaderLen is the size of the pcap file header the sniffer writes
// first to each stream.
const pcapHeaderLen = 24

func createPcap(path string, max int64, log *slog.Logger) (*pcapFile, error) {
	if max < pcapHeaderLen {
		return nil, configError("--pcap-max-size %d is smaller than a pcap header", max)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, configError("--pcap: %v", err)
	}
	log.Info("capturing the inner IP packets", "file", path, "max_size", max)
	return &pcapFile{log: log, max: max, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// stream returns the writer for one network stack. Each stack's sniffer
// writes a file header first: the first stream's goes to the file, later
// ones (after a reconnect) are dropped, so the file stays one capture.
func (p *pcapFile) stream() io.Writer { return &pcapStream{p: p} }

type pcapStream struct {
	p      *pcapFile
	headed bool
}

func (s *pcapStream) Write(b []byte) (int, error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !s.headed {
		s.headed = true
		if p.header && len(b) == pcapHeaderLen {
			return len(b), nil
		}
		p.header = true
	} else {
		p.packets.Add(1)
	}
	if p.stopped {
		return len(b), nil
	}
	if p.size+int64(len(b)) > p.max {
		p.stopped = true
		p.w.Flush()
		p.log.Warn("--pcap reached --pcap-max-size: no more packets are captured", "size", p.size, "max_size", p.max)
		return len(b), nil
	}
	if _, err := p.w.Write(b); err != nil {
		p.stopped = true
		p.log.Warn("--pcap: cannot write, capture stopped", "err", err.Error())
		return len(b), nil
	}
	p.size += int64(len(b))
	// Flush each packet's record when the file is small, so a capture of a
	// short session is complete while it runs; otherwise at buffer size.
	if p.w.Buffered() > 0 && p.size < 1<<20 {
		p.w.Flush()
	}
	return len(b), nil
}

// Close flushes and closes the file.
func (p *pcapFile) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	err := p.w.Flush()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	return err
}
