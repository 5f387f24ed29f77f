// Package blockd is the block daemon: it keeps replicas of blocks on local
// disk (Store), serves the block data stream (receive through a pipeline,
// send verified ranges), and reports to metad: registration, heartbeats
// with capacity, full and incremental block reports, and the commands
// metad answers with.
package blockd

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"cairn"
	"cairn/blocktoken"
	"cairn/client"
	"cairn/internal/daemon"
	"cairn/rpc"
	"cairn/trust"
	"cairn/webhdfs"
	"cairn/webui"
)

// Config configures a Blockd.
type Config struct {
	Dir       string   // the data directory, when Dirs is empty
	Dirs      []string // the data directories, one per disk
	MetadAddr string   // metad's RPC address, or a group's members, comma-separated (actor.go)
	Rack      string
	Heartbeat time.Duration
	// MetadTimeout bounds each call an actor makes to its metad: register,
	// heartbeat, incremental report (0: three heartbeats, at least
	// minMetadTimeout); a full report, or a large queued incremental one,
	// gets reportScale times as long (actor.go).
	MetadTimeout time.Duration
	// BlockReport is how often the full list of replicas goes to metad.
	BlockReport time.Duration
	// AckTimeout is how long to wait for the next node's ack in a pipeline.
	AckTimeout time.Duration
	Logger     *zap.Logger

	Reserved        int64         // bytes kept free on each disk
	Capacity        int64         // at most this many bytes of replicas, all disks together (0: no cap)
	FailedTolerated int           // failed data directories before the blockd stops
	DiskCheck       time.Duration // how often the disks are checked (default DefaultDiskCheck)
	ScanPeriod      time.Duration // the block scanner's period; negative disables it
	ScanRate        int64         // the block scanner's bytes per second per disk

	// The data port's limits (data.go; zero takes the defaults):
	// connections served at once, the time a connection's opening may
	// take, and the time the wait for each packet of a write, a packet
	// once begun and each write to the peer may take.
	MaxConns      int
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	// SkipTokenCheck serves ops without checking their block access
	// tokens: only to measure what the check costs, on a loopback
	// address (--block-tokens=false).
	SkipTokenCheck bool
	// Insecure talks to an --insecure metad in plain text. Otherwise the
	// blockd presents its certificate from CertsDir (default
	// FIRST-DATA-DIR/trust), joining with the token Join when it has none.
	Insecure bool
	CertsDir string
	Join     string
}

// Blockd is one block daemon.
type Blockd struct {
	cfg   Config
	store *Volumes
	scan  *Scanner // nil when disabled
	log   *zap.Logger
	// actors are the links to each metad given (actor.go); metad sends
	// calls that only the leader serves (a recovery's commit) and conn is
	// the connection they go through: the one metad's, or one that
	// follows a group's leader (leaderConn, nil for a single metad).
	actors     []*actor
	metad      cairn.Registry
	conn       grpc.ClientConnInterface
	leaderConn client.LeaderConn
	creds      *trust.Holder // nil when insecure
	// The leader whose commands are acted on: its address and the newest
	// term a leader answered at (actor.go).
	leadMu   sync.Mutex
	leadTerm uint64
	leadAddr string
	node     cairn.Node
	active   atomic.Int64
	keys     blocktoken.KeySet // from metad: checks the data port's tokens
	conns    atomic.Int64      // data connections being served
	// The data port's mode from metad (datatls.go), and its TLS
	// configurations (nil when insecure).
	mode      atomic.Int32
	tlsServer *tls.Config
	tlsClient *tls.Config
	capped    atomic.Bool // the cap refused a connection since the count was last under it

	recoveries chan cairn.Command // CmdRecover waiting for a worker
	transfers  chan cairn.Command // CmdTransfer waiting for a worker (transfer.go)
	moves      chan cairn.Command // the balancer's CmdTransfer waiting for one of its workers
	throttle   *throttler         // the balancer's copies (throttle.go)
	met        *metrics           // served at /metrics (metrics.go)
}

// New opens the data directory and connects (lazily) to metad.
func New(cfg Config) (*Blockd, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = cairn.DefaultHeartbeat
	}
	if cfg.BlockReport <= 0 {
		cfg.BlockReport = 6 * time.Hour
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Rack == "" {
		cfg.Rack = "/default-rack"
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	dirs := cfg.Dirs
	if len(dirs) == 0 {
		dirs = []string{cfg.Dir}
	}
	st, err := OpenVolumes(dirs, VolumeOptions{Reserved: cfg.Reserved, FailedTolerated: cfg.FailedTolerated, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	var creds *trust.Holder
	if !cfg.Insecure {
		if cfg.CertsDir == "" {
			cfg.CertsDir = filepath.Join(dirs[0], trust.CADir)
		}
		if creds, err = credentials(cfg, st.StorageID(), cfg.Logger); err != nil {
			st.Close()
			return nil, fmt.Errorf("blockd: %w", err)
		}
	}
	d := &Blockd{cfg: cfg, store: st, log: cfg.Logger, creds: creds,
		recoveries: make(chan cairn.Command, recoveryQueue), transfers: make(chan cairn.Command, transferQueue),
		moves: make(chan cairn.Command, transferQueue), throttle: newThrottler()}
	if err := d.dialMetads(); err != nil {
		d.Close()
		return nil, err
	}
	if creds != nil {
		d.tlsServer = d.dataServerConfig()
		d.tlsClient = trust.ClientConfig(creds, trust.RoleBlockd)
	}
	st.SetFailureHandler(d.volumeFailed)
	d.met = newMetrics(d)
	if cfg.ScanPeriod >= 0 {
		d.scan = NewScanner(st, ScanConfig{Period: cfg.ScanPeriod, Rate: cfg.ScanRate, Logger: cfg.Logger.Named("scanner"),
			StorageID: st.StorageID(), Report: func(ctx context.Context, bad []cairn.BadReplica) error {
				return d.reportBad(ctx, bad)
			}})
	}
	return d, nil
}

// dialMetads connects (lazily) to each metad of --metad, a list.
func (d *Blockd) dialMetads() error {
	addrs := client.SplitMetads(d.cfg.MetadAddr)
	if len(addrs) == 0 {
		return errors.New("blockd: no metad address")
	}
	// Every connection to a metad (the actors' and those following a
	// group's leader) finds a dead peer by keepalive and dials it again
	// soon after it is back (metadDialOptions).
	opts := metadDialOptions(d.creds, d.cfg.Heartbeat)
	dial := func(a string) (*grpc.ClientConn, error) { return grpc.NewClient(a, opts...) }
	for _, a := range addrs {
		conn, err := dial(a)
		if err != nil {
			return fmt.Errorf("blockd: metad %s: %w", a, err)
		}
		d.actors = append(d.actors, newActor(a, conn))
	}
	if len(d.actors) == 1 {
		d.conn, d.metad = d.actors[0].conn, d.actors[0].reg
		return nil
	}
	lc, err := client.DialLeader(addrs, d.log.Named("leader"), dial)
	if err != nil {
		return fmt.Errorf("blockd: %w", err)
	}
	d.leaderConn, d.conn, d.metad = lc, lc, rpc.NewRegistryClient(lc)
	return nil
}

// Close releases the store and the connections to metad.
func (d *Blockd) Close() {
	for _, a := range d.actors {
		_ = a.conn.Close()
	}
	if d.leaderConn != nil {
		_ = d.leaderConn.Close()
	}
	d.store.Close()
}

// reportReceived tells metad of a replica finalized by a recovery before
// the recovery's coordinator gets the answer; if metad cannot be reached
// it is queued. (A replica finalized by a pipeline's last packet is
// queued at once: the writer's Complete names it.) Of a group, the
// member last taken for the leader hears of it at once, the others
// through their actors' queues.
func (d *Blockd) reportReceived(b cairn.Block) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := cairn.Replica{Block: b, State: cairn.ReplicaFinalized}
	if len(d.actors) <= 1 {
		if err := d.metad.BlocksReceived(ctx, d.node.StorageID, []cairn.Replica{r}); err != nil {
			d.log.Warn("incremental block report failed; queued", zap.Stringer("block", b), zap.Error(err))
			d.received(r)
		}
		return
	}
	lead := d.leaderAddr()
	for _, a := range d.actors {
		if a.addr == lead {
			err := a.reg.BlocksReceived(ctx, d.node.StorageID, []cairn.Replica{r})
			if err == nil {
				continue
			}
			d.log.Warn("incremental block report failed; queued", zap.String("metad", a.addr), zap.Stringer("block", b), zap.Error(err))
		}
		queue(a, &a.incoming, r)
	}
}

// received queues a replica for the next incremental report to every
// metad.
func (d *Blockd) received(r cairn.Replica) {
	toEvery(d, func(a *actor) *[]cairn.Replica { return &a.incoming }, r)
}

// reportBad tells metad of replicas found bad; of a group, every member,
// at once and each within commitTimeout. The error is the leader's (or,
// with no leader known yet, the last one's when none took the report):
// the scanner reports again later.
func (d *Blockd) reportBad(ctx context.Context, bad []cairn.BadReplica) error {
	if len(d.actors) <= 1 {
		return d.metad.BadReplicasFound(ctx, d.node.StorageID, bad)
	}
	errs := make([]error, len(d.actors))
	var wg sync.WaitGroup
	for i, a := range d.actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, commitTimeout)
			defer cancel()
			errs[i] = a.reg.BadReplicasFound(ctx, d.node.StorageID, bad)
		}()
	}
	wg.Wait()
	lead := d.leaderAddr()
	var last error
	took := false
	for i, a := range d.actors {
		if a.addr == lead {
			return errs[i]
		}
		if errs[i] != nil {
			last = errs[i]
		} else {
			took = true
		}
	}
	if took {
		return nil
	}
	return last
}

// register registers with a's metad and sends it a full report, each
// call within its deadline (actor.go).
func (d *Blockd) register(ctx context.Context, a *actor) error {
	rctx, cancel := context.WithTimeout(ctx, d.callTimeout())
	reg, err := a.reg.Register(rctx, cairn.Registration{Node: d.node, NamespaceID: d.store.NamespaceID()})
	cancel()
	if err != nil {
		return err
	}
	ns := reg.NamespaceID
	if err := d.store.SetNamespaceID(ns); err != nil {
		return err
	}
	if reg.EncryptData && d.creds == nil {
		return cairn.E("blockd.register", cairn.KindInvalid, "", "metad encrypts block data but this blockd runs --insecure, without a certificate")
	}
	d.setEncrypt(reg.EncryptData)
	d.setKeys(a.addr, reg.Keys)
	report := d.store.Report()
	rctx, cancel = context.WithTimeout(ctx, d.reportTimeout())
	err = a.reg.BlockReport(rctx, d.node.StorageID, report)
	cancel()
	if err != nil {
		return err
	}
	d.log.Info("registered with metad", zap.String("metad", a.addr), zap.String("namespace_id", ns), zap.Int("replicas", len(report)), zap.Any("by_state", byState(report)))
	return nil
}

// byState counts a full report's replicas by state, for its log line.
func byState(report []cairn.Replica) map[string]int {
	n := map[string]int{}
	for _, r := range report {
		n[r.State.String()]++
	}
	return n
}

// heartbeat sends a's metad a heartbeat and carries out the commands of
// its reply: every metad's keys and requests to register again, the
// leader's others (actor.go).
func (d *Blockd) heartbeat(ctx context.Context, a *actor) error {
	capacity, used, remaining := d.usage()
	start := time.Now()
	hctx, cancel := context.WithTimeout(ctx, d.callTimeout())
	rep, err := a.reg.HeartbeatReply(hctx, cairn.Heartbeat{
		StorageID: d.node.StorageID, Capacity: capacity, Used: used, Remaining: remaining, Active: int(d.active.Load()),
		FailedVolumes: d.store.Failed(),
	})
	cancel()
	d.met.heartbeatTime.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	act := d.fromLeader(a, rep)
	for _, c := range rep.Commands {
		switch c.Kind {
		case cairn.CmdReregister:
			d.log.Info("metad asks to register again", zap.String("metad", a.addr))
			if err := d.registerLoop(ctx, a); err != nil {
				return err
			}
			continue
		case cairn.CmdKeys:
			d.setKeys(a.addr, c.Keys)
			continue
		}
		if !act {
			d.log.Debug("command of a metad that does not lead ignored", zap.String("metad", a.addr), zap.Int("kind", int(c.Kind)))
			continue
		}
		switch c.Kind {
		case cairn.CmdRecover:
			d.queueRecovery(c)
		case cairn.CmdTransfer:
			d.queueTransfer(c)
		case cairn.CmdVerify:
			// A client read these replicas bad: the scanner verifies them
			// first and reports those it finds bad (BadReplicasFound).
			for _, b := range c.Blocks {
				d.suspect(b)
			}
		case cairn.CmdDelete:
			var gone []cairn.Block
			for _, b := range c.Blocks {
				if err := d.store.Delete(b); err != nil {
					d.log.Error("delete replica", zap.Stringer("block", b), zap.Error(err))
					continue
				}
				d.met.deletes.Inc()
				if have, ok := d.store.Lookup(b.ID); ok && have.GenStamp > b.GenStamp {
					continue // a newer replica, which the command did not mean
				}
				gone = append(gone, b)
			}
			if len(gone) > 0 {
				d.log.Info("replicas deleted", zap.Int("count", len(gone)))
				toEvery(d, func(a *actor) *[]cairn.Block { return &a.deleted }, gone...)
			}
		}
	}
	return nil
}

// advertised turns a bound address into one other hosts can reach: an
// unspecified IP becomes the local address used to reach metad.
func advertised(bound net.Addr, metad string) string {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return bound.String()
	}
	if c, err := net.Dial("udp", metad); err == nil {
		defer c.Close()
		if u, ok := c.LocalAddr().(*net.UDPAddr); ok {
			return net.JoinHostPort(u.IP.String(), fmt.Sprint(tcp.Port))
		}
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}

// Main is the `cairn blockd` command.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "verify":
			return verifyMain(ctx, args[1:], stdout, stderr)
		case "compute-meta":
			return computeMetaMain(args[1:], stdout, stderr)
		}
	}
	fl := flag.NewFlagSet("cairn blockd", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("data", "", "data directories, comma-separated, one per disk (required)")
	reserved := bytesFlag(0)
	fl.Var(&reserved, "reserved", "`BYTES` kept free on each disk (e.g. 10G); a disk with no more free takes no new replicas")
	capacity := bytesFlag(0)
	fl.Var(&capacity, "capacity", "at most `BYTES` of replicas on this blockd, all disks together (e.g. 2T): the capacity metad places and balances by (0: the disks')")
	tolerated := fl.Int("failed-volumes-tolerated", 0, "data directories that may fail before the blockd stops")
	diskCheck := fl.Duration("disk-check", DefaultDiskCheck, "how often the data directories are checked")
	scanPeriod := fl.Duration("scan-period", DefaultScanPeriod, "the block scanner verifies every replica once in this period (0 disables it)")
	scanRate := bytesFlag(DefaultScanRate)
	fl.Var(&scanRate, "scan-rate", "`BYTES` per second the block scanner reads from each disk (e.g. 1M)")
	metad := fl.String("metad", "", "metad RPC address, or the members of a metad group, HOST1:9000,HOST2:9000,..., each of which gets the heartbeats and reports (default $CAIRN_METAD or 127.0.0.1:9000)")
	listen := fl.String("listen", ":9866", "block data stream address (port 0 picks a free port)")
	httpAddr := fl.String("http", ":9864", "HTTP status address (port 0 picks a free port; empty disables)")
	rack := fl.String("rack", "/default-rack", "rack of this blockd, for placement")
	hb := fl.Duration("heartbeat", cairn.DefaultHeartbeat, "heartbeat interval")
	blockReport := fl.Duration("block-report-interval", 6*time.Hour, "how often to send metad the full list of replicas (besides at start)")
	ackTimeout := fl.Duration("ack-timeout", DefaultAckTimeout, "a pipeline's next blockd silent this long while packets wait for its ack is dropped")
	maxConns := fl.Int("max-connections", DefaultMaxConns, "data connections served at once; more are refused as busy")
	headerTimeout := fl.Duration("header-timeout", DefaultHeaderTimeout, "a data connection's opening must arrive within this")
	idleTimeout := fl.Duration("idle-timeout", DefaultIdleTimeout, "each packet of a write must begin (an idle writer sends heartbeats) and, once begun, arrive within this, and each write to a peer finish within it; so must each read of a WebHDFS upload's body and each write of a download's")
	checkTokens := fl.Bool("block-tokens", true, "check the block access token of every data op (false only on a loopback --listen, to measure the check's cost)")
	addrFile := fl.String("addr-file", "", "write the bound addresses as JSON to this file once registered")
	join := fl.String("join", os.Getenv("CAIRN_JOIN"), "join the cluster with this token (cairn admin -join-token --role blockd) when the blockd has no certificate yet (default $CAIRN_JOIN)")
	certs := fl.String("certs", "", "the blockd's key and certificate (default FIRST-DATA-DIR/trust)")
	insecureFlag := fl.Bool("insecure", false, "talk to an --insecure metad in plain text (a dev cluster on loopback addresses only)")
	debug := fl.Bool("debug", false, "log at debug level")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn blockd --data DIR[,DIR2...] --metad HOST:9000[,HOST2:9000...] [--listen :9866] [--http :9864] [--rack /r1]\n"+
			"       cairn blockd verify --data DIR[,DIR2...] [--block ID]\n"+
			"       cairn blockd compute-meta --block FILE --out FILE [--id ID] [--genstamp GS] [--chunk-size N]\n\n"+
			"The block daemon: keeps replicas of blocks and streams them to clients.\n\n")
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if *dir == "" {
		return daemon.Usage(stderr, "cairn blockd", "--data DIR is required")
	}
	log := daemon.Logger(*debug).Named("blockd")
	defer func() { _ = log.Sync() }()
	dirs, err := splitDirs(*dir)
	if err != nil {
		return daemon.Usage(stderr, "cairn blockd", err.Error())
	}
	if *scanPeriod < 0 || scanRate <= 0 {
		return daemon.Usage(stderr, "cairn blockd", "--scan-period must be >= 0 and --scan-rate > 0")
	}
	if *scanPeriod == 0 {
		*scanPeriod = -1 // disabled
	}
	if !*checkTokens && !loopback(*listen) {
		return daemon.Usage(stderr, "cairn blockd", "--block-tokens=false needs a loopback --listen address (e.g. 127.0.0.1:0): without tokens anyone who reaches the port may read and change every replica")
	}
	cfg := Config{Dirs: dirs, MetadAddr: metadAddr(*metad), Rack: *rack, Heartbeat: *hb, BlockReport: *blockReport, AckTimeout: *ackTimeout, Logger: log,
		Reserved: int64(reserved), Capacity: int64(capacity), FailedTolerated: *tolerated, DiskCheck: *diskCheck, ScanPeriod: *scanPeriod, ScanRate: int64(scanRate),
		MaxConns: *maxConns, HeaderTimeout: *headerTimeout, IdleTimeout: *idleTimeout, SkipTokenCheck: !*checkTokens,
		Insecure: *insecureFlag, CertsDir: *certs, Join: *join}
	if *insecureFlag {
		for _, a := range []string{*listen, *httpAddr} {
			if a == "" {
				continue
			}
			if err := daemon.CheckInsecure("cairn blockd", a); err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
		}
	}
	if err := serve(ctx, cfg, *listen, *httpAddr, *addrFile); err != nil {
		log.Error("blockd stopped", zap.Error(err))
		fmt.Fprintf(stderr, "cairn blockd: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg Config, listen, httpAddr, addrFile string) error {
	ctx, stop := daemon.SignalContext(ctx)
	defer stop()
	d, err := New(cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	go d.store.Run(ctx, cfg.DiskCheck)
	dl, err := daemon.Listen("blockd data", listen)
	if err != nil {
		return err
	}
	defer dl.Close()
	d.node = cairn.Node{StorageID: d.store.StorageID(), DataAddr: advertised(dl.Addr(), d.actors[0].addr), Rack: cfg.Rack}
	errc := make(chan error, 3+len(d.actors))
	go func() { errc <- d.serveData(dl) }()
	if httpAddr != "" {
		hl, err := daemon.Listen("blockd HTTP", httpAddr)
		if err != nil {
			return err
		}
		hl = daemon.CapListener(hl, d.cfg.MaxConns, "blockd HTTP", d.log)
		var handler http.Handler = d.httpHandler()
		if d.creds != nil {
			handler = trust.RequireCert(handler)
			hl = tls.NewListener(hl, trust.ServerConfig(d.creds, nil))
		}
		// WebHDFS authenticates by itself (webhdfs.go).
		handler = webhdfs.Route(d.webhdfsHandler(nil), handler)
		hs := webhdfs.Limit(&http.Server{Handler: handler})
		go func() {
			if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		defer hs.Close()
		d.node.HTTPAddr = advertised(hl.Addr(), d.actors[0].addr)
	}
	d.log.Info("blockd serving", zap.String("data", d.node.DataAddr), zap.String("http", d.node.HTTPAddr),
		zap.String("storage_id", d.node.StorageID), zap.Strings("dirs", d.store.Dirs()), zap.Strings("failed_dirs", d.store.Failed()))
	// Each metad has its own actor; the blockd serves once one of them
	// has registered.
	registered := make(chan struct{})
	var once sync.Once
	for _, a := range d.actors {
		go func(a *actor) {
			errc <- d.runActor(ctx, a, func() { once.Do(func() { close(registered) }) })
		}(a)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	case <-registered:
	}
	if err := daemon.WriteAddrFile(addrFile, map[string]string{"data": d.node.DataAddr, "http": d.node.HTTPAddr, "storage_id": d.node.StorageID}); err != nil {
		return err
	}
	if d.creds != nil {
		go trust.Renew(ctx, d.creds, d.cfg.CertsDir, rpc.NewTrustClient(d.conn).Fetch, d.log.Named("trust"))
	}
	go d.runRecoveries(ctx, recoveryWorkers)
	go d.runTransfers(ctx, d.transfers, transferWorkers)
	go d.runTransfers(ctx, d.moves, moveWorkers)
	if d.scan != nil {
		go d.scan.Run(ctx)
	}
	select {
	case <-ctx.Done():
		d.log.Info("blockd stopping")
		return nil
	case err := <-d.store.Fatal():
		return err
	case err := <-errc:
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}

// httpHandler serves the status page (package webui) and /healthz.
func (d *Blockd) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", webui.BlockdHandler(uiSource{d: d, node: d.node, started: time.Now()}, d.log.Named("webui")))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("/metrics", d.met.handler())
	return mux
}

// loopback reports whether listen names a loopback IP address.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func metadAddr(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return daemon.MetadAddr()
}

// usage is the disks' capacity, used and remaining bytes (Volumes.Usage),
// within --capacity when it is set.
func (d *Blockd) usage() (capacity, used, remaining int64) {
	capacity, used, remaining = d.store.Usage()
	if c := d.cfg.Capacity; c > 0 && c < capacity {
		capacity = c
		remaining = min(remaining, max(0, c-used))
	}
	return capacity, used, remaining
}
