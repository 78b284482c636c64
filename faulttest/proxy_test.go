package faulttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// echoBackend serves any method: it echoes every frame prefixed with the
// stream's keel-from value, and answers a frame "fail" with NotFound.
func echoBackend(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		ss.SetHeader(metadata.Pairs("echo-header", "h"))
		ss.SetTrailer(metadata.Pairs("echo-trailer", "t"))
		for {
			var b []byte
			if err := ss.RecvMsg(&b); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if string(b) == "fail" {
				return status.Error(codes.NotFound, "backend says no")
			}
			if err := ss.SendMsg(append([]byte(md.Get(mdFrom)[0]+":"), b...)); err != nil {
				return err
			}
		}
	}))
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

func startProxy(t *testing.T, n *Net, backend string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := n.NewGRPCProxy(l, backend)
	t.Cleanup(p.Close)
	return p
}

// openPeerStream opens a bidirectional raw stream through addr as member
// from talking to member to.
func openPeerStream(t *testing.T, ctx context.Context, addr string, from, to uint64) (grpc.ClientStream, error) {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx = metadata.AppendToOutgoingContext(ctx, mdFrom, fmt.Sprintf("%x", from), mdTo, fmt.Sprintf("%x", to))
	return cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/keel.peer.v1.Peer/Stream", grpc.ForceCodec(rawCodec{}))
}

func TestProxyForwardsFramesHeadersTrailersAndStatus(t *testing.T) {
	n := NewNet(1)
	p := startProxy(t, n, echoBackend(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := openPeerStream(t, ctx, p.Addr(), 0xa, 0xb)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := cs.SendMsg([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("a:%d", i); string(b) != want {
			t.Fatalf("frame %d: got %q, want %q", i, b, want)
		}
	}
	h, err := cs.Header()
	if err != nil || len(h.Get("echo-header")) != 1 {
		t.Fatalf("header %v, %v: want the backend's echo-header", h, err)
	}
	if err := cs.SendMsg([]byte("fail")); err != nil {
		t.Fatal(err)
	}
	var b []byte
	err = cs.RecvMsg(&b)
	if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() != "backend says no" {
		t.Fatalf("got %v, want the backend's NotFound status unchanged", err)
	}
	if tr := cs.Trailer(); len(tr.Get("echo-trailer")) != 1 {
		t.Fatalf("trailer %v: want the backend's echo-trailer", tr)
	}
}

func TestProxyDropEndsOpenStreamsAndRefusesNewOnesUntilHealed(t *testing.T) {
	n := NewNet(1)
	p := startProxy(t, n, echoBackend(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cut, err := openPeerStream(t, ctx, p.Addr(), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	other, err := openPeerStream(t, ctx, p.Addr(), 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range []grpc.ClientStream{cut, other} {
		if err := cs.SendMsg([]byte("x")); err != nil {
			t.Fatal(err)
		}
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			t.Fatal(err)
		}
	}
	n.Partition([]uint64{2}, []uint64{1})

	var b []byte
	if err := cut.RecvMsg(&b); status.Code(err) != codes.Unavailable {
		t.Fatalf("open stream of a cut pair: got %v, want Unavailable", err)
	}
	s, err := openPeerStream(t, ctx, p.Addr(), 2, 1)
	if err == nil {
		s.SendMsg([]byte("x"))
		err = s.RecvMsg(&b)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("new stream of a cut pair (reverse direction): got %v, want Unavailable", err)
	}
	if err := other.SendMsg([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := other.RecvMsg(&b); err != nil || string(b) != "3:y" {
		t.Fatalf("stream of an uncut pair: got %q, %v", b, err)
	}

	n.Heal()
	s, err = openPeerStream(t, ctx, p.Addr(), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg([]byte("z")); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(&b); err != nil || string(b) != "1:z" {
		t.Fatalf("after heal: got %q, %v", b, err)
	}
}

func TestProxyDelayHoldsFramesAndKeepsTheirOrder(t *testing.T) {
	n := NewNet(1)
	p := startProxy(t, n, echoBackend(t))
	const d = 100 * time.Millisecond
	n.Delay(1, 2, d, d/2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := openPeerStream(t, ctx, p.Addr(), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const frames = 30
	for i := range frames {
		if err := cs.SendMsg([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range frames {
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("1:%d", i); string(b) != want {
			t.Fatalf("frame %d: got %q, want %q (order lost)", i, b, want)
		}
		if i == 0 {
			// A lower bound only: the frame cannot arrive before the least
			// delay (d - jitter) has passed.
			if el := time.Since(start); el < d/2 {
				t.Fatalf("first frame arrived after %v, before the least delay %v", el, d/2)
			}
		}
	}
}

func TestTCPProxyForwardsBytesWithDelay(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	n := NewNet(1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := n.NewTCPProxy(l, backend.Addr().String())
	defer p.Close()
	n.DelayAll(50*time.Millisecond, 0)
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	msg := []byte("hello through the proxy")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatalf("got %q, want %q", got, msg)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("echo took %v, less than the two 50ms delays", el)
	}
}
