package daemon

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultMaxConns is the default cap on the connections a daemon's port
// serves at once.
const DefaultMaxConns = 4096

// CapListener returns l serving at most max connections at once: a
// connection over the cap is closed as soon as it is accepted, and a WARN
// line (at most one every 10 s) says so, with the port and the cap. A peer
// that opens connections without end then costs the daemon a file
// descriptor for a moment each, not one for good.
func CapListener(l net.Listener, max int, what string, log *zap.Logger) net.Listener {
	if max <= 0 {
		max = DefaultMaxConns
	}
	return &capListener{Listener: l, max: int64(max), what: what, log: log}
}

type capListener struct {
	net.Listener
	max  int64
	what string
	log  *zap.Logger
	open atomic.Int64

	mu      sync.Mutex
	lastLog time.Time
	refused int64 // since the last log line
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &capConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.mu.Lock()
		l.refused++
		if now := time.Now(); now.Sub(l.lastLog) >= 10*time.Second {
			l.log.Warn("connection cap reached: refusing new connections", zap.String("port", l.what),
				zap.Stringer("addr", l.Addr()), zap.Int64("cap", l.max), zap.Int64("refused", l.refused), zap.Stringer("peer", c.RemoteAddr()))
			l.lastLog, l.refused = now, 0
		}
		l.mu.Unlock()
		_ = c.Close() // after the log line: the peer sees the close once it is written
	}
}

// capConn gives its place back at its first Close.
type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
