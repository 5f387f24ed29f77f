// Package client is cairn's client library: it asks metad for metadata and
// streams file bytes straight to and from blockds (never through metad).
// The mount and the tools are built on it.
package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"cairn"
	"cairn/internal/daemon"
	"cairn/rpc"
	"cairn/trust"
)

// Options tune a Client. Zero values take the defaults.
type Options struct {
	// Name identifies this client as a lease holder; default host-pid-time.
	Name string
	// Replication and BlockSize for new files; 0 takes metad's default.
	Replication int
	BlockSize   int64
	// Identity is who calls metad when a call's context names no one
	// (cairn.WithIdentity); default: the user and groups of this process.
	Identity cairn.Identity
	// AckTimeout bounds the wait for a pipeline's acks, and SetupTimeout
	// the connection to a blockd and a pipeline's setup: the wait of the
	// node nearest a silent one, grown by an extension per node between
	// (defaults DefaultAckTimeout, DefaultSetupTimeout).
	AckTimeout   time.Duration
	SetupTimeout time.Duration
	// ReadTimeout bounds connecting to a replica to read and its first
	// answer; then the reader moves on to the next replica (default
	// DefaultReadTimeout).
	ReadTimeout time.Duration
	// Retry says how a call that changes metad's state is made again when
	// its answer is lost in transport (rpc.RetryInterceptor); metad's
	// retry cache answers such a call with its first answer.
	Retry  rpc.RetryPolicy
	Logger *zap.Logger
	// Creds is the certificate the client presents to metad; nil loads
	// the one in trust.CertsDir() ($CAIRN_CERTS, else ~/.cairn/certs).
	// A user certificate is that user: the client then asserts no other
	// Identity by default.
	Creds *trust.Holder
	// Delegation is a delegation token every call runs by: as its
	// owner, whatever certificate Creds holds (a blockd serving WebHDFS,
	// a gateway).
	Delegation string
	// Insecure talks to an --insecure dev cluster in plain text (also
	// when $CAIRN_INSECURE is set and Creds is nil).
	Insecure bool
	// Metrics, when set, gets the client's metrics (metrics.go): its RPC
	// latency by method and its pipeline recoveries.
	Metrics prometheus.Registerer
	// Leader, when set, is shared by clients dialed with the same list of
	// a metad group's members: each starts at the member the others last
	// found leading (LeaderHint).
	Leader *LeaderHint
}

// LoadCreds returns the credentials a command presents: those in dir,
// else in trust.CertsDir(); nil when the command runs insecure
// ($CAIRN_INSECURE set). The error says how to get a certificate.
func LoadCreds(dir string) (*trust.Holder, error) {
	if dir == "" && os.Getenv("CAIRN_INSECURE") != "" {
		return nil, nil
	}
	if dir == "" {
		dir = trust.CertsDir()
	}
	c, err := trust.LoadCreds(dir)
	if err != nil {
		return nil, fmt.Errorf("%w\n(a cluster with a CA needs a certificate: an admin makes a join token with 'cairn admin -join-token --role user NAME', "+
			"and 'cairn cert join --token TOKEN' stores yours in %s; set $CAIRN_CERTS to use another directory, or $CAIRN_INSECURE=1 for an --insecure dev cluster)", err, trust.CertsDir())
	}
	return trust.NewHolder(c), nil
}

// ProcessIdentity is the user and groups this process runs as, by name.
func ProcessIdentity() cairn.Identity {
	id := cairn.Identity{User: strconv.Itoa(os.Getuid())}
	u, err := user.Current()
	if err != nil {
		return id
	}
	id.User = u.Username
	name := func(gid string) string {
		if g, err := user.LookupGroupId(gid); err == nil {
			return g.Name
		}
		return gid
	}
	// The primary group first: metad gives new files the caller's first group.
	id.Groups = []string{name(u.Gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if g != u.Gid {
				id.Groups = append(id.Groups, name(g))
			}
		}
	}
	return id
}

// Client talks to one metad and to the blockds it names.
type Client struct {
	// NS is metad's namespace service, for the calls the client does not wrap.
	NS   cairn.Namespace
	conn metadConn
	opts Options
	log  *zap.Logger
	met  *metrics // nil: not counted

	leaseMu sync.Mutex
	writers int           // open writers, whose leases the renewer keeps
	stopRen chan struct{} // stops the renewer when writers drops to 0
	// held are the lease holds of unlinked files this client keeps
	// (UnlinkOpen), one each.
	held []func()

	// How block data travels, as metad last said (datadial.go).
	dataMu      sync.Mutex
	dataTLS     *tls.Config
	dataEncrypt bool
	dataKnown   bool
	dataAsked   time.Time
}

// leaseRenewal is how often a client with open writers renews its lease
// (metad's soft limit is 60 s).
const leaseRenewal = 20 * time.Second

// holdLease keeps the client's lease renewed until the returned function is
// called; calls nest.
func (c *Client) holdLease() func() {
	c.leaseMu.Lock()
	defer c.leaseMu.Unlock()
	c.writers++
	if c.writers == 1 {
		stop := make(chan struct{})
		c.stopRen = stop
		go c.renew(stop)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.leaseMu.Lock()
			defer c.leaseMu.Unlock()
			c.writers--
			if c.writers == 0 {
				close(c.stopRen)
			}
		})
	}
}

func (c *Client) renew(stop chan struct{}) {
	t := time.NewTicker(leaseRenewal)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
			if err := c.NS.RenewLease(ctx, c.opts.Name); err != nil {
				c.log.Warn("lease renewal failed", zap.String("client", c.opts.Name), zap.Error(err))
			}
			cancel()
		}
	}
}

// MetadAddr returns the metad address a command should use: flag, else
// $CAIRN_METAD, else 127.0.0.1:9000.
func MetadAddr(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return daemon.MetadAddr()
}

// Dial connects to metad at addr, or to the members of a metad group,
// HOST1:9000,HOST2:9000,..., whose leader it follows (leader.go). The
// connection is made lazily; the first call reports an unreachable metad.
func Dial(addr string, opts Options) (*Client, error) {
	if opts.Creds == nil && !opts.Insecure {
		h, err := LoadCreds("")
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		opts.Creds = h
	}
	if opts.Insecure {
		opts.Creds = nil
	}
	userCert := opts.Creds != nil && opts.Creds.Creds().Peer.Role == trust.RoleUser
	if opts.Identity.User == "" && !userCert && opts.Delegation == "" {
		opts.Identity = ProcessIdentity()
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	retry := opts.Retry
	if retry.Logger == nil {
		retry.Logger = opts.Logger
	}
	met, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, fmt.Errorf("client: metrics: %w", err)
	}
	members := SplitMetads(addr)
	if len(members) > 1 && retry.Attempts == 0 {
		// A member that does not answer is soon left for the next
		// (leader.go), rather than tried again and again.
		retry.Attempts = 2
	}
	dial := func(a string) (*grpc.ClientConn, error) {
		// Identity first: every attempt of a call carries it. The
		// timing, when kept, comes before: a call's time is its
		// retries' too.
		chain := []grpc.UnaryClientInterceptor{rpc.IdentityInterceptor(opts.Identity), rpc.DelegationInterceptor(opts.Delegation), rpc.SafeModeLogger(opts.Logger, 10*time.Second), rpc.RetryInterceptor(rpc.NewClientID(), retry)}
		if met != nil {
			chain = append([]grpc.UnaryClientInterceptor{met.interceptor}, chain...)
		}
		return grpc.NewClient(a, rpc.Transport(opts.Creds), grpc.WithChainUnaryInterceptor(chain...))
	}
	var conn metadConn
	if len(members) > 1 {
		var g *leaderConn
		if g, err = dialGroup(members, opts.Logger, dial); err == nil {
			if opts.Leader != nil {
				g.hint = opts.Leader
				g.cur.Store(opts.Leader.index(members))
			}
			conn = g
		}
	} else {
		conn, err = dial(addr)
	}
	if err != nil {
		return nil, fmt.Errorf("client: dial metad %s: %w", addr, err)
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.SetupTimeout <= 0 {
		opts.SetupTimeout = DefaultSetupTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = fmt.Sprintf("cairn-client-%s-%d-%d", host, os.Getpid(), time.Now().UnixNano())
	}
	return &Client{NS: rpc.NewNamespaceClient(conn), conn: conn, opts: opts, log: opts.Logger, met: met}, nil
}

// Trust is metad's certificate service over this client's connection.
func (c *Client) Trust() *rpc.TrustClient { return rpc.NewTrustClient(c.conn) }

// Delegations is metad's delegation token service over the client's
// connection.
func (c *Client) Delegations() *rpc.DelegationClient { return rpc.NewDelegationClient(c.conn) }

// Group is metad's group membership service (rpc.Members) over the
// client's connection.
func (c *Client) Group() rpc.Members { return rpc.NewNamespaceClient(c.conn) }

// Close releases the connection to metad.
func (c *Client) Close() error { return c.conn.Close() }

// UnlinkOpen removes path, a file this client has open, keeping its data
// for this client (and its lease renewed) until ReleaseUnlinked.
func (c *Client) UnlinkOpen(ctx context.Context, path string) error {
	stop := c.holdLease()
	if err := c.NS.Unlink(ctx, path, c.opts.Name); err != nil {
		stop()
		return err
	}
	c.leaseMu.Lock()
	c.held = append(c.held, stop)
	c.leaseMu.Unlock()
	return nil
}

// ReleaseUnlinked ends this client's hold on fileID, a file it unlinked
// while open: the file is freed once nobody holds or writes it.
func (c *Client) ReleaseUnlinked(ctx context.Context, fileID uint64) error {
	err := c.NS.Release(ctx, fileID, c.opts.Name)
	var stop func()
	c.leaseMu.Lock()
	if n := len(c.held); n > 0 {
		stop = c.held[n-1]
		c.held = c.held[:n-1]
	}
	c.leaseMu.Unlock()
	if stop != nil {
		stop()
	}
	return err
}

// Concat moves the blocks of sources, in order, to the end of target and
// removes the sources, in one step at metad (HDFS's concat; the rules are
// cairn.Paths.Concat's).
func (c *Client) Concat(ctx context.Context, target string, sources []string) error {
	return c.NS.Concat(ctx, target, sources)
}

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

// CreateWith makes a new file with o's settings (o.Client is this
// client; zero Replication and BlockSize take the client's, then metad's,
// defaults), or with o.Overwrite replaces the file there (see Replace),
// and returns a Writer for it. o.Closed is not allowed here.
func (c *Client) CreateWith(ctx context.Context, path string, o cairn.CreateOptions) (*Writer, error) {
	if o.Closed {
		return nil, cairn.E("client.CreateWith", cairn.KindInvalid, path, "Closed files are made by CreateClosed")
	}
	o.Client = c.opts.Name
	if o.Replication == 0 {
		o.Replication = c.opts.Replication
	}
	if o.BlockSize == 0 {
		o.BlockSize = c.opts.BlockSize
	}
	fi, err := c.NS.Create(ctx, path, o)
	if err != nil {
		return nil, err
	}
	return newWriter(c, path, fi), nil
}

// CreateClosed makes a new, empty file complete at once (one synced write
// at metad) and returns a Writer for it that takes the file's lease with
// its first block (CreateOptions.Closed): closing it unwritten costs
// nothing more. Until its first write another client may open the file
// to append, as any closed file; the Writer's first write then fails
// (KindBusy) rather than write over it.
func (c *Client) CreateClosed(ctx context.Context, path string, perm fs.FileMode) (*Writer, error) {
	fi, err := c.NS.Create(ctx, path, cairn.CreateOptions{Perm: perm, Replication: c.opts.Replication, BlockSize: c.opts.BlockSize, Client: c.opts.Name, Closed: true})
	if err != nil {
		return nil, err
	}
	w := newWriter(c, path, fi)
	w.claim = true
	return w, nil
}

// Replace makes the file at path a new, empty version held open for
// writing, or makes a new file (O_TRUNC): see CreateOptions.Overwrite.
func (c *Client) Replace(ctx context.Context, path string, perm fs.FileMode) (*Writer, error) {
	fi, err := c.NS.Create(ctx, path, cairn.CreateOptions{Perm: perm, Replication: c.opts.Replication, BlockSize: c.opts.BlockSize, Client: c.opts.Name, Overwrite: true})
	if err != nil {
		return nil, err
	}
	return newWriter(c, path, fi), nil
}

// Open opens a file for reading.
func (c *Client) Open(ctx context.Context, path string) (*Reader, error) {
	fb, err := c.NS.BlockLocations(ctx, cairn.FileRef{Path: path})
	if err != nil {
		return nil, err
	}
	c.sortByDistance(fb.Blocks)
	return newReader(c, path, fb), nil
}

// localIPs are this machine's addresses, to read from a blockd on the same
// host first.
var localIPs = sync.OnceValue(func() map[string]bool {
	out := map[string]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			out[ipn.IP.String()] = true
		}
	}
	return out
})

// sortByDistance orders each block's replicas nearest first: this host,
// then the rest in metad's order (which puts stale blockds last).
func (c *Client) sortByDistance(blocks []cairn.LocatedBlock) {
	local := localIPs()
	for _, b := range blocks {
		sort.SliceStable(b.Locations, func(i, j int) bool {
			return isLocal(local, b.Locations[i].DataAddr) && !isLocal(local, b.Locations[j].DataAddr)
		})
	}
}

func isLocal(local map[string]bool, addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && local[host]
}
