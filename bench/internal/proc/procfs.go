package proc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is a process's memory as the kernel reports it in
// /proc/<pid>/status, in bytes.
type Memory struct {
	// RSS is VmRSS: resident memory now.
	RSS int64
	// HWM is VmHWM: the highest RSS since the process started.
	HWM int64
	// Anon is RssAnon: the resident anonymous memory (Go heap, stacks,
	// caches the process allocated). etcd's bbolt database is a file
	// mapping and counts in File, not here.
	Anon int64
	// File is RssFile: resident file-backed pages (the binary, mmapped
	// files).
	File int64
}

// ReadMemory reads /proc/<pid>/status.
func ReadMemory(pid int) (Memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	fields := map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.HWM, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		dst, ok := fields[f[0]]
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, f[0], err)
		}
		*dst = kb * 1024
		found++
	}
	if found != len(fields) {
		return Memory{}, fmt.Errorf("/proc/%d/status lacks some of VmRSS, VmHWM, RssAnon, RssFile", pid)
	}
	return m, nil
}

// ResetPeak resets the process's VmHWM to its current RSS (writing 5 to
// /proc/<pid>/clear_refs, Linux 4.0 and later). It reports whether the
// kernel accepted it.
func ResetPeak(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ReadCPU returns the user plus system CPU time the process has used, from
// /proc/<pid>/stat.
func ReadCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// the fields after the last ')' start with field 3 (state).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// utime and stime are fields 14 and 15, so 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// Sampler records the highest RSS and RssAnon of a process, sampled at a
// fixed interval, between Start and Stop. VmHWM already gives the peak RSS
// over the process's whole life; the sampler adds the peak of the
// anonymous part, and the peak within the measured phase.
type Sampler struct {
	pid      int
	interval time.Duration

	mu       sync.Mutex
	peakRSS  int64
	peakAnon int64
	err      error

	stop chan struct{}
	done chan struct{}
}

// StartSampler starts sampling pid every interval until Stop.
func StartSampler(pid int, interval time.Duration) *Sampler {
	s := &Sampler{pid: pid, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *Sampler) sample() {
	m, err := ReadMemory(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.peakRSS = max(s.peakRSS, m.RSS)
	s.peakAnon = max(s.peakAnon, m.Anon)
}

// Stop takes a last sample, stops the sampler and returns the peaks it saw.
// It must be called exactly once.
func (s *Sampler) Stop() (peakRSS, peakAnon int64, err error) {
	close(s.stop)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakRSS, s.peakAnon, s.err
}

// GoMetrics are figures a server's Prometheus endpoint reports about its Go
// runtime. Valid is false when the server has no /metrics endpoint or does
// not report them.
type GoMetrics struct {
	Valid      bool
	HeapInuse  float64 // go_memstats_heap_inuse_bytes
	Goroutines float64 // go_goroutines
}

// ReadGoMetrics scrapes endpoint/metrics once with client. It never fails: a server
// without the metrics gives an invalid GoMetrics.
func ReadGoMetrics(ctx context.Context, client *http.Client, endpoint string) GoMetrics {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, endpoint+"/metrics", nil)
	if err != nil {
		return GoMetrics{}
	}
	resp, err := client.Do(req)
	if err != nil {
		return GoMetrics{}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return GoMetrics{}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return GoMetrics{}
	}
	var g GoMetrics
	var heap, gor bool
	for line := range strings.SplitSeq(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			g.HeapInuse, heap = v, true
		case "go_goroutines":
			g.Goroutines, gor = v, true
		}
	}
	g.Valid = heap && gor
	return g
}
