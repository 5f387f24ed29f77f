package metad

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"cairn"
	"cairn/blocktoken"
	"cairn/internal/daemon"
	"cairn/rpc"
	"cairn/trust"
	"cairn/webhdfs"
	"cairn/webui"
)

// Main is the `cairn metad` command, and `cairn metad check`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "check" {
		return checkMain(args[1:], stdout, stderr)
	}
	fl := flag.NewFlagSet("cairn metad", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("data", "", "data directory (required)")
	format := fl.Bool("format", false, "format the data directory with a fresh namespace ID, then serve")
	force := fl.Bool("force", false, "with --format or --restore: replace an existing namespace")
	restore := fl.String("restore", "", "make the data directory a copy of this checkpoint (see cairn admin -checkpoint), then serve")
	listen := fl.String("listen", ":9000", "RPC address (port 0 picks a free port)")
	httpAddr := fl.String("http", ":9870", "HTTP address for status (port 0 picks a free port; empty disables)")
	repl := fl.Int("replication", cairn.DefaultReplication, "default replication factor")
	blockSize := fl.Int64("block-size", cairn.DefaultBlockSize, "default block size in bytes")
	deadAfter := fl.Duration("dead-after", cairn.DefaultDeadAfter, "a blockd silent this long is dead")
	heartbeat := fl.Duration("heartbeat", cairn.DefaultHeartbeat, "the blockds' heartbeat interval, and how often replication is checked")
	staleAfter := fl.Duration("stale-after", cairn.DefaultStaleAfter, "a blockd silent this long is stale: no new replica is placed on it, and it is read from last")
	perms := fl.Bool("permissions", true, "check owners, groups and modes (false: record them only)")
	supergroup := fl.String("supergroup", "supergroup", "members of this group are superusers, as is the user running metad")
	soft := fl.Duration("lease-soft-limit", DefaultLeaseSoft, "a writer silent this long may have its file taken over by another")
	hard := fl.Duration("lease-hard-limit", DefaultLeaseHard, "a writer silent this long has its file recovered and closed by metad")
	cache := fl.Int64("cache-size", DefaultCacheSize, "bytes of the store's block cache (metad's memory beyond this does not grow with the namespace)")
	ckptDir := fl.String("checkpoint-dir", "", "the directory checkpoints go under, asked for (cairn admin -checkpoint NAME) or periodic (default DATA/checkpoints)")
	ckptEvery := fl.Duration("checkpoint-interval", 0, "write a checkpoint into --checkpoint-dir this often (0: no periodic checkpoints)")
	ckptKeep := fl.Int("checkpoint-keep", DefaultCheckpointKeep, "how many periodic checkpoints to keep")
	retrySize := fl.Int("retry-cache-size", DefaultRetryCacheSize, "answers of mutating calls kept to answer a call made again after its answer was lost")
	retryExpiry := fl.Duration("retry-cache-expiry", DefaultRetryCacheExpiry, "how long the retry cache keeps an answer")
	smThreshold := fl.Float64("safemode-threshold-pct", DefaultSafeModeThreshold, "at start, stay in safe mode (read-only) until the blockds have reported this share of the blocks (0: no safe mode at start; above 1: until `cairn admin -safemode leave`)")
	smExtension := fl.Duration("safemode-extension", DefaultSafeModeExtension, "stay in safe mode this long after the threshold is reached")
	tokenLife := fl.Duration("block-token-lifetime", blocktoken.DefaultLifetime, "how long a block access token is good for")
	keyInterval := fl.Duration("block-key-interval", blocktoken.DefaultKeyInterval, "how long one key signs block access tokens before the next takes over")
	topoScript := fl.String("topology-script", "", "a program given blockds' (and clients') IP addresses as arguments that prints a rack path (/dc/rack) for each; without it each blockd's --rack counts")
	maxConns := fl.Int("max-connections", daemon.DefaultMaxConns, "connections each port (RPC, HTTP) serves at once; more are closed at once, with a WARN line")
	addrFile := fl.String("addr-file", "", "write the bound addresses as JSON to this file once serving")
	insecureFlag := fl.Bool("insecure", false, "serve without TLS and believe every client (a dev cluster on loopback addresses only)")
	certTTL := fl.Duration("cert-ttl", trust.DefaultCertTTL, "lifetime of the certificates metad signs; holders renew them at two thirds of it")
	dtRenew := fl.Duration("delegation-renew-interval", trust.DefaultDelegationRenewInterval, "how long a delegation token works after it is issued or renewed")
	dtMax := fl.Duration("delegation-max-lifetime", trust.DefaultDelegationMaxLifetime, "how long a delegation token works at most, however often it is renewed")
	encrypt := fl.Bool("encrypt-data", DefaultEncryptData, "encrypt block data: blockds' data ports take mutual TLS 1.3 only (needs the cluster CA, not --insecure)")
	maxStreams := fl.Int("replication-max-streams", DefaultMaxStreams, "copies a blockd is the source of at a time (HDFS's dfs.namenode.replication.max-streams)")
	hardLimit := fl.Int("replication-max-streams-hard-limit", DefaultStreamsHardLimit, "copies a blockd is the source of at a time for blocks with one replica left")
	maxMoves := fl.Int("balancer-max-concurrent-moves", DefaultMaxMoves, "balancer moves a blockd is the source of at a time, apart from its replication streams (HDFS's dfs.datanode.balance.max.concurrent.moves)")
	pendingTimeout := fl.Duration("replication-pending-timeout", DefaultPendingTimeout, "a copy not reported done this long after it was sent is scheduled again")
	invalidateLimit := fl.Int("block-invalidate-limit", DefaultInvalidateLimit, "replicas one heartbeat reply asks a blockd to delete; the rest wait for the next")
	hostsExclude := fl.String("hosts-exclude", "", "a file naming blockds to decommission, one a line (host, HOST:PORT data address or storage ID); read again at `cairn admin -refreshNodes`")
	trashMin := fl.Float64("trash-interval", 0, "minutes a path removed by `cairn dfs -rm` stays in the trash, and how often the emptier runs (HDFS's fs.trash.interval); 0: trash is off")
	maintMin := fl.Int("maintenance-min-replication", DefaultMaintenanceMinReplication, "live replicas in service a block keeps while blockds holding it are in maintenance (`cairn admin -maintenance`); HDFS's dfs.namenode.maintenance.replication.min")
	balancerLease := fl.Duration("balancer-lease", DefaultBalancerLease, "a running balancer silent this long (killed, cut off) no longer keeps another from starting")
	peers := fl.String("peers", "", "make this metad a member of a group replicated through Raft: the members' RPC addresses, HOST:PORT,... (this one among them); each member's Raft transport listens on its RPC port + 1. With --format, the group starts with these members")
	self := fl.String("self", "", "with --peers: this member's address as listed there (default: the one matching --listen)")
	join := fl.String("join", "", "with --peers, on a new member: ask the group at these addresses (HOST:PORT,...) to add this metad; instead of cairn admin -add-metad")
	joinToken := fl.String("join-token", "", "with --join, on a new member's empty data directory: a join token of role metad naming this member (cairn admin -join-token --role metad --name HOST:PORT), with which it gets the cluster CA and VERSION from the group")
	convert := fl.Bool("convert", false, "with --peers: make this single metad, with its namespace, the first member of a new group, alone; the others then join it (--join). Once; ignored by a member")
	election := fl.Duration("election-timeout", DefaultElectionTimeout, "with --peers: a follower that hears no leader this long stands for election")
	snapEvery := fl.Uint64("snapshot-threshold", 0, "with --peers: entries between two snapshots of the store (0: 8192)")
	snapCheck := fl.Duration("snapshot-interval", 0, "with --peers: how often to look whether a snapshot is due (0: 2m)")
	trailing := fl.Uint64("trailing-logs", 0, "with --peers: entries kept behind a snapshot, so a member that lags less catches up from the log (0: 10240)")
	debug := fl.Bool("debug", false, "log at debug level")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn metad --data DIR [--format [--force] | --restore CKPT [--force]] [--listen :9000] [--http :9870]\n"+
			"       cairn metad --data DIR --peers HOST:PORT,... [--format | --convert | --join HOST:PORT,... [--join-token TOKEN]]\n"+
			"       cairn metad check --data DIR\n\nThe metadata daemon: keeps the namespace in Pebble and tells clients where blocks live.\n"+
			"'check' checks a stopped metad's data directory, or a checkpoint, offline.\n\n")
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	switch {
	case *dir == "":
		return daemon.Usage(stderr, "cairn metad", "--data DIR is required")
	case *format && *restore != "":
		return daemon.Usage(stderr, "cairn metad", "--format and --restore exclude each other")
	case *smThreshold < 0 || *smExtension < 0:
		return daemon.Usage(stderr, "cairn metad", "--safemode-threshold-pct and --safemode-extension cannot be negative")
	case *maxStreams < 1 || *hardLimit < *maxStreams:
		return daemon.Usage(stderr, "cairn metad", "--replication-max-streams must be at least 1 and at most --replication-max-streams-hard-limit")
	case *hard < *soft:
		return daemon.Usage(stderr, "cairn metad", "--lease-hard-limit is shorter than --lease-soft-limit")
	case *maxMoves < 1:
		return daemon.Usage(stderr, "cairn metad", "--balancer-max-concurrent-moves must be at least 1")
	case *maintMin < 1:
		return daemon.Usage(stderr, "cairn metad", "--maintenance-min-replication must be at least 1")
	case *balancerLease <= 0:
		return daemon.Usage(stderr, "cairn metad", "--balancer-lease must be positive")
	}
	log := daemon.Logger(*debug).Named("metad")
	defer func() { _ = log.Sync() }()
	if *restore != "" {
		if err := Restore(*restore, *dir, *force); err != nil {
			log.Error("restore failed", zap.Error(err))
			fmt.Fprintf(stderr, "cairn metad: %v\n", err)
			return 1
		}
		log.Info("restored", zap.String("checkpoint", *restore), zap.String("dir", *dir))
	}
	if *ckptDir == "" {
		*ckptDir = filepath.Join(*dir, "checkpoints")
	}
	periodic := ""
	if *ckptEvery > 0 {
		periodic = *ckptDir
	}
	if err := validBlockSize(*blockSize); err != nil {
		return daemon.Usage(stderr, "cairn metad", "--block-size: "+err.Error())
	}
	var raftCfg *RaftConfig
	if *peers != "" {
		ps, err := ParsePeers(*peers)
		if err != nil {
			return daemon.Usage(stderr, "cairn metad", "--peers: "+err.Error())
		}
		me := *self
		if me == "" {
			if me, err = SelfOf(ps, *listen, nil); err != nil {
				return daemon.Usage(stderr, "cairn metad", err.Error())
			}
		} else if !slices.Contains(ps, me) {
			return daemon.Usage(stderr, "cairn metad", fmt.Sprintf("--self %s is not among --peers", me))
		}
		if *election < 10*time.Millisecond {
			return daemon.Usage(stderr, "cairn metad", "--election-timeout must be at least 10ms")
		}
		if *restore != "" {
			return daemon.Usage(stderr, "cairn metad", "--restore and --peers exclude each other: restore a single metad, then start a group from it")
		}
		if *join != "" && *format {
			return daemon.Usage(stderr, "cairn metad", "--join is for a new member of a group formatted elsewhere: it excludes --format")
		}
		if *convert && (*format || *join != "") {
			return daemon.Usage(stderr, "cairn metad", "--convert keeps this metad's namespace and starts a group with it: it excludes --format and --join")
		}
		if *joinToken != "" && *join == "" {
			return daemon.Usage(stderr, "cairn metad", "--join-token goes with --join: the members to get the cluster's keys from")
		}
		if *joinToken != "" && *insecureFlag {
			return daemon.Usage(stderr, "cairn metad", "--join-token needs the cluster CA: an --insecure member gets VERSION copied from another member instead")
		}
		raftCfg = &RaftConfig{Self: me, Peers: ps, Bootstrap: *format || *convert, Convert: *convert, Listen: *listen, ElectionTimeout: *election, Join: *join,
			SnapshotThreshold: *snapEvery, SnapshotInterval: *snapCheck, TrailingLogs: *trailing}
	} else if explicitlySet(fl, "self") || *join != "" || *joinToken != "" || *convert || explicitlySet(fl, "election-timeout") || *snapEvery > 0 || *snapCheck > 0 || *trailing > 0 {
		return daemon.Usage(stderr, "cairn metad", "--self, --join, --join-token, --convert, --election-timeout, --snapshot-threshold, --snapshot-interval and --trailing-logs go with --peers")
	}
	if *trashMin < 0 {
		return daemon.Usage(stderr, "cairn metad", "--trash-interval must be 0 (off) or a positive number of minutes")
	}
	if *insecureFlag && *encrypt {
		if explicitlySet(fl, "encrypt-data") {
			return daemon.Usage(stderr, "cairn metad", "--encrypt-data needs the cluster CA: it cannot go with --insecure")
		}
		*encrypt = false
	}
	if *insecureFlag {
		for _, a := range []string{*listen, *httpAddr} {
			if a == "" {
				continue
			}
			if err := daemon.CheckInsecure("cairn metad", a); err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
		}
	}
	if *joinToken != "" {
		if _, err := ParsePeers(*join); err != nil {
			return daemon.Usage(stderr, "cairn metad", "--join: "+err.Error())
		}
		fctx, cancel := context.WithTimeout(ctx, joinKitTimeout)
		err := fetchMemberKit(fctx, log, *dir, strings.Split(joinTargets(*raftCfg), ","), raftCfg.Self, *joinToken)
		cancel()
		if err != nil {
			log.Error("join the metad group", zap.Error(err))
			fmt.Fprintf(stderr, "cairn metad: %v\n", err)
			return 1
		}
	}
	if err := serve(ctx, log, *dir, *format, *force, *listen, *httpAddr, *addrFile, Config{
		Dir: *dir, Replication: *repl, BlockSize: *blockSize, DeadAfter: *deadAfter, StaleAfter: *staleAfter, Heartbeat: *heartbeat, Logger: log,
		NoPermissions: !*perms, Supergroup: *supergroup, LeaseSoft: *soft, LeaseHard: *hard, CacheSize: *cache,
		CheckpointDir: periodic, CheckpointInterval: *ckptEvery, CheckpointKeep: *ckptKeep, CheckpointRoot: *ckptDir,
		RetryCacheSize: *retrySize, RetryCacheExpiry: *retryExpiry, CertTTL: *certTTL, EncryptData: *encrypt,
		TokenLifetime: *tokenLife, KeyInterval: *keyInterval,
		DelegationRenewInterval: *dtRenew, DelegationMaxLifetime: *dtMax,
		SafeModeThreshold: *smThreshold, SafeModeExtension: *smExtension, MaxConns: *maxConns,
		TopologyScript: *topoScript,
		MaxStreams:     *maxStreams, StreamsHardLimit: *hardLimit, MaxMoves: *maxMoves, PendingTimeout: *pendingTimeout, InvalidateLimit: *invalidateLimit,
		HostsExclude: *hostsExclude, MaintenanceMinReplication: *maintMin, BalancerLease: *balancerLease,
		TrashInterval: time.Duration(*trashMin * float64(time.Minute)),
		Raft:          raftCfg,
	}, *insecureFlag); err != nil {
		log.Error("metad stopped", zap.Error(err))
		fmt.Fprintf(stderr, "cairn metad: %v\n", err)
		return 1
	}
	return 0
}

// checkMain is `cairn metad check --data DIR`: exit 0 clean, 1 corrupt,
// 2 when the store cannot be checked.
func checkMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn metad check", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("data", "", "data directory of a stopped metad, or a checkpoint (required)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn metad check --data DIR\n\nChecks a metad store offline; exit 0 when clean, 1 when corrupt.\n\n")
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if *dir == "" {
		return daemon.Usage(stderr, "cairn metad check", "--data DIR is required")
	}
	r, err := Check(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "cairn metad check: %v\n", err)
		return 2
	}
	r.Write(stdout)
	if !r.Clean() {
		return 1
	}
	return 0
}

func serve(ctx context.Context, log *zap.Logger, dir string, format, force bool, listen, httpAddr, addrFile string, cfg Config, insecure bool) error {
	if format {
		id, err := Format(dir, force)
		if err != nil {
			return err
		}
		log.Info("formatted", zap.String("dir", dir), zap.String("namespace_id", id))
	}
	if cfg.Raft != nil && !insecure && !format {
		if _, err := os.Stat(filepath.Join(dir, trust.CADir)); err != nil {
			return fmt.Errorf("a member of a metad group shares the cluster CA: start a new member with --join LIST --join-token TOKEN (cairn admin -join-token --role metad --name %s), or copy %s and VERSION from a member's data directory: %w", cfg.Raft.Self, trust.CADir, err)
		}
	}
	start := time.Now()
	m, err := Open(cfg)
	if err != nil {
		return err
	}
	bg, stopBackground := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stopBackground()
		wg.Wait()
		if err := m.Close(); err != nil {
			log.Error("close store", zap.Error(err))
		}
	}()
	srvOpts := []grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20), grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
		grpc.KeepaliveEnforcementPolicy(pingPolicy)}
	var httpTLS *tls.Config
	if !insecure {
		if err := m.openTrust(); err != nil {
			return err
		}
		srvOpts = append(srvOpts, grpc.Creds(credentials.NewTLS(trust.ServerConfig(m.self, m.revoked))),
			grpc.KeepaliveParams(connectionAge(m.cfg.CertTTL)))
		httpTLS = trust.ServerConfig(m.self, m.revoked)
		wg.Add(1)
		go func() { defer wg.Done(); m.runSelfRenewal(bg) }()
	}
	if cfg.Raft != nil {
		rc := *cfg.Raft
		if !insecure {
			rc.Server, rc.Client = RaftTLS(m.self, m.revoked)
		}
		if err := m.startReplica(rc); err != nil {
			return err
		}
		defer m.rep.stop() // before the store closes (deferred above)
		if rc.Join != "" {
			wg.Add(1)
			go func() { defer wg.Done(); m.rep.join(bg, joinTargets(rc), m.self) }()
		}
	}
	wg.Add(4)
	go func() { defer wg.Done(); m.runTrashEmptier(bg) }()
	go func() { defer wg.Done(); m.runLeaseMonitor(bg) }()
	go func() { defer wg.Done(); m.runReplicationMonitor(bg, m.cfg.Heartbeat) }()
	go func() { defer wg.Done(); m.runCheckpoints(bg) }()
	lis, err := daemon.Listen("metad RPC", listen)
	if err != nil {
		return err
	}
	lis = daemon.CapListener(lis, m.cfg.MaxConns, "metad RPC", log)
	auth := &rpc.Auth{Insecure: insecure, Groups: m.hostGroups, Revoked: m.revoked, Delegation: m.delegationPeer}
	srv := grpc.NewServer(append(srvOpts, grpc.ChainUnaryInterceptor(m.stats.observeRPCs, auth.Unary, markRemote, m.leaderGate, m.safeModeGate, m.retries.intercept), grpc.ChainStreamInterceptor(m.stats.observeStreams, auth.Stream))...)
	rpc.RegisterNamespace(srv, m)
	rpc.RegisterRegistry(srv, m)
	rpc.RegisterTrust(srv, m)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	defer srv.Stop()

	addrs := map[string]string{"rpc": lis.Addr().String(), "namespace_id": m.namespaceID}
	if m.ca != nil {
		addrs["ca_fingerprint"] = m.ca.Fingerprint()
	}
	if httpAddr != "" {
		hl, err := daemon.Listen("metad HTTP", httpAddr)
		if err != nil {
			return err
		}
		hl = daemon.CapListener(hl, m.cfg.MaxConns, "metad HTTP", log)
		hs := webhdfs.Limit(&http.Server{Handler: m.httpHandler(httpTLS != nil, start), TLSConfig: httpTLS})
		if httpTLS != nil {
			hl = tls.NewListener(hl, httpTLS)
		}
		go func() {
			if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		defer hs.Close()
		addrs["http"] = hl.Addr().String()
		m.httpAddr.Store(addrs["http"])
	}
	log.Info("metad serving", zap.String("rpc", addrs["rpc"]), zap.String("http", addrs["http"]),
		zap.String("namespace_id", m.namespaceID), zap.String("dir", dir), zap.Duration("open_took", time.Since(start)),
		zap.Bool("permissions", !cfg.NoPermissions), zap.String("superuser", m.superuser), zap.Bool("tls", !insecure))
	if err := daemon.WriteAddrFile(addrFile, addrs); err != nil {
		return err
	}
	ctx, stop := daemon.SignalContext(ctx)
	defer stop()
	select {
	case <-ctx.Done():
		log.Info("metad stopping")
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return nil
	case err := <-errc:
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}

// httpHandler serves the web UI (package webui; started is when metad
// started), /metrics, /healthz, /whoami and pprof; when secure, only to
// holders of the cluster's credentials (pprof to admins).
func (m *Metad) httpHandler(secure bool, started time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", webui.New(uiSource{m: m, started: started}, m.log.Named("webui")))
	mux.Handle("/metrics", m.metricsHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	api := m.webhdfsHandler(secure)
	// Who the request is authenticated as: a certificate's peer, a UI
	// session's admin, or the user a delegation token names.
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		p, ok := trust.PeerFrom(r.Context())
		if !ok {
			_, _ = io.WriteString(w, "anonymous (insecure)\n")
			return
		}
		_, _ = io.WriteString(w, p.String()+"\n")
	})
	// Go's profiler, for the figures of docs/PERFORMANCE.md and for
	// operators: go tool pprof http://HOST:9870/debug/pprof/profile.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	if secure {
		// A sign-in link is opened without a certificate or a session:
		// its one-time token is the credential (uilink.go).
		outer := http.NewServeMux()
		outer.HandleFunc(trust.UILoginPath, m.uiLogin)
		outer.Handle("/", trust.RequireCredential(mux, m.uiSession, m.delegationPeer))
		return m.holdStore(webhdfs.Route(m.webhdfsAuth(api), outer))
	}
	return m.holdStore(webhdfs.Route(api, mux))
}

// holdStore serves h with the store held against a snapshot's restore on
// a member of a group (Metad.serving), but for the profiler, whose
// requests last long and read no store.
func (m *Metad) holdStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.rep != nil && !strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			m.serving.RLock()
			defer m.serving.RUnlock()
		}
		h.ServeHTTP(w, r)
	})
}

// connectionAge bounds how long a client's connection lives, so that a
// holder's renewed certificate is presented in time: every call is
// checked against the certificate of its connection's handshake (rpc.Auth),
// and a holder renews two thirds into its certificate's life, so a
// connection must end within the last third. gRPC sends GOAWAY at the
// age (give or take a tenth), lets calls in flight finish within the
// grace, and the client connects again with its current certificate.
func connectionAge(certTTL time.Duration) keepalive.ServerParameters {
	age := min(certTTL/4, 24*time.Hour)
	return keepalive.ServerParameters{MaxConnectionAge: age, MaxConnectionAgeGrace: min(age, time.Minute)}
}

// pingPolicy lets clients ping metad's connections to find a dead one
// (blockd's connections ping when idle for 10 s, blockd/actor.go
// metadDialOptions), with no call in flight too. gRPC's default allows a
// ping every 5 minutes only, with a call in flight, and answers more
// frequent ones with GOAWAY (too_many_pings), ending the connection.
var pingPolicy = keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}

// explicitlySet reports whether the command line named flag name.
func explicitlySet(fl *flag.FlagSet, name string) bool {
	set := false
	fl.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
