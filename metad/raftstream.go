package metad

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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
	return &raftStream{Listener: ln, advertise: a, client: client}, nil
}

// Addr is the address the other members dial.
func (s *raftStream) Addr() net.Addr { return s.advertise }

// Dial connects to the member at address.
func (s *raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.client == nil {
		return d.Dial("tcp", string(address))
	}
	return tls.DialWithDialer(d, "tcp", string(address), s.client)
}
