package metad

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"cairn/trust"
)

// raftStream is the Raft transport's connections (raft.StreamLayer): TCP
// between the members, inside mutual TLS on a secure cluster, where both
// ends must hold a metad certificate of the cluster CA: a blockd's,
// mount's, user's or admin's certificate is refused at the handshake.
type raftStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config // nil: plain TCP

	// conns are the connections dialled and not closed yet, which
	// closeConns closes at shutdown.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

var _ raft.StreamLayer = (*raftStream)(nil)

// RaftTLS returns the Raft transport's server and client TLS
// configurations for a metad holding h: TLS 1.3, a certificate required
// of both ends, and that certificate a metad's.
func RaftTLS(h *trust.Holder, rev *trust.Revoked) (server, client *tls.Config) {
	server = trust.MutualServerConfig(h, rev)
	server.VerifyConnection = func(cs tls.ConnectionState) error {
		p, _, ok := trust.PeerOfState(cs)
		if !ok {
			return errors.New("raft: no certificate")
		}
		if p.Role != trust.RoleMetad {
			return fmt.Errorf("raft: %s may not join a metad group: only a metad certificate may", p)
		}
		return nil
	}
	return server, trust.ClientConfig(h, trust.RoleMetad)
}

// newRaftStream listens on listen; advertise is the address the other
// members reach it at.
func newRaftStream(listen, advertise string, server, client *tls.Config) (*raftStream, error) {
	a, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raft address %s: %w", advertise, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("raft transport: listen on %s: %w", listen, err)
	}
	if server != nil {
		ln = tls.NewListener(ln, server)
	}
	return &raftStream{Listener: ln, advertise: a, client: client, conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the address the other members dial.
func (s *raftStream) Addr() net.Addr { return s.advertise }

// Dial connects to the member at address.
func (s *raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if s.client == nil {
		c, err = d.Dial("tcp", string(address))
	} else {
		c, err = tls.DialWithDialer(d, "tcp", string(address), s.client)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, errors.New("raft transport: shutting down")
	}
	s.conns[c] = struct{}{}
	return &dialedConn{Conn: c, s: s}, nil
}

// dialedConn is a connection raftStream dialled; closed, it leaves the
// stream's list.
type dialedConn struct {
	net.Conn
	s *raftStream
}

func (c *dialedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c.Conn)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// closeConns closes every connection dialled and refuses new ones: a
// request Raft sends to a member that does not answer then fails at once
// instead of at its I/O timeout, so Raft's shutdown is not held up by it.
func (s *raftStream) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	clear(s.conns)
}

// unpipelined is the Raft transport without pipelined replication: the
// leader sends a follower its next AppendEntries once the last is
// answered (entries that queue meanwhile go together in the next one).
// hashicorp/raft's pipelined replication can wedge: when a follower
// answers one request with a failure, the goroutine that decodes the
// answers stops while the sender may block handing it the next request,
// and then that follower is sent no more entries (but heartbeats) until
// the leader restarts, and the leader's Raft cannot shut down
// (hashicorp/raft#612; Grafana Pyroscope turned pipelining off for it).
// Without pipelining every request is bounded by the transport's I/O
// timeout.
type unpipelined struct{ *raft.NetworkTransport }

func (unpipelined) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
