// Package metad is the metadata daemon: the namespace in Pebble, the block
// map rebuilt from blockds' reports, blockd liveness and block placement.
// It serves the Namespace service to clients and the Registry service to
// blockds over gRPC, and an HTTP status page.
package metad

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"cairn"
	"cairn/blocktoken"
	"cairn/internal/versionfile"
	"cairn/trust"
)

// Clock is metad's only source of time, so liveness and leases can be
// tested without sleeping.
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Config configures a Metad.
type Config struct {
	Dir         string // data directory, formatted
	Replication int
	BlockSize   int64
	DeadAfter   time.Duration
	// StaleAfter: a blockd silent this long is stale: no new replica is
	// placed on it and it is read from last (default DefaultStaleAfter).
	StaleAfter time.Duration
	Heartbeat  time.Duration // blockds' interval, and the replication monitor's
	Clock      Clock
	Logger     *zap.Logger

	// NoPermissions turns permission checking off (--permissions=false):
	// owners and modes are still recorded.
	NoPermissions bool
	// Supergroup names the group whose members are superusers, beside
	// the user running metad (default "supergroup", as in HDFS).
	Supergroup string
	// LeaseSoft is how long a writer may go silent before another client
	// may take its file over; LeaseHard, before metad recovers and closes
	// the file itself.
	LeaseSoft, LeaseHard time.Duration
	// CacheSize bounds the store's block cache, in bytes.
	CacheSize int64
	// CheckpointDir, when set, receives a checkpoint every
	// CheckpointInterval; the newest CheckpointKeep are kept.
	CheckpointDir      string
	CheckpointInterval time.Duration
	CheckpointKeep     int
	// RetryCacheSize bounds how many answers the retry cache keeps, each
	// for RetryCacheExpiry (retrycache.go).
	RetryCacheSize   int
	RetryCacheExpiry time.Duration
	// SafeModeThreshold: at start metad stays in safe mode until the
	// blockds have reported a good replica of this share of its blocks,
	// and then SafeModeExtension more (safemode.go). 0, the zero Config's,
	// starts out of safe mode; the command's default is
	// DefaultSafeModeThreshold.
	SafeModeThreshold float64
	SafeModeExtension time.Duration
	// MaxConns caps the connections each of metad's ports serves at once
	// (daemon.CapListener; zero takes daemon.DefaultMaxConns).
	MaxConns int
	// TokenLifetime is how long a block access token is good for, and
	// KeyInterval how long one key signs them (package blocktoken; zero:
	// its defaults).
	TokenLifetime time.Duration
	KeyInterval   time.Duration
	// TopologyScript, when set, names each blockd's rack (and a client's)
	// from its IP address, as HDFS's net.topology.script.file.name;
	// otherwise each blockd's own --rack does (topology.go).
	TopologyScript string
	// CheckpointRoot is the one directory a checkpoint asked for over RPC
	// may be written under (default DIR/checkpoints).
	CheckpointRoot string
	// CertTTL is the lifetime of the certificates metad signs (default
	// trust.DefaultCertTTL); holders renew them at two thirds of it.
	CertTTL time.Duration
	// DelegationRenewInterval is how long a delegation token works after
	// it is issued or renewed; DelegationMaxLifetime bounds its life
	// (defaults trust.DefaultDelegationRenewInterval and
	// DefaultDelegationMaxLifetime, HDFS's delegation.token.renew-interval
	// and max-lifetime).
	DelegationRenewInterval time.Duration
	DelegationMaxLifetime   time.Duration

	// storeFS holds the store instead of the disk (tests: a crashable
	// memory file system).
	storeFS vfs.FS
	// MaxStreams is how many copies a blockd is the source of at a time
	// (HDFS's dfs.namenode.replication.max-streams), StreamsHardLimit for
	// blocks with one replica left; PendingTimeout, how long a copy sent
	// may go unreported before its block is scheduled again;
	// InvalidateLimit, how many deletions one heartbeat reply carries
	// (replqueue.go; zero: the defaults).
	MaxStreams, StreamsHardLimit int
	// MaxMoves is how many balancer moves a blockd is the source of at a
	// time, apart from its streams (HDFS's
	// dfs.datanode.balance.max.concurrent.moves; zero: DefaultMaxMoves).
	MaxMoves        int
	PendingTimeout  time.Duration
	InvalidateLimit int
	// HostsExclude names the exclude file: the blockds it names are
	// decommissioned (decommission.go), read at start and at RefreshNodes.
	HostsExclude string
	// MaintenanceMinReplication is how many live replicas in service a
	// block keeps while blockds holding it are in maintenance (HDFS's
	// dfs.namenode.maintenance.replication.min; maintenance.go; zero: 1).
	MaintenanceMinReplication int
	// BalancerLease is how long the balancer metad serves may be silent
	// before another may run (balancerlock.go; zero: DefaultBalancerLease).
	BalancerLease time.Duration
	// Raft makes this metad a member of a group (raftnode.go); nil: a
	// single metad. serve starts the member once the certificates are
	// loaded.
	Raft *RaftConfig
	// EncryptData makes blockds' data ports take mutual TLS only (HDFS's
	// dfs.encrypt.data.transfer): blockds hear it at registration,
	// clients from DataTransfer.
	EncryptData bool
	// TrashInterval is how long deleted paths stay in the trash (HDFS's
	// fs.trash.interval); 0 turns the trash off. The emptier runs every
	// interval (trash.go).
	TrashInterval time.Duration
}

// DefaultEncryptData is --encrypt-data's default, chosen from the cost
// measured in docs/PERFORMANCE.md ("Encrypted block data").
const DefaultEncryptData = false

// Default lease limits, HDFS's.
const (
	DefaultLeaseSoft = 60 * time.Second
	DefaultLeaseHard = time.Hour
)

// Metad is the metadata service: it implements cairn.Namespace and
// cairn.Registry.
type Metad struct {
	cfg         Config
	st          *store
	blocks      *blockMap
	doubt       doubtful // replicas recorded unjudged while not leading (doubtful.go)
	nodes       *nodeSet
	pipelines   *pipelines // where blocks being written are
	repl        *replQueue // copies the replication monitor hands out
	balancer    balancerLock
	recoveries  *recoveries // block recoveries under way
	safe        *safeMode
	topo        *topology // racks from the topology script
	clock       Clock
	log         *zap.Logger
	namespaceID string
	leases      *leaseTable
	version     map[string]string // the data directory's VERSION
	superuser   string            // the user running metad
	tokens      *blocktoken.Manager

	ca         *trust.CA      // nil when --insecure
	self       *trust.Holder  // metad's own certificate
	revoked    *trust.Revoked // checked at each handshake
	groupCache sync.Map       // user name → groupEntry (certs.go)
	// redirectTokens: user name → the delegation token metad's WebHDFS
	// redirects carry for that user (webhdfs.go), reused while it works.
	redirectTokens sync.Map
	stats          stats        // counters served at /metrics
	health         replHealth   // the last replication round's tally, served at /metrics
	httpAddr       atomic.Value // string: the HTTP port's bound address, for sign-in links (uilink.go)

	// replChanged: a file's replication factor changed (SetAttr), so the
	// monitor's next round checks every block against its own file's
	// factor, not only those off the default (replication.go).
	replChanged atomic.Bool

	// rep is this metad's membership of a group (raftnode.go), nil for
	// a single metad. serving is held (read) by every call and round of
	// background work that reads the store, and (write) by the restore
	// of a snapshot, which replaces the store.
	rep     *replica
	serving sync.RWMutex

	// retries is the retry cache of mutating calls (retrycache.go), which
	// a group's members fill from the log too (raftcalls.go).
	retries *retryCache
	// grouped: a member of a metad group (Config.Raft set).
	grouped bool
	// servingSince is when this metad began to serve writers, in its
	// clock's UnixNano: a single metad's start, a group member's latest
	// takeover (becomeLeader). Blockds it has not heard from since may
	// still be on their way (awaitingBlockds).
	servingSince atomic.Int64
}

var pebbleLog = zap.NewNop()

const storeDir = "pebble"

// Format makes dir a new, empty metad data directory with a fresh namespace
// ID. It refuses a directory already formatted unless force is set, in which
// case the old namespace is destroyed.
func Format(dir string, force bool) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("format %s: %w", dir, err)
	}
	if old, err := versionfile.Read(dir); err == nil {
		if !force {
			return "", fmt.Errorf("format %s: already formatted for namespace %s; add --force to destroy it and start empty", dir, old["namespaceID"])
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("format %s: %w", dir, err)
	}
	// VERSION goes last: a directory without it is not formatted, so a
	// format cut short is simply done again.
	if err := os.Remove(filepath.Join(dir, versionfile.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("format %s: %w", dir, err)
	}
	// The store, and a group member's Raft log and snapshots: a new
	// namespace starts a new group.
	for _, d := range []string{storeDir, raftDir, storeIncoming, storeRestored} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return "", fmt.Errorf("format %s: %w", dir, err)
		}
	}
	st, err := openStore(filepath.Join(dir, storeDir), true, 1<<20, nil)
	if err != nil {
		return "", fmt.Errorf("format %s: %w", dir, err)
	}
	if err := st.close(); err != nil {
		return "", fmt.Errorf("format %s: %w", dir, err)
	}
	id := versionfile.NewID("ns-")
	// A new namespace gets a new cluster CA: certificates of the old one
	// are no longer good.
	if _, err := trust.CreateCA(filepath.Join(dir, trust.CADir), id); err != nil {
		return "", fmt.Errorf("format %s: %w", dir, err)
	}
	err = versionfile.Write(dir, map[string]string{
		"namespaceID":   id,
		"cTime":         strconv.FormatInt(time.Now().Unix(), 10),
		"layoutVersion": strconv.Itoa(LayoutVersion),
		"storageType":   "METAD",
	})
	return id, err
}

// Open opens a formatted data directory.
func Open(cfg Config) (*Metad, error) {
	v, err := versionfile.Read(cfg.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a metad data directory (no VERSION): start once with --format", cfg.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(cfg.Dir, versionfile.Name), err)
	}
	if v["namespaceID"] == "" {
		return nil, fmt.Errorf("%s: VERSION has no namespaceID", cfg.Dir)
	}
	if lv, _ := strconv.Atoi(v["layoutVersion"]); lv > LayoutVersion {
		return nil, fmt.Errorf("%s has layout version %d, newer than this metad's %d: run a newer cairn", cfg.Dir, lv, LayoutVersion)
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Replication <= 0 {
		cfg.Replication = cairn.DefaultReplication
	}
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = cairn.DefaultBlockSize
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = cairn.DefaultDeadAfter
	}
	if cfg.BalancerLease <= 0 {
		cfg.BalancerLease = DefaultBalancerLease
	}
	if cfg.MaintenanceMinReplication <= 0 {
		cfg.MaintenanceMinReplication = DefaultMaintenanceMinReplication
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = cairn.DefaultHeartbeat
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = cairn.DefaultStaleAfter
	}
	if cfg.Supergroup == "" {
		cfg.Supergroup = "supergroup"
	}
	if cfg.LeaseSoft <= 0 {
		cfg.LeaseSoft = DefaultLeaseSoft
	}
	if cfg.LeaseHard <= 0 {
		cfg.LeaseHard = DefaultLeaseHard
	}
	if cfg.LeaseHard < cfg.LeaseSoft {
		return nil, fmt.Errorf("the lease hard limit %v is shorter than the soft limit %v", cfg.LeaseHard, cfg.LeaseSoft)
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.TopologyScript != "" {
		if _, err := exec.LookPath(cfg.TopologyScript); err != nil {
			return nil, fmt.Errorf("topology script: %w", err)
		}
	}
	if cfg.CheckpointRoot == "" {
		cfg.CheckpointRoot = filepath.Join(cfg.Dir, "checkpoints")
	}
	if cfg.CertTTL <= 0 {
		cfg.CertTTL = trust.DefaultCertTTL
	}
	if cfg.DelegationRenewInterval <= 0 {
		cfg.DelegationRenewInterval = trust.DefaultDelegationRenewInterval
	}
	if cfg.DelegationMaxLifetime <= 0 {
		cfg.DelegationMaxLifetime = trust.DefaultDelegationMaxLifetime
	}
	if cfg.CheckpointKeep <= 0 {
		cfg.CheckpointKeep = DefaultCheckpointKeep
	}
	if cfg.InvalidateLimit <= 0 {
		cfg.InvalidateLimit = DefaultInvalidateLimit
	}
	pebbleLog = cfg.Logger.Named("pebble")
	var st *store
	if cfg.Raft != nil {
		// A member of a group: finish a snapshot's restore cut short, and
		// start from an empty store if this member was not the one
		// formatted (the namespace comes through the log).
		if err := finishRestore(cfg.Dir); err != nil {
			return nil, fmt.Errorf("finish a snapshot's restore in %s: %w", cfg.Dir, err)
		}
		if old, _ := filepath.Glob(filepath.Join(cfg.Dir, ".raft-snapshot-*")); len(old) > 0 {
			for _, o := range old {
				_ = os.RemoveAll(o)
			}
		}
		st, err = openReplicaStore(filepath.Join(cfg.Dir, storeDir), cfg.CacheSize)
	} else {
		st, err = openStore(filepath.Join(cfg.Dir, storeDir), false, cfg.CacheSize, cfg.storeFS)
	}
	if err != nil {
		return nil, err
	}
	if v["layoutVersion"] != strconv.Itoa(LayoutVersion) {
		// The store was upgraded (openStore); VERSION follows it.
		v["layoutVersion"] = strconv.Itoa(LayoutVersion)
		if err := versionfile.Write(cfg.Dir, v); err != nil {
			_ = st.close()
			return nil, fmt.Errorf("record layout version %d in %s: %w", LayoutVersion, cfg.Dir, err)
		}
	}
	// A group's member makes no key of its own: the leader makes them,
	// and every member applies them (raftkept.go).
	ks := &keyStore{st: st}
	tokens, err := blocktoken.NewManager(blocktoken.ManagerConfig{Interval: cfg.KeyInterval, Lifetime: cfg.TokenLifetime, Grace: 2*cfg.Heartbeat + time.Second, Now: cfg.Clock.Now, Passive: cfg.Raft != nil}, ks)
	if err != nil {
		_ = st.close()
		return nil, err
	}
	admin, err := loadAdmin(st.db)
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("read the blockds' admin states: %w", err)
	}
	m := &Metad{
		tokens: tokens,
		cfg:    cfg, st: st, blocks: newBlockMap(), clock: cfg.Clock, log: cfg.Logger, pipelines: newPipelines(), recoveries: newRecoveries(),
		repl:        newReplQueue(cfg.MaxStreams, cfg.StreamsHardLimit, cfg.MaxMoves, cfg.PendingTimeout),
		nodes:       &nodeSet{deadAfter: cfg.DeadAfter, staleAfter: cfg.StaleAfter, nodes: map[string]*nodeState{}, admin: admin},
		namespaceID: v["namespaceID"],
		topo:        newTopology(cfg.TopologyScript, cfg.Clock.Now, cfg.Logger.Named("topology")),
		leases:      newLeaseTable(cfg.LeaseSoft, cfg.LeaseHard, cfg.Clock),
		version:     v,
		superuser:   currentUser(),
		safe:        newSafeMode(cfg.SafeModeThreshold, cfg.SafeModeExtension, cfg.Logger.Named("safemode")),
		retries:     newRetryCache(cfg.RetryCacheSize, cfg.RetryCacheExpiry, cfg.Clock.Now, cfg.Logger.Named("retrycache")),
		grouped:     cfg.Raft != nil,
	}
	if m.grouped {
		ks.m = m
	}
	m.servingSince.Store(cfg.Clock.Now().UnixNano())
	if cfg.HostsExclude != "" {
		if m.nodes.exclude, err = readExclude(cfg.HostsExclude); err != nil {
			_ = st.close()
			return nil, fmt.Errorf("--hosts-exclude: %w", err)
		}
	}
	if cfg.SafeModeThreshold > 0 {
		blocks, err := st.countedBlocks()
		if err != nil {
			_ = st.close()
			return nil, fmt.Errorf("count the blocks for safe mode: %w", err)
		}
		m.safe.begin(blocks, m.clock.Now())
	}
	return m, nil
}

// NamespaceID is the ID this metad serves.
func (m *Metad) NamespaceID() string { return m.namespaceID }

// Close closes the store.
func (m *Metad) Close() error { return m.st.close() }

func isNotFound(err error) bool { return errors.Is(err, pebble.ErrNotFound) }

// currentUser and currentGroup name who runs metad: the superuser, and the
// owner of what in-process callers create.
var currentUser = sync.OnceValue(func() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
})

var currentGroup = sync.OnceValue(func() string {
	if g, err := user.LookupGroupId(strconv.Itoa(os.Getgid())); err == nil {
		return g.Name
	}
	return strconv.Itoa(os.Getgid())
})
