// Package client is cairn's client library: it asks metad for metadata and
// streams file bytes straight to and from blockds (never through metad).
// The mount and the tools are built on it.
package client

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"cairn"
	"cairn/internal/daemon"
	"cairn/rpc"
)

// Options tune a Client. Zero values take the defaults.
type Options struct {
	// Name identifies this client as a lease holder; default host-pid-time.
	Name string
	// Replication and BlockSize for new files; 0 takes metad's default.
	Replication int
	BlockSize   int64
	Logger      *zap.Logger
}

// Client talks to one metad and to the blockds it names.
type Client struct {
	// NS is metad's namespace service, for the calls the client does not wrap.
	NS   cairn.Namespace
	conn *grpc.ClientConn
	opts Options
	log  *zap.Logger
}

// MetadAddr returns the metad address a command should use: flag, else
// $CAIRN_METAD, else 127.0.0.1:9000.
func MetadAddr(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return daemon.MetadAddr()
}

// Dial connects to metad at addr. The connection is made lazily; the first
// call reports an unreachable metad.
func Dial(addr string, opts Options) (*Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(rpc.IdentityInterceptor))
	if err != nil {
		return nil, fmt.Errorf("client: dial metad %s: %w", addr, err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = fmt.Sprintf("cairn-client-%s-%d-%d", host, os.Getpid(), time.Now().UnixNano())
	}
	return &Client{NS: rpc.NewNamespaceClient(conn), conn: conn, opts: opts, log: opts.Logger}, nil
}

// Close releases the connection to metad.
func (c *Client) Close() error { return c.conn.Close() }

// Name is the client's lease-holder name.
func (c *Client) Name() string { return c.opts.Name }

// ReadDir lists a whole directory, page by page.
func (c *Client) ReadDir(ctx context.Context, path string) ([]cairn.FileInfo, error) {
	const page = 1000
	var all []cairn.FileInfo
	after := ""
	for {
		es, more, err := c.NS.List(ctx, path, after, page)
		if err != nil {
			return nil, err
		}
		all = append(all, es...)
		if !more || len(es) == 0 {
			return all, nil
		}
		after = es[len(es)-1].Name
	}
}

// Create makes a new file and returns a Writer for it.
func (c *Client) Create(ctx context.Context, path string, perm fs.FileMode) (*Writer, error) {
	fi, err := c.NS.Create(ctx, path, cairn.CreateOptions{Perm: perm, Replication: c.opts.Replication, BlockSize: c.opts.BlockSize, Client: c.opts.Name})
	if err != nil {
		return nil, err
	}
	return newWriter(c, path, fi), nil
}

// Open opens a file for reading.
func (c *Client) Open(ctx context.Context, path string) (*Reader, error) {
	fb, err := c.NS.BlockLocations(ctx, path)
	if err != nil {
		return nil, err
	}
	return newReader(c, path, fb), nil
}
