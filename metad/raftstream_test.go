package metad

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A member that stops reading (a paused host) blocks a request written
// to it until the transport's I/O timeout; closeConns, at shutdown, makes
// the write fail at once, so Raft's shutdown is not held up.
func TestRaftStreamCloseConnsUnblocksWrites(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // held open, never read
		}
	}()
	s, err := newRaftStream("127.0.0.1:0", "127.0.0.1:1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := c.Write(buf); err != nil {
				wrote <- err
				return
			}
		}
	}()
	select {
	case err := <-wrote:
		t.Fatalf("a write to a member that reads nothing ended by itself: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	s.closeConns()
	if err := <-wrote; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the blocked write ended with %v, want the connection closed", err)
	}
	if _, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second); err == nil {
		t.Fatal("a connection was dialled after closeConns")
	}
}

// Replication is never pipelined (hashicorp/raft#612).
func TestRaftTransportUnpipelined(t *testing.T) {
	var tr raft.Transport = unpipelined{}
	if _, err := tr.AppendEntriesPipeline("a", "b"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
}
