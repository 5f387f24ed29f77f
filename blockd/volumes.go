package blockd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/internal/versionfile"
)

// DefaultDiskCheck is how often every in-service data directory is checked
// (VERSION readable and ours, a file can be created and synced) when no I/O
// error asks for a check sooner.
const DefaultDiskCheck = time.Minute

// probeName is the empty file a disk check creates, syncs and removes in
// DIR/current.
const probeName = ".disk-check"

// VolumeOptions configure OpenVolumes. Zero values take the defaults.
type VolumeOptions struct {
	// Reserved is how many bytes of each disk are kept free: a disk with no
	// more than this left takes no new replicas, and it is not counted as
	// capacity or remaining space.
	Reserved int64
	// FailedTolerated is how many data directories may fail (at start or
	// while serving) before the blockd stops; 0, as in HDFS, stops it at
	// the first failure.
	FailedTolerated int
	Logger          *zap.Logger
}

// Volumes is a blockd's data directories, one Store each, seen as one store:
// a replica lives on exactly one volume, new replicas go to the volume with
// the most free space above the reserve, and lookups find the volume that
// holds the block. Every directory's VERSION carries the same storage ID (the
// blockd's identity at metad) and namespace ID.
//
// A volume that fails (its VERSION vanished or no longer ours, or a file
// cannot be created or synced in it) is taken out of service: its replicas
// are handed to the failure handler as lost and are no longer offered. More
// failed volumes than tolerated, or none left, is fatal: Fatal delivers the
// error.
type Volumes struct {
	log       *zap.Logger
	reserved  int64
	tolerated int
	storageID string
	vols      []*volume

	// free returns the bytes a volume's disk has left; statfs by default,
	// replaced by tests.
	free func(*Store) int64

	createMu sync.Mutex // placement and creation of a new replica

	mu       sync.Mutex
	failed   []string // "DIR: reason" of every failed volume, in order
	onFail   func(dir string, lost []cairn.Block)
	fatal    chan error
	checking chan struct{} // a check is wanted soon
}

// volume is one data directory.
type volume struct {
	dir   string
	store *Store
	out   atomic.Bool // taken out of service
}

// OpenVolumes opens and locks every directory of dirs (creating those used
// for the first time) and gives them one identity: the storage ID and
// namespace ID already in their VERSIONs, which must agree. A directory
// whose disk fails to open counts as a failed volume; more of them than
// opts.FailedTolerated is an error. Any other problem (a directory in use by
// another blockd, given twice, of a newer layout, or of another blockd) is
// an error and leaves every directory as it was.
func OpenVolumes(dirs []string, opts VolumeOptions) (*Volumes, error) {
	const op = "blockd.OpenVolumes"
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if len(dirs) == 0 {
		return nil, cairn.E(op, cairn.KindInvalid, "", "no data directory given")
	}
	if opts.Reserved < 0 {
		return nil, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("reserved space %d is negative", opts.Reserved))
	}
	if opts.FailedTolerated < 0 || opts.FailedTolerated >= len(dirs) {
		return nil, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("failed volumes tolerated must be 0..%d with %d data directories, not %d", len(dirs)-1, len(dirs), opts.FailedTolerated))
	}
	seen := map[string]string{}
	for _, d := range dirs {
		if d == "" {
			return nil, cairn.E(op, cairn.KindInvalid, "", "empty data directory name")
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", op, d, err)
		}
		if prev, dup := seen[abs]; dup {
			return nil, cairn.E(op, cairn.KindInvalid, d, fmt.Sprintf("data directory given twice (also as %s)", prev))
		}
		seen[abs] = d
	}

	// The identities already written, read before anything is created.
	existing := make([]map[string]string, len(dirs))
	var storageID, namespaceID, idFrom, nsFrom string
	for i, d := range dirs {
		v, err := versionfile.Read(d)
		if err != nil {
			continue // a new directory, or a disk failure found when opening it
		}
		existing[i] = v
		if id := v["storageID"]; id != "" {
			if storageID == "" {
				storageID, idFrom = id, d
			} else if id != storageID {
				return nil, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf(
					"data directories of different blockds: %s has storage ID %s, %s has %s; the directories of one blockd share its storage ID",
					idFrom, storageID, d, id))
			}
		}
		if ns := v["namespaceID"]; ns != "" {
			if namespaceID == "" {
				namespaceID, nsFrom = ns, d
			} else if ns != namespaceID {
				return nil, cairn.E(op, cairn.KindNamespace, "", fmt.Sprintf(
					"data directories of different namespaces: %s has namespace ID %s, %s has %s",
					nsFrom, namespaceID, d, ns))
			}
		}
	}

	vs := &Volumes{
		log:       opts.Logger,
		reserved:  opts.Reserved,
		tolerated: opts.FailedTolerated,
		free:      statfsFree,
		fatal:     make(chan error, 1),
		checking:  make(chan struct{}, 1),
	}
	closeAll := func() {
		for _, v := range vs.vols {
			v.store.Close()
		}
	}
	var failed []string
	for i, d := range dirs {
		st, err := OpenStore(d, opts.Logger)
		if err != nil {
			if !isDiskFailure(err) {
				closeAll()
				return nil, err
			}
			opts.Logger.Error("data directory failed at start", zap.String("dir", d), zap.Error(err))
			failed = append(failed, fmt.Sprintf("%s: %v", d, err))
			continue
		}
		vs.vols = append(vs.vols, &volume{dir: d, store: st})
		if storageID == "" {
			storageID = st.StorageID() // no directory had one: the first's new one
		}
		// A new directory takes the blockd's identity at once, so that a
		// start refused below leaves the directories agreeing.
		if id, ns := st.StorageID(), st.NamespaceID(); id != storageID || (namespaceID != "" && ns != namespaceID) {
			if id != storageID && existing[i] != nil {
				closeAll() // its VERSION changed since it was read: leave it
				return nil, cairn.E(op, cairn.KindInvalid, d, fmt.Sprintf("VERSION has storage ID %s, the blockd's is %s", id, storageID))
			}
			if err := st.setIdentity(storageID, namespaceID); err != nil {
				closeAll()
				return nil, fmt.Errorf("%s: %s: %w", op, d, err)
			}
			opts.Logger.Info("data directory joined the blockd", zap.String("dir", d), zap.String("storage_id", storageID),
				zap.String("namespace_id", namespaceID))
		}
	}
	vs.failed = failed
	vs.storageID = storageID
	if len(failed) > vs.tolerated || len(vs.vols) == 0 {
		closeAll()
		return nil, fmt.Errorf("%s: %d of %d data directories failed (tolerated: %d): %s",
			op, len(failed), len(dirs), vs.tolerated, strings.Join(failed, "; "))
	}
	return vs, nil
}

// isDiskFailure reports whether err opening a data directory comes from the
// disk (an errno other than the lock being held) rather than from what is
// in the directory.
func isDiskFailure(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	return errno != syscall.EWOULDBLOCK
}

func statfsFree(s *Store) int64 {
	_, _, remaining := s.Usage()
	return remaining
}

// SetFailureHandler sets the function told of each volume taken out of
// service, with the replicas lost with it. Set it before serving.
func (vs *Volumes) SetFailureHandler(f func(dir string, lost []cairn.Block)) {
	vs.mu.Lock()
	vs.onFail = f
	vs.mu.Unlock()
}

// Fatal delivers the error that stops the blockd: more failed volumes than
// tolerated, or none left in service.
func (vs *Volumes) Fatal() <-chan error { return vs.fatal }

// Dirs lists the data directories in service.
func (vs *Volumes) Dirs() []string {
	var out []string
	for _, v := range vs.live() {
		out = append(out, v.dir)
	}
	return out
}

// Failed lists the failed data directories, each with why.
func (vs *Volumes) Failed() []string {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return append([]string(nil), vs.failed...)
}

func (vs *Volumes) live() []*volume {
	out := make([]*volume, 0, len(vs.vols))
	for _, v := range vs.vols {
		if !v.out.Load() {
			out = append(out, v)
		}
	}
	return out
}

// StorageID is the blockd's identity, the same in every directory.
func (vs *Volumes) StorageID() string { return vs.storageID }

// NamespaceID is the namespace the directories belong to, "" before the
// first registration.
func (vs *Volumes) NamespaceID() string {
	if live := vs.live(); len(live) > 0 {
		return live[0].store.NamespaceID()
	}
	return ""
}

// SetNamespaceID records the namespace in every directory in service. A
// directory that cannot record it is checked, and ignored if that takes it
// out of service.
func (vs *Volumes) SetNamespaceID(id string) error {
	var errs []error
	for _, v := range vs.live() {
		if err := v.store.SetNamespaceID(id); err != nil {
			if vs.check(v) {
				errs = append(errs, fmt.Errorf("%s: %w", v.dir, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close releases every directory's lock.
func (vs *Volumes) Close() {
	for _, v := range vs.vols {
		v.store.Close()
	}
}

// holding returns the in-service volume with the finalized replica of id.
func (vs *Volumes) holding(id cairn.BlockID) (*volume, cairn.Block, bool) {
	var best *volume
	var have cairn.Block
	for _, v := range vs.live() {
		if b, ok := v.store.Lookup(id); ok && (best == nil || b.GenStamp > have.GenStamp) {
			best, have = v, b
		}
	}
	return best, have, best != nil
}

// Lookup returns the finalized replica of block id.
func (vs *Volumes) Lookup(id cairn.BlockID) (cairn.Block, bool) {
	_, b, ok := vs.holding(id)
	return b, ok
}

// Report lists every replica, in every state, on the volumes in service.
func (vs *Volumes) Report() []cairn.Replica {
	var out []cairn.Replica
	for _, v := range vs.live() {
		out = append(out, v.store.Report()...)
	}
	return out
}

// Usage sums the disks in service: capacity and remaining without the
// reserve, and the bytes replicas use.
func (vs *Volumes) Usage() (capacity, used, remaining int64) {
	for _, v := range vs.live() {
		c, u, r := v.store.Usage()
		capacity += max(0, c-vs.reserved)
		used += u
		remaining += max(0, r-vs.reserved)
	}
	return capacity, used, remaining
}

// Delete removes the replica of b (if its stamp is not newer than b's) from
// whichever volume holds it.
func (vs *Volumes) Delete(b cairn.Block) error {
	var errs []error
	for _, v := range vs.live() {
		if err := v.store.Delete(b); err != nil {
			errs = append(errs, err)
			vs.CheckSoon()
		}
	}
	return errors.Join(errs...)
}

// BlockPath is the data file of the finalized replica of b, on the volume
// holding it; "" when no volume in service holds it.
func (vs *Volumes) BlockPath(b cairn.Block) string {
	if v, _, ok := vs.holding(b.ID); ok {
		return v.store.BlockPath(b)
	}
	return ""
}

// MetaPath is the .meta of the finalized replica of b, on the volume holding
// it; "" when no volume in service holds it.
func (vs *Volumes) MetaPath(b cairn.Block) string {
	if v, _, ok := vs.holding(b.ID); ok {
		return v.store.MetaPath(b)
	}
	return ""
}

// Create starts a new replica of b on the volume with the most free space
// above the reserve; no volume with space is KindNoSpace. A block already
// held by a volume is created there, where Store.Create decides whether
// the new replica replaces the old.
func (vs *Volumes) Create(b cairn.Block, chunkSize int) (*ReplicaWriter, error) {
	vs.createMu.Lock()
	defer vs.createMu.Unlock()
	live := vs.live()
	v := vs.holder(b.ID)
	if v == nil {
		var err error
		if v, err = vs.choose(live); err != nil {
			return nil, err
		}
	}
	w, err := v.store.Create(b, chunkSize)
	if err != nil && isDiskFailure(err) && !errors.Is(err, syscall.ENOSPC) {
		vs.CheckSoon()
	}
	return w, err
}

// choose picks the volume for a new replica: the most free bytes above the
// reserve, the first in order on a tie.
func (vs *Volumes) choose(live []*volume) (*volume, error) {
	var best *volume
	var bestFree int64
	var full []string
	for _, v := range live {
		free := vs.free(v.store) - vs.reserved
		if free <= 0 {
			full = append(full, v.dir)
			continue
		}
		if best == nil || free > bestFree {
			best, bestFree = v, free
		}
	}
	if best == nil {
		return nil, cairn.E("blockd.Create", cairn.KindNoSpace, "", fmt.Sprintf(
			"no data directory has more than the reserved %d bytes free (%s)", vs.reserved, strings.Join(full, ", ")))
	}
	return best, nil
}

// OpenReplica opens the finalized replica of want.ID on the volume holding
// it, as Store.OpenReplica does.
func (vs *Volumes) OpenReplica(want cairn.Block) (cairn.Block, *os.File, *os.File, error) {
	v, have, ok := vs.holding(want.ID)
	if !ok {
		return have, nil, nil, cairn.E("blockd.OpenReplica", cairn.KindNotExist, want.String(), "no finalized replica here")
	}
	have, data, meta, err := v.store.OpenReplica(want)
	if err != nil && cairn.KindOf(err) == cairn.KindIO {
		vs.CheckSoon()
	}
	return have, data, meta, err
}

// holder returns the in-service volume with a replica of id, finalized or
// being written.
func (vs *Volumes) holder(id cairn.BlockID) *volume {
	for _, v := range vs.live() {
		if v.store.holds(id) {
			return v
		}
	}
	return nil
}

// Reopen makes the replica of b.ID writable again, on the volume holding it,
// as Store.Reopen does.
func (vs *Volumes) Reopen(b cairn.Block, keepLen int64) (*ReplicaWriter, error) {
	v := vs.holder(b.ID)
	if v == nil {
		return nil, cairn.E("blockd.Reopen", cairn.KindNotExist, b.String(), "no replica here")
	}
	w, err := v.store.Reopen(b, keepLen)
	if err != nil && cairn.KindOf(err) == cairn.KindIO {
		vs.CheckSoon()
	}
	return w, err
}

// OpenSource opens the replica of want.ID for reading, finalized or being
// written, on the volume holding it, as Store.OpenSource does.
func (vs *Volumes) OpenSource(want cairn.Block) (Source, error) {
	v := vs.holder(want.ID)
	if v == nil {
		return nil, cairn.E("blockd.OpenSource", cairn.KindNotExist, want.String(), "no replica here")
	}
	src, err := v.store.OpenSource(want)
	if err != nil && cairn.KindOf(err) == cairn.KindIO {
		vs.CheckSoon()
	}
	return src, err
}

// InitRecovery claims the replica of b.ID for recovery rid on the volume
// holding it, as Store.InitRecovery does.
func (vs *Volumes) InitRecovery(b cairn.Block, rid cairn.GenStamp) (cairn.Replica, error) {
	v := vs.holder(b.ID)
	if v == nil {
		return cairn.Replica{}, cairn.E("blockd.InitRecovery", cairn.KindNotExist, b.String(), "no replica here")
	}
	r, err := v.store.InitRecovery(b, rid)
	if err != nil && cairn.KindOf(err) == cairn.KindIO {
		vs.CheckSoon()
	}
	return r, err
}

// UpdateRecovery finalizes the replica of b.ID under recovery rid at newLen
// bytes, as Store.UpdateRecovery does.
func (vs *Volumes) UpdateRecovery(b cairn.Block, rid cairn.GenStamp, newLen int64) (cairn.Block, error) {
	v := vs.holder(b.ID)
	if v == nil {
		return cairn.Block{}, cairn.E("blockd.UpdateRecovery", cairn.KindNotExist, b.String(), "no replica here")
	}
	fin, err := v.store.UpdateRecovery(b, rid, newLen)
	if err != nil && cairn.KindOf(err) == cairn.KindIO {
		vs.CheckSoon()
	}
	return fin, err
}

// Verify re-reads the replica of id, in any state, against its .meta, as
// Store.Verify does: the replica, and why it is bad ("" when sound).
func (vs *Volumes) Verify(id cairn.BlockID) (cairn.Replica, string, error) {
	v := vs.holder(id)
	if v == nil {
		return cairn.Replica{}, "", cairn.E("blockd.Verify", cairn.KindNotExist, fmt.Sprint(id), "no replica here")
	}
	return v.store.Verify(id)
}

// DiskError is how the data path reports an I/O error on block b's replica:
// the volumes are checked soon, and a failed one taken out of service.
func (vs *Volumes) DiskError(b cairn.Block, err error) {
	if errors.Is(err, syscall.ENOSPC) {
		return
	}
	vs.log.Warn("I/O error on a replica; checking the data directories", zap.Stringer("block", b), zap.Error(err))
	vs.CheckSoon()
}

// CheckSoon asks Run to check every volume now.
func (vs *Volumes) CheckSoon() {
	select {
	case vs.checking <- struct{}{}:
	default:
	}
}

// Run checks every volume in service each period, and whenever CheckSoon
// asks, until ctx ends.
func (vs *Volumes) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultDiskCheck
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-vs.checking:
		}
		vs.CheckAll()
	}
}

// CheckAll checks every volume in service and takes the failed ones out.
func (vs *Volumes) CheckAll() {
	for _, v := range vs.live() {
		vs.check(v)
	}
}

// check checks v and takes it out of service if it failed; it reports
// whether v is still in service.
func (vs *Volumes) check(v *volume) bool {
	if v.out.Load() {
		return false
	}
	if err := checkDir(v.dir, vs.storageID); err != nil {
		vs.fail(v, err)
		return false
	}
	v.store.ensureReserve()
	return true
}

// checkDir checks that dir is still the data directory of storageID and
// usable: VERSION readable and naming it, and a file can be created, synced
// and removed in current/. A full disk is not a failure.
func checkDir(dir, storageID string) error {
	v, err := versionfile.Read(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("VERSION vanished: %w", err)
		}
		return fmt.Errorf("VERSION unreadable: %w", err)
	}
	if v["storageID"] != storageID {
		return fmt.Errorf("VERSION now names storage ID %q, not %s", v["storageID"], storageID)
	}
	p := filepath.Join(dir, "current", probeName)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if errors.Is(err, syscall.ENOSPC) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot create a file: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(p); err == nil {
		err = rerr
	}
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("cannot sync or remove a file: %w", err)
	}
	return nil
}

// fail takes v out of service, hands its replicas to the failure handler as
// lost, and delivers a fatal error once more volumes have failed than
// tolerated.
func (vs *Volumes) fail(v *volume, why error) {
	if !v.out.CompareAndSwap(false, true) {
		return
	}
	var lost []cairn.Block
	for _, r := range v.store.Report() {
		lost = append(lost, r.Block)
	}
	v.store.Close()
	vs.mu.Lock()
	vs.failed = append(vs.failed, fmt.Sprintf("%s: %v", v.dir, why))
	nfailed, failed, onFail := len(vs.failed), strings.Join(vs.failed, "; "), vs.onFail
	vs.mu.Unlock()
	left := len(vs.live())
	vs.log.Error("data directory failed; taken out of service", zap.String("dir", v.dir), zap.Error(why),
		zap.Int("replicas_lost", len(lost)), zap.Int("failed", nfailed), zap.Int("in_service", left), zap.Int("tolerated", vs.tolerated))
	if onFail != nil {
		onFail(v.dir, lost)
	}
	if nfailed > vs.tolerated || left == 0 {
		err := fmt.Errorf("%d of %d data directories failed, more than --failed-volumes-tolerated %d: %s",
			nfailed, nfailed+left, vs.tolerated, failed)
		select {
		case vs.fatal <- err:
		default:
		}
	}
}

// volumeFailed queues the replicas of a failed volume to be reported lost
// to every metad.
func (d *Blockd) volumeFailed(dir string, lost []cairn.Block) {
	d.met.volumeFailures.Inc()
	toEvery(d, func(a *actor) *[]cairn.Block { return &a.lost }, lost...)
}

// diskError is how the data path reports an I/O error on a replica's files:
// the disks are checked soon, and a failed one taken out of service.
func (d *Blockd) diskError(b cairn.Block, err error) { d.store.DiskError(b, err) }

// splitDirs parses --data: directories separated by commas.
func splitDirs(s string) ([]string, error) {
	var dirs []string
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			return nil, fmt.Errorf("--data %q has an empty directory name", s)
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// bytesFlag is a flag of a byte count: a whole number, optionally followed
// by K, M, G or T (powers of 1024; "KiB", "MB" and the like are read the
// same).
type bytesFlag int64

func (b *bytesFlag) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *bytesFlag) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = bytesFlag(n)
	return nil
}

// ParseBytes reads a byte count as the blockd's flags take it: a whole
// number, optionally followed by K, M, G or T (powers of 1024).
func ParseBytes(s string) (int64, error) { return parseBytes(s) }

func parseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	shift := 0
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			shift = 10 * (i + 1)
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 1048576, 64K, 10G)", s)
	}
	return n << shift, nil
}
