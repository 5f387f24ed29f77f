package daemon

import (
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestCapListener: past the cap a new connection is closed at once and
// logged; closing a served one makes room again.
func TestCapListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	l := CapListener(raw, 2, "test", zap.New(core))
	defer l.Close()
	served := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			served <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	defer a.Close()
	defer b.Close()
	s1, s2 := <-served, <-served
	over := dial()
	defer over.Close()
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection over the cap: read %v, want EOF (closed by the server)", err)
	}
	if logs.FilterMessage("connection cap reached: refusing new connections").Len() != 1 {
		t.Fatalf("logged %v, want one WARN line", logs.All())
	}
	select {
	case c := <-served:
		t.Fatalf("a connection over the cap was served: %v", c.RemoteAddr())
	default:
	}
	_ = s1.Close()
	_ = s1.Close() // twice: its place is given back once
	c := dial()
	defer c.Close()
	select {
	case s := <-served:
		_ = s.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no room made by closing a served connection")
	}
	_ = s2.Close()
}
