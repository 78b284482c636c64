// Package dnstest runs a small authoritative DNS server on loopback for
// tests of DNS SRV discovery: the test decides which SRV and address
// records exist, and points keel at the server (discovery.NewResolver, or
// discovery.TestDNSServerEnv for processes).
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server answers from the records the test sets. Names are absolute and
// case-insensitive ("_etcd-server._tcp.keel.test."). A name with no record
// of any type gets NXDOMAIN, as a real server answers for a name that does
// not exist.
type Server struct {
	// Addr is host:port of the server, UDP and TCP.
	Addr string

	mu      sync.Mutex
	records map[string][]dns.RR
	queries map[string]int
}

// Start starts a server on 127.0.0.1 (UDP and TCP on one free port) that
// t's cleanup stops.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{records: map[string][]dns.RR{}, queries: map[string]int{}}
	var pc net.PacketConn
	var l net.Listener
	for range 10 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("dnstest: no port free for both UDP and TCP")
	}
	s.Addr = pc.LocalAddr().String()
	// Shutdown of a server that has not started yet does nothing, and the
	// server would then serve for ever: Start returns only once both run.
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	tcp := &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: notify}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, srv := range []*dns.Server{udp, tcp} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errs <- err
			}
		}()
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		// A server that never started ends when its socket closes.
		pc.Close()
		l.Close()
		wg.Wait()
	})
	timeout := time.After(startTimeout)
	for range 2 {
		select {
		case <-started:
		case err := <-errs:
			t.Fatalf("dnstest: %v", err)
		case <-timeout:
			t.Fatalf("dnstest: the server did not start within %v", startTimeout)
		}
	}
	return s
}

// startTimeout bounds the wait for the servers to start.
const startTimeout = 30 * time.Second

// AddSRV adds an SRV record for name (e.g. "_etcd-server._tcp.keel.test.")
// pointing at target:port. Each record of a name gets the next priority,
// so resolvers return them in the order they were added.
func (s *Server) AddSRV(name, target string, port uint16) {
	s.mu.Lock()
	prio := uint16(len(s.records[strings.ToLower(dns.Fqdn(name))]))
	s.mu.Unlock()
	s.add(&dns.SRV{Hdr: s.hdr(name, dns.TypeSRV), Priority: prio, Weight: 10, Port: port, Target: dns.Fqdn(target)})
}

// AddA adds an address record for name: A for IPv4, AAAA for IPv6.
func (s *Server) AddA(name, ip string) {
	addr := net.ParseIP(ip)
	if v4 := addr.To4(); v4 != nil {
		s.add(&dns.A{Hdr: s.hdr(name, dns.TypeA), A: v4})
		return
	}
	s.add(&dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA), AAAA: addr})
}

// Queries returns how many questions for name (any type) were asked.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(dns.Fqdn(name))]
}

func (s *Server) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: t, Class: dns.ClassINET, Ttl: 0}
}

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	s.records[name] = append(s.records[name], rr)
}

// ServeDNS answers each question from the records.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	s.mu.Lock()
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		s.queries[name]++
		rrs, ok := s.records[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	s.mu.Unlock()
	w.WriteMsg(m)
}
