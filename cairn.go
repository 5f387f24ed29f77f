package cairn

import (
	"context"
	"fmt"
	"io/fs"
	"time"
)

// Default ports: Hadoop 3's, so operators' habits carry over.
const (
	DefaultMetadAddr    = "127.0.0.1:9000" // metad RPC
	DefaultMetadHTTP    = ":9870"          // metad HTTP
	DefaultBlockdListen = ":9866"          // blockd data stream
	DefaultBlockdHTTP   = ":9864"          // blockd HTTP

	DefaultBlockSize   = 64 << 20 // bytes per block
	DefaultReplication = 3
	// DefaultHeartbeat is how often a blockd reports to metad.
	DefaultHeartbeat = 3 * time.Second
	// DefaultDeadAfter is how long metad waits on a silent blockd before it
	// counts it dead (HDFS: 10 min 30 s).
	DefaultDeadAfter = 10*time.Minute + 30*time.Second
	// DefaultStaleAfter is how long a blockd may be silent before metad
	// counts it stale: no new replica is placed on it and it is read from
	// last (HDFS's dfs.namenode.stale.datanode.interval).
	DefaultStaleAfter = 30 * time.Second
)

// BlockID names a block across the whole cluster. metad hands them out.
type BlockID uint64

// GenStamp is a block's generation stamp. A replica whose stamp is older than
// metad's for its block is stale.
type GenStamp uint64

// Block is one block of a file: its identity and its length in bytes.
type Block struct {
	ID       BlockID
	GenStamp GenStamp
	Len      int64
}

func (b Block) String() string { return fmt.Sprintf("blk_%d_%d", b.ID, b.GenStamp) }

// Node is a blockd as the cluster knows it.
type Node struct {
	StorageID string // stable identity, kept in the blockd's VERSION file
	DataAddr  string // host:port of the block data stream
	HTTPAddr  string // host:port of its HTTP server
	Rack      string // e.g. "/default-rack"
}

// LocatedBlock is a block with where it lives: the blockds holding a
// replica (for reads) or the pipeline to write it through (for writes).
type LocatedBlock struct {
	Block
	Offset    int64 // offset of the block's first byte in its file
	Locations []Node
	Corrupt   int // replicas known bad (reads): among Locations only when no good one is left, as a last resort
	// Token is the block access token for the block's data-port
	// operations (package blocktoken): read for block locations; write
	// for a new block's pipeline; write, copy and replace at the old and
	// the new stamp for UpdateBlockForPipeline's.
	Token []byte
}

// FileInfo describes one entry of the namespace.
type FileInfo struct {
	Name        string      // last path element; "/" for the root
	Inode       uint64      // stable inode number
	Mode        fs.FileMode // type bits (fs.ModeDir, fs.ModeSymlink...) and permission bits
	Size        int64       // bytes; for a file being written, the bytes acknowledged so far
	Owner       string
	Group       string
	ModTime     time.Time
	AccessTime  time.Time
	Replication int   // files only
	BlockSize   int64 // files only
	Writing     bool  // a writer holds the file's lease
	Symlink     string
	// ChangeTime is the inode's last change (st_ctime): of its bytes, its
	// attributes, its extended attributes or its names. Zero when not
	// known (an older metad): take ModTime.
	ChangeTime time.Time
	// Nlink is st_nlink: for a directory 2 plus its subdirectories, for
	// anything else its number of names. Zero when not known: take 2 for
	// a directory, 1 otherwise.
	Nlink int
	// Rdev is a device node's device number, as Linux's dev_t
	// (unix.Mkdev); 0 for anything else.
	Rdev uint64
}

// IsDir reports whether fi describes a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// CreateOptions are the per-file settings chosen at create time. Zero values
// take the cluster's defaults.
type CreateOptions struct {
	Perm        fs.FileMode
	Replication int
	BlockSize   int64
	// Client names the writer that will hold the file's lease.
	Client string
	// Overwrite replaces an existing regular file at the path whole, as
	// HDFS's create(overwrite=true) and open(2)'s O_TRUNC: the file
	// becomes a new, empty version held open by Client, with the same
	// inode number, names, permissions, owner, group, extended
	// attributes, replication and block size (Perm, Replication and
	// BlockSize are then ignored); its old blocks are freed.
	Overwrite bool
	// Closed makes the new file complete at once, held by nobody: an
	// empty file costs one synced write, not a Create and a Complete.
	// Client may take its lease with its first AddBlock (WriterRef.Claim)
	// as long as nobody wrote the file meanwhile; another client may open
	// it to append before that, as any closed file. Not with Overwrite.
	Closed bool
}

// FileRef names a file to read: by inode number when ID is set (as a
// reader that opened it keeps it through renames and unlinks), else by
// Path. Path is kept for messages.
type FileRef struct {
	ID   uint64
	Path string
}

// FileBlocks is a file's length and its blocks with locations, nearest first.
type FileBlocks struct {
	FileID  uint64 // the file's inode number
	Size    int64
	Writing bool
	Blocks  []LocatedBlock
}

// FsStats is the cluster's capacity as statfs(2) reports it.
type FsStats struct {
	Capacity  int64
	Used      int64
	Remaining int64
	Files     int64 // inodes in use
	Blocks    int64
	LiveNodes int
}

// NodeReport is what metad knows of one blockd.
type NodeReport struct {
	Node
	Capacity      int64
	Used          int64
	Remaining     int64
	Blocks        int64
	LastHeartbeat time.Time
	Live          bool
	// AdminState is the blockd's admin state, in HDFS's words:
	// AdminNormal, AdminDecommissioning, AdminDecommissioned,
	// AdminEnteringMaintenance or AdminInMaintenance.
	AdminState string
	// MaintenanceExpires is when a blockd's maintenance ends by itself
	// (zero: at -recommission only).
	MaintenanceExpires time.Time
	// FailedVolumes are the blockd's failed data directories, each "DIR:
	// reason", as its last heartbeat said.
	FailedVolumes []string
}

// A blockd's admin states (NodeReport.AdminState), in the words of HDFS's
// dfsadmin -report ("Decommission Status : ..."). A blockd being
// decommissioned takes no new replica and its replicas are copied to
// others; once every block it holds has its full count elsewhere it is
// decommissioned: it still serves reads, last, and keeps its replicas.
//
// A blockd entering maintenance takes no new replica, and only the blocks
// that would be left with fewer live replicas in service than metad's
// maintenance minimum are copied elsewhere; then it is in maintenance: it
// may be switched off, and while it is, its replicas are not copied
// elsewhere (HDFS's maintenance state).
const (
	AdminNormal              = "Normal"
	AdminDecommissioning     = "Decommission in progress"
	AdminDecommissioned      = "Decommissioned"
	AdminEnteringMaintenance = "Entering maintenance"
	AdminInMaintenance       = "In maintenance"
)

// NodeAdminAction is what Admin.SetNodeAdmin does to a blockd.
type NodeAdminAction int

const (
	NodeDecommission NodeAdminAction = iota + 1 // start decommissioning it
	NodeRecommission                            // put it back in service, out of decommissioning or maintenance
	NodeMaintenance                             // start its maintenance
)

// ClusterReport is metad's view of the cluster (admin -report, fsck).
type ClusterReport struct {
	NamespaceID        string
	DefaultReplication int
	Nodes              []NodeReport
}

// ReplicaInfo is one reported replica of a block as metad judges it
// (fsck): the replica as its blockd last reported it, and whether it
// counts.
type ReplicaInfo struct {
	Node
	Replica      // stamp, length and state as reported
	Live    bool // the blockd is heartbeating
	Stale   bool // the blockd has been silent past the stale interval
	// Maintenance: the blockd is entering or in maintenance; a replica
	// there is not copied elsewhere while the blockd is switched off.
	Maintenance bool
	// Good: the replica counts as a copy of the block: finalized, at the
	// block's stamp or newer, as long as the block, not known corrupt.
	Good bool
	// Corrupt says why a replica that does not count is bad ("" when it
	// is good, or an unfinished replica of a block being written).
	Corrupt string
}

// BlockReplicas is metad's record of one block of a file and every replica
// reported of it.
type BlockReplicas struct {
	Block        // as metad records it
	Offset int64 // of the block's first byte in its file
	// UnderConstruction: the last block of a file being written, whose
	// length and stamp its writer (or lease recovery) still settles.
	UnderConstruction bool
	Replicas          []ReplicaInfo
	// Token is a read token for the block at any stamp its replicas
	// have, for VERIFY_BLOCK (fsck -verify).
	Token []byte
}

// FileReplicas is a file's blocks with every reported replica (fsck).
type FileReplicas struct {
	Size        int64
	Writing     bool
	Replication int
	Blocks      []BlockReplicas
}

// Namespace is metad's service to clients, made of four services along
// its seams: the paths (Paths), the writer protocol (Writers), block
// health (BlockHealth) and administration (Admin). Every path is absolute
// and valid (see ValidatePath); errors are *Error values whose Kind callers
// decide on. Every call runs as the identity its context carries
// (WithIdentity; over gRPC, what the client asserts), and is refused with
// ErrAccess where POSIX permissions say no. A mutation is answered only
// once it is durable at metad.
type Namespace interface {
	Paths
	Writers
	BlockHealth
	Admin
}

// Paths are the namespace's entries: directories, files, links, their
// attributes, and where a file's bytes are.
type Paths interface {
	// Mkdirs creates path and any missing parents; those made on the way
	// get perm plus u+wx. An existing directory is not an error; an
	// existing non-directory on the way is ErrNotDir (ErrExist when it
	// is path itself).
	Mkdirs(ctx context.Context, path string, perm fs.FileMode) error
	// Mkdir creates one directory: ErrExist if path exists, ErrNotExist if
	// the parent does not, ErrNotDir if the parent is not a directory.
	Mkdir(ctx context.Context, path string, perm fs.FileMode) error
	// Stat describes path (a symlink itself, not its target): ErrNotExist
	// if there is nothing there.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// List returns up to limit entries of directory path whose names sort
	// after `after`, in name order, and whether more follow: ErrNotDir for
	// a file, ErrNotExist for nothing.
	List(ctx context.Context, path, after string, limit int) ([]FileInfo, bool, error)
	// Rename moves src to dst atomically, replacing a file (or an empty
	// directory, by a directory) at dst; when src and dst are names of
	// the same file it does nothing (POSIX): ErrNotExist if src is missing,
	// ErrInvalid for a directory into itself, ErrNotEmpty for a non-empty
	// directory at dst. A file being written goes on being written by its
	// writer (WriterRef names it by inode); a replaced file that is open
	// stays until its last close (see Unlink).
	Rename(ctx context.Context, src, dst string) error
	// Delete removes path; a non-empty directory needs recursive
	// (ErrNotEmpty otherwise). A file being written is kept until its
	// writer closes it, then freed; other files' blocks are freed in the
	// background.
	Delete(ctx context.Context, path string, recursive bool) error
	// Unlink removes path, a file that holder (a client) has open: its
	// data stays until holder calls Release (or stops renewing its
	// lease), as POSIX keeps an unlinked file until its last close; also
	// when path was one of several names and another client removes the
	// last one later. ErrInvalid for a directory.
	Unlink(ctx context.Context, path, holder string) error
	// Release ends holder's hold on an unlinked file (see Unlink); the
	// file is freed when nobody holds or writes it any more. Releasing a
	// file that was not unlinked, or twice, does nothing.
	Release(ctx context.Context, fileID uint64, holder string) error
	// BlockLocations returns the file's blocks with their live replicas,
	// nearest first, and for a file being written its last block's
	// pipeline: the file f.ID names (which a rename or unlink does not
	// change; the caller needs read permission on the file itself), or
	// f.Path. ErrNotExist when it is gone, ErrIsDir for a directory.
	BlockLocations(ctx context.Context, f FileRef) (FileBlocks, error)
	// SetAttr changes attributes and returns the result, as Linux's
	// setattr_prepare allows: only the owner (or a superuser) may change
	// the mode or set times (but anyone with write permission may set
	// both to now: Attr.TimesNow); only a superuser may change the owner
	// (the owner may name itself); the owner may change the group to one
	// it is in. Every change sets the change time (ctime).
	SetAttr(ctx context.Context, path string, a Attr) (FileInfo, error)
	// Link makes dst another name of the file at src (a hard link), as
	// link(2): ErrExist if dst exists, ErrNotExist if src does not,
	// ErrPermission for a directory. A file's blocks are freed with its
	// last name, once nobody writes or holds it (see Unlink).
	Link(ctx context.Context, src, dst string) error
	// Concat moves the blocks of sources, in order, to the end of target
	// and removes the sources, in one step, as HDFS's concat: target and
	// sources are closed files of one directory with one block size, the
	// sources distinct, not target, not empty and of one name each, and
	// every block but the last source's last must be full. Anything else
	// is ErrInvalid (ErrNotExist, ErrAccess as usual) and changes nothing.
	Concat(ctx context.Context, target string, sources []string) error
	// Symlink creates path as a symbolic link to target (kept as text):
	// ErrExist if path exists.
	Symlink(ctx context.Context, target, path string) error
	// Mknod creates a fifo, socket or device node, kept as metadata only;
	// rdev is a device node's device number (Linux's dev_t), ignored for
	// anything else.
	Mknod(ctx context.Context, path string, mode fs.FileMode, rdev uint64) error
	// Access is Stat of path, refused with ErrAccess unless the caller
	// may have want on path itself, as open(2) checks at open: the one
	// round trip a mount makes to open a file for writing.
	Access(ctx context.Context, path string, want AccessMode) (FileInfo, error)
	// SetXattr sets a user.* attribute: with XattrCreate ErrExist if it
	// exists, with XattrReplace ErrNotExist if it does not.
	SetXattr(ctx context.Context, path, name string, value []byte, flags XattrFlags) error
	// GetXattr returns ErrNotExist for a missing attribute.
	GetXattr(ctx context.Context, path, name string) ([]byte, error)
	// ListXattrs returns the names of path's attributes.
	ListXattrs(ctx context.Context, path string) ([]string, error)
	// RemoveXattr returns ErrNotExist for a missing attribute.
	RemoveXattr(ctx context.Context, path, name string) error
	// ContentSummary is du and count for the subtree at path.
	ContentSummary(ctx context.Context, path string) (ContentSummary, error)
	// Statfs returns the cluster's capacity.
	Statfs(ctx context.Context) (FsStats, error)
}

// Writers is the writer protocol, HDFS's: a client begins writing a file
// (Create, Append), holding its lease, which it keeps by RenewLease and by
// every call it makes as the writer; it adds blocks, records what its
// pipeline holds, recovers broken pipelines, and ends with Complete. Every
// call but Create, Append and RenewLease names the file by inode
// (WriterRef): ErrNotExist when the file is gone, ErrPermission when it is
// not open for writing, ErrBusy when another client holds its lease (metad
// holds it while it recovers a file whose writer was silent past the
// lease limits: see CmdRecover).
type Writers interface {
	// Create makes a new empty file held open for writing by opts.Client.
	// ErrExist if path exists (after recovering a file whose writer passed
	// the soft limit, which does not make room), unless opts.Overwrite
	// replaces a regular file there (the caller needs write permission on
	// it; ErrBusy while another client writes it, ErrRetry while metad
	// recovers it); ErrNotExist if the parent does not.
	Create(ctx context.Context, path string, opts CreateOptions) (FileInfo, error)
	// Append reopens a closed file for writing by client (taking over a
	// file whose writer passed the soft limit; ErrRetry while metad
	// recovers it). It returns the file and, when the file ends inside a
	// block, that last partial block, at the stamp metad records, with its
	// live replicas: the writer takes a new stamp (UpdateBlockForPipeline)
	// and commits it with its pipeline (UpdatePipeline) before writing.
	Append(ctx context.Context, path, client string) (FileInfo, *LocatedBlock, error)
	// RenewLease keeps every file client writes, or holds unlinked, from
	// being taken over or freed.
	RenewLease(ctx context.Context, client string) error
	// AddBlock ends the file's last block at prev.Len bytes (if any; only
	// a full block may be followed by another: ErrInvalid) and allocates a
	// new one with a pipeline of target blockds, none of them in excluded
	// (blockds that failed this writer). ErrNoSpace when no blockd can
	// take it.
	AddBlock(ctx context.Context, w WriterRef, prev *Block, excluded []Node) (LocatedBlock, error)
	// Complete records the last block's length and closes the file. acked
	// are the nodes of the last block's pipeline that acknowledged its last
	// packet, which a blockd does only once its replica is finalized:
	// metad records those of them that it placed in the block's pipeline
	// (AddBlock, UpdatePipeline) as finalized replicas of last, as if they
	// had reported them; their own reports confirm it later. Without such
	// a node it returns ErrRetry while the last block has no reported
	// replica.
	Complete(ctx context.Context, w WriterRef, last *Block, acked ...Node) error
	// AbandonBlock drops the file's last block, allocated but never
	// written (ErrInvalid if metad recorded bytes in it).
	AbandonBlock(ctx context.Context, w WriterRef, b Block) error
	// Fsync records that the last block holds at least b.Len bytes on its
	// pipeline (hflush/hsync), making them visible to new readers; lengths
	// only grow.
	Fsync(ctx context.Context, w WriterRef, b Block) error
	// UpdateBlockForPipeline hands out a new generation stamp for the
	// file's last block (pipeline recovery, append): the block at the new
	// stamp, with a token allowing write, copy and replace from metad's
	// stamp to the new one. metad's record keeps the old stamp until
	// UpdatePipeline commits the new one.
	UpdateBlockForPipeline(ctx context.Context, w WriterRef, b Block) (LocatedBlock, error)
	// UpdatePipeline commits a set-up or recovered pipeline: the block now
	// has updated's stamp (one UpdateBlockForPipeline handed out) and at
	// least updated's length, held by nodes.
	UpdatePipeline(ctx context.Context, w WriterRef, old, updated Block, nodes []Node) error
	// AdditionalNode picks a live blockd with room, not in existing or
	// excluded: ErrNoSpace when there is none.
	AdditionalNode(ctx context.Context, w WriterRef, b Block, existing, excluded []Node) (Node, error)
}

// BlockHealth is what clients tell metad of replicas they found bad, and
// what metad knows of every replica (fsck).
type BlockHealth interface {
	// ReportBadReplicas is a client's report of replicas it read bad. It
	// counts only once confirmed: metad asks each named holder of the
	// replica at that stamp to verify it (CmdVerify), and the holder's
	// scanner reports what it finds (Registry.BadReplicasFound). A report
	// naming a replica metad does not record, or another stamp, changes
	// nothing.
	ReportBadReplicas(ctx context.Context, bad []BadReplica) error
	// ReplicaReport returns, for each block of the file path, metad's
	// record and every replica reported of it, judged (fsck).
	ReplicaReport(ctx context.Context, path string) (FileReplicas, error)
}

// Admin is the administrator's view and tools.
type Admin interface {
	// Report returns metad's view of the blockds.
	Report(ctx context.Context) (ClusterReport, error)
	// Checkpoint writes a consistent copy of the namespace (a Pebble
	// checkpoint plus VERSION) to dir on metad's machine while serving.
	Checkpoint(ctx context.Context, dir string) error
	// SafeMode reports metad's safe mode (SafeModeGet), or turns it on
	// until turned off by hand (SafeModeEnter) or off (SafeModeLeave);
	// the last two take a superuser (KindAccess). In safe mode metad is
	// read-only: every namespace mutation and writer call fails with
	// KindSafeMode, whose detail is the status's Message.
	SafeMode(ctx context.Context, action SafeModeAction) (SafeModeStatus, error)
	// SetNodeAdmin decommissions, puts in maintenance or recommissions
	// the blockd node (its storage ID or its data address HOST:PORT) and
	// returns it as metad now knows it; an admin certificate and a
	// superuser only (KindAccess). An unknown node is KindNotExist.
	// expire, for NodeMaintenance only, ends the maintenance by itself
	// after that long (0: never; negative is KindInvalid). The state is
	// kept in metad's store, so a restart keeps it.
	SetNodeAdmin(ctx context.Context, node string, action NodeAdminAction, expire time.Duration) (NodeReport, error)
	// RefreshNodes reads metad's --hosts-exclude file again (HDFS's
	// dfsadmin -refreshNodes): the blockds it names are decommissioned,
	// those it no longer names that it had decommissioned go back in
	// service. It returns the blockds whose state changed.
	RefreshNodes(ctx context.Context) ([]NodeReport, error)
	// Balance is one step of the balancer (cairn balancer, HDFS's
	// Balancer): BalanceStatus reports the cluster's use against the
	// mean (counting the moves under way as done) and the moves under way;
	// BalanceSchedule also schedules an iteration's moves of replicas from
	// over- to under-used blockds, each source's bounded by its replication
	// streams; BalanceStop drops the
	// moves not yet handed to a blockd. A move copies a replica to its
	// target and deletes the source's only once the target's finalized
	// replica is reported and the block keeps its count and racks. An
	// admin certificate and a superuser only (KindAccess); refused in safe
	// mode (KindSafeMode).
	Balance(ctx context.Context, r BalanceRequest) (BalanceStatus, error)
}

// BalanceAction is what Admin.Balance does.
type BalanceAction int

const (
	BalanceStatusOnly BalanceAction = iota // report only
	BalanceSchedule                        // schedule an iteration's moves
	BalanceStop                            // drop the moves not yet sent
)

// BalanceRequest asks for one step of the balancer: every blockd's use
// (used / capacity, in percent) should end within Threshold percentage
// points of the cluster's mean; each source blockd sends its copies at
// most Bandwidth bytes a second (0: no limit).
//
// ID names the balancer asking (HDFS's balancer.id): metad serves one
// balancer at a time, and refuses the steps of another (KindBusy, "Another
// Balancer is running.") until the one it serves has been silent for
// metad's balancer lease, or sent BalanceStop.
type BalanceRequest struct {
	Threshold float64
	Bandwidth int64
	Action    BalanceAction
	ID        string
}

// BalanceStatus is the balancer's view of the cluster after a step.
// BytesLeftToMove is 0 when every blockd is within the threshold.
// BytesMoved and the Moves counters count since metad started.
type BalanceStatus struct {
	BytesLeftToMove int64
	BytesBeingMoved int64 // of the moves under way
	BytesMoved      int64
	MovesScheduled  int64 // by this step
	MovesPending    int64 // under way
	MovesDone       int64
	MovesFailed     int64 // timed out, or the source kept because the rules forbade its deletion
	Average         float64
	Nodes           []BalanceNode
}

// BalanceNode is one blockd's use as the balancer sees it.
type BalanceNode struct {
	Node
	Capacity, Used int64
}

// SafeModeAction is what Admin.SafeMode does.
type SafeModeAction int

const (
	SafeModeGet SafeModeAction = iota
	SafeModeEnter
	SafeModeLeave
)

// SafeModeStatus is metad's safe mode. Total, Reported and Needed count
// blocks while metad waits at its start for the blockds' reports; LeavesIn
// is the rest of the extension once Needed were reported.
type SafeModeStatus struct {
	On, Manual              bool
	Total, Reported, Needed int
	LeavesIn                time.Duration
	Message                 string // HDFS's words: "Safe mode is ON. ..."
}

// WriterRef names a file in the writer protocol (AddBlock, Complete,
// Fsync, AbandonBlock, UpdateBlockForPipeline, UpdatePipeline,
// AdditionalNode), as HDFS's fileId: by its inode number, which a rename of
// the file or of a directory above it, or an unlink while it is open, does
// not change. Path is what the writer last knew, for messages only; a zero
// FileID falls back to resolving Path.
type WriterRef struct {
	FileID uint64
	Path   string
	Client string
	// Claim, on AddBlock: the file was created closed by Client
	// (CreateOptions.Closed); Client takes its lease first, unless
	// somebody wrote the file since (KindBusy).
	Claim bool
}

// Registration is a blockd introducing itself to metad.
type Registration struct {
	Node
	NamespaceID string // empty on a blockd never registered before
}

// Heartbeat is a blockd's periodic report of its state.
type Heartbeat struct {
	StorageID string
	Capacity  int64
	Used      int64
	Remaining int64
	Active    int // transfers in progress
	// FailedVolumes are the blockd's failed data directories, each "DIR:
	// reason" (admin -report shows them).
	FailedVolumes []string
}

// Command is metad's instruction to a blockd, carried on heartbeat replies.
type Command struct {
	Kind    CommandKind
	Blocks  []Block
	Targets []Node // CmdTransfer: where to copy Blocks; CmdRecover: every node that may hold a replica
	// RecoveryID is CmdRecover's new generation stamp: the one the
	// recovered replicas are finalized at, and the recovery's name.
	RecoveryID GenStamp
	// Tokens are block access tokens for the data-port operations the
	// command needs, one per block of Blocks (CmdTransfer: write, for the
	// targets; CmdRecover: recover, for every target).
	Tokens [][]byte
	// Keys are CmdKeys' block token keys.
	Keys []BlockKey
	// Bandwidth bounds a balancer move's copy (CmdTransfer), in bytes a
	// second for all the receiver's balancer copies together (HDFS's
	// dfs.datanode.balance.bandwidthPerSec); 0: no limit, not a move.
	Bandwidth int64
}

// CommandKind says what a Command asks.
type CommandKind int

const (
	CmdDelete     CommandKind = iota + 1 // delete these replicas
	CmdTransfer                          // copy these replicas to Targets
	CmdReregister                        // register again and send a full report
	// CmdRecover makes the receiver the primary of a block recovery
	// (HDFS's BlockRecoveryWorker): Blocks[0] is the block as metad
	// records it, Targets every node that may hold a replica, RecoveryID
	// the new stamp. The primary asks each target for its replica
	// (INIT_RECOVERY), agrees on a length every surviving replica holds,
	// has each truncate and finalize to it at RecoveryID
	// (UPDATE_RECOVERY), and reports back with CommitBlockSynchronization.
	CmdRecover
	// CmdVerify asks the receiver to re-read its replicas of Blocks
	// against their .meta and report each bad one (BadReplicasFound): how
	// a client's report of a bad replica is confirmed before it counts.
	CmdVerify
	// CmdKeys hands the receiver the block token keys (Keys), replacing
	// those it holds: in every heartbeat reply (HDFS's KeyUpdateCommand).
	CmdKeys
)

// ReplicaState is where a replica is in its life, as HDFS's ReplicaState.
type ReplicaState int

const (
	// ReplicaFinalized: complete, in finalized/, never written again
	// (until an append reopens it).
	ReplicaFinalized ReplicaState = iota + 1
	// ReplicaRBW: being written by a live pipeline, in rbw/.
	ReplicaRBW
	// ReplicaRWR: found in rbw/ when the blockd started (waiting to be
	// recovered): its writer is gone, its length is what was verified.
	ReplicaRWR
	// ReplicaRUR: under recovery, claimed by a block recovery; no writer
	// may touch it.
	ReplicaRUR
)

func (s ReplicaState) String() string {
	switch s {
	case ReplicaFinalized:
		return "FINALIZED"
	case ReplicaRBW:
		return "RBW"
	case ReplicaRWR:
		return "RWR"
	case ReplicaRUR:
		return "RUR"
	}
	return fmt.Sprintf("ReplicaState(%d)", int(s))
}

// Replica is one blockd's copy of a block as that blockd reports it: the
// stamp and length it has, and its state.
type Replica struct {
	Block
	State ReplicaState
}

// CommitSync is a block recovery's outcome, sent by its primary (HDFS's
// commitBlockSynchronization): the block, at metad's stamp when the
// recovery began, now has NewGenStamp and NewLen on Nodes (storage IDs),
// finalized. Delete says no replica survived: the block is to be dropped
// (it must then hold no acknowledged byte).
type CommitSync struct {
	Block       Block // ID, and the stamp metad recorded when the recovery began
	RecoveryID  GenStamp
	NewGenStamp GenStamp
	NewLen      int64
	Nodes       []string
	Delete      bool
}

// BlockKey is a key block access tokens are signed with (package
// blocktoken): metad makes and rotates them and hands blockds every one
// that may still sign or check a token.
type BlockKey struct {
	ID     uint32
	Secret []byte
	Expiry time.Time
}

// Registered is metad's answer to a blockd's registration.
type Registered struct {
	NamespaceID string     // the namespace the blockd must keep
	Keys        []BlockKey // block token keys (see CmdKeys)
	// EncryptData: the cluster encrypts block data (metad
	// --encrypt-data), so the blockd's data port takes mutual TLS only.
	EncryptData bool
}

// HeartbeatReply is a heartbeat's answer with the answering metad's
// place in its group: a member that does not lead (Follower) sends no
// command but CmdKeys and CmdReregister, and a blockd acts on no other
// command from it; a leader gives its Raft term (0: a single metad), and
// a blockd acts only on the commands of the newest term it has seen.
type HeartbeatReply struct {
	Commands []Command
	Follower bool
	Term     uint64
}

// LeaderRegistry is a Registry whose heartbeat replies say whether the
// answering metad leads its group (metad, and its remote stub).
type LeaderRegistry interface {
	Registry
	HeartbeatReply(ctx context.Context, h Heartbeat) (HeartbeatReply, error)
}

// Registry is metad's service to blockds.
type Registry interface {
	// Register admits a blockd and returns the namespace ID it must keep
	// and the block token keys. A blockd formatted for another namespace
	// gets ErrNamespace.
	Register(ctx context.Context, r Registration) (Registered, error)
	// Heartbeat records liveness and capacity and returns commands.
	Heartbeat(ctx context.Context, h Heartbeat) ([]Command, error)
	// BlockReport replaces metad's knowledge of the blockd's replicas: every
	// replica it holds, in every state (finalized, being written, waiting
	// for recovery, under recovery), with its stamp and length.
	BlockReport(ctx context.Context, storageID string, replicas []Replica) error
	// BlocksReceived is the incremental report of replicas created
	// (RBW, HDFS's RECEIVING_BLOCK) or finalized since the last report.
	BlocksReceived(ctx context.Context, storageID string, replicas []Replica) error
	// BlocksDeleted is the incremental report of replicas deleted.
	BlocksDeleted(ctx context.Context, storageID string, blocks []Block) error
	// CommitBlockSynchronization records the outcome of a block recovery
	// that metad asked for (CmdRecover). It returns ErrInvalid when the
	// recovery is not the block's current one (a newer one superseded it,
	// or the block is gone).
	CommitBlockSynchronization(ctx context.Context, c CommitSync) error
	// BadReplicasFound is a blockd's report of its own replicas found
	// corrupt (scanner, failed reads, CmdVerify): each names storageID,
	// which must be registered. metad marks the replica at the reported
	// stamp corrupt, stops offering it, restores the replication from good
	// copies, and only then deletes it.
	BadReplicasFound(ctx context.Context, storageID string, bad []BadReplica) error
}

// Identity is who a client says it is. As in HDFS's simple mode, metad
// believes what the client asserts: the mount passes the calling process's
// user and groups; there is no authentication.
type Identity struct {
	User   string
	Groups []string
}

type identityKey struct{}

// WithIdentity returns ctx carrying id, for calls to a Namespace.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Attr is a change of attributes: nil fields stay as they are.
type Attr struct {
	Perm        *fs.FileMode // permission bits (and setuid/setgid/sticky)
	Owner       *string
	Group       *string
	ModTime     *time.Time
	AccessTime  *time.Time
	Replication *int
	// TimesNow sets both times to metad's clock, as utimes(2) with no
	// times (touch): allowed to the owner and to anyone who may write the
	// file. ModTime and AccessTime are then ignored.
	TimesNow bool
}

// AccessMode is what a caller asks to do with an inode, in the bits of
// access(2) and of a mode's rwx triplets.
type AccessMode uint8

const (
	AccessExec  AccessMode = 1
	AccessWrite AccessMode = 2
	AccessRead  AccessMode = 4
)

// XattrFlags choose how SetXattr treats an existing attribute.
type XattrFlags int

const (
	XattrCreate  XattrFlags = 1 // fail with ErrExist if it exists
	XattrReplace XattrFlags = 2 // fail with ErrNotExist if it does not
)

// ContentSummary is what du and count report for a subtree.
type ContentSummary struct {
	Length        int64 // bytes in files
	Files         int64
	Dirs          int64
	SpaceConsumed int64 // bytes times replication
}

// BadReplica names a replica found corrupt, and why.
type BadReplica struct {
	Block
	StorageID string
	Reason    string
}
