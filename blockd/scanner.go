package blockd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
	"cairn/internal/versionfile"
)

// Scanner defaults, HDFS's: every replica verified once in three weeks, at
// most 1 MiB/s read from each disk.
const (
	DefaultScanPeriod = 3 * 7 * 24 * time.Hour
	DefaultScanRate   = 1 << 20
)

const (
	// cursorName is the scanner's cursor file in DIR/current.
	cursorName = "scanner.cursor"
	// cursorFormat is the version of the cursor file's contents.
	cursorFormat = 1
	// cursorSaveEvery bounds how often the cursor is written during a pass;
	// a restart verifies again at most this much work.
	cursorSaveEvery = 30 * time.Second
	// scanPiece is the most bytes read between two waits for the rate, and
	// the token bucket's depth.
	scanPiece = 64 << 10
	// suspectMemory is how long a suspect replica, once verified, is not
	// verified again when it is suspected again.
	suspectMemory = 10 * time.Minute
	// maxSuspects and maxPendingBad bound what waits in memory.
	maxSuspects   = 1024
	maxPendingBad = 4096
)

// Clock is the scanner's time: Now, and a channel that fires after d.
// Tests pass one that moves forward only when asked to wait.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// sleep waits d on c, or until ctx ends.
func sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.After(d):
		return nil
	}
}

// bucket is a token bucket of bytes: rate tokens a second, at most depth
// saved up. Taking more than there are runs into debt, and take says how
// long to wait for the debt to be paid.
type bucket struct {
	rate   float64
	depth  float64
	tokens float64
	last   time.Time
}

func newBucket(rate int64, now time.Time) *bucket {
	return &bucket{rate: float64(rate), depth: scanPiece, tokens: scanPiece, last: now}
}

// take takes n tokens at now and returns how long to wait before going on.
func (b *bucket) take(now time.Time, n int) time.Duration {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.depth, b.tokens+dt.Seconds()*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// ScanConfig configures a Scanner. Zero values take the defaults.
type ScanConfig struct {
	Period time.Duration // every replica verified once within this
	Rate   int64         // bytes per second read from each volume
	Clock  Clock
	Logger *zap.Logger
	// StorageID names this blockd in reports.
	StorageID string
	// Report sends bad replicas to metad.
	Report func(ctx context.Context, bad []cairn.BadReplica) error
}

// Scanner verifies every finalized replica of every volume against its
// .meta, once a period, reading at most Rate bytes a second from each disk.
// Each volume keeps its cursor in DIR/current/scanner.cursor, so a restart
// resumes the pass where it stopped. Replicas suspected by a failed read are
// verified first. Each bad replica is reported to metad with its reason.
type Scanner struct {
	cfg  ScanConfig
	vols *Volumes
	per  map[*volume]*volumeScanner

	mu      sync.Mutex
	pending []cairn.BadReplica // found bad, not yet accepted by metad

	// Totals, for logs and tests.
	verified atomic.Int64 // replicas
	bytes    atomic.Int64 // block bytes read
	bad      atomic.Int64 // replicas found bad
	lastPass atomic.Int64 // when a volume's pass last ended, Unix nanoseconds; 0: none yet

	// observe, when set (by tests), sees every replica verified and why it
	// is bad ("" if good).
	observe func(b cairn.Block, reason string)
}

// NewScanner makes a scanner of every volume in service.
func NewScanner(vols *Volumes, cfg ScanConfig) *Scanner {
	if cfg.Period <= 0 {
		cfg.Period = DefaultScanPeriod
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultScanRate
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Scanner{cfg: cfg, vols: vols, per: map[*volume]*volumeScanner{}}
	now := cfg.Clock.Now()
	for _, v := range vols.live() {
		vs := &volumeScanner{s: s, vol: v, bucket: newBucket(cfg.Rate, now), recent: map[cairn.BlockID]time.Time{}, wake: make(chan struct{}, 1)}
		vs.loadCursor()
		if vs.cur.done {
			s.passEnded(vs.cur.passEnd)
		}
		s.per[v] = vs
	}
	return s
}

// passEnded notes that a volume's pass ended at t, for /metrics.
func (s *Scanner) passEnded(t time.Time) {
	for {
		old := s.lastPass.Load()
		if t.UnixNano() <= old || s.lastPass.CompareAndSwap(old, t.UnixNano()) {
			return
		}
	}
}

// Run scans every volume, each in its own goroutine, until ctx ends or the
// volume is taken out of service.
func (s *Scanner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, vs := range s.per {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs.run(ctx)
		}()
	}
	wg.Wait()
}

// Suspect queues the replica of b for verification before the rest of the
// pass, e.g. after a read of it failed.
func (s *Scanner) Suspect(b cairn.Block) {
	v, _, ok := s.vols.holding(b.ID)
	if !ok {
		return
	}
	vs := s.per[v]
	if vs == nil {
		return
	}
	vs.mu.Lock()
	if len(vs.suspects) < maxSuspects && !slices.Contains(vs.suspects, b.ID) {
		vs.suspects = append(vs.suspects, b.ID)
	}
	vs.mu.Unlock()
	select {
	case vs.wake <- struct{}{}:
	default:
	}
}

// report sends bad replicas to metad, with any earlier ones metad did not
// take; those it does not take now wait for the next call.
func (s *Scanner) report(ctx context.Context, bad ...cairn.BadReplica) {
	s.mu.Lock()
	all := append(s.pending, bad...)
	s.pending = nil
	s.mu.Unlock()
	if len(all) == 0 || s.cfg.Report == nil {
		return
	}
	if err := s.cfg.Report(ctx, all); err != nil {
		s.cfg.Logger.Warn("report bad replicas to metad failed; will retry", zap.Int("replicas", len(all)), zap.Error(err))
		s.mu.Lock()
		s.pending = append(all, s.pending...)
		if len(s.pending) > maxPendingBad {
			s.pending = s.pending[len(s.pending)-maxPendingBad:]
		}
		s.mu.Unlock()
	}
}

// cursor is where a volume's pass is.
type cursor struct {
	passStart time.Time     // when the current (or last) pass began; zero before the first
	last      cairn.BlockID // the last replica verified in this pass
	hasLast   bool
	done      bool      // the pass is complete
	passEnd   time.Time // when it completed
}

// volumeScanner scans one volume.
type volumeScanner struct {
	s      *Scanner
	vol    *volume
	bucket *bucket
	cur    cursor
	saved  time.Time       // when the cursor was last written
	todo   []cairn.BlockID // the rest of this pass, ascending; nil: not listed yet
	wake   chan struct{}

	mu       sync.Mutex
	suspects []cairn.BlockID
	recent   map[cairn.BlockID]time.Time // suspects verified, when
}

func (vs *volumeScanner) log() *zap.Logger {
	return vs.s.cfg.Logger.With(zap.String("dir", vs.vol.dir))
}

func (vs *volumeScanner) run(ctx context.Context) {
	defer vs.saveCursor()
	for ctx.Err() == nil && !vs.vol.out.Load() {
		wait := vs.step(ctx)
		if wait <= 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-vs.wake:
		case <-vs.s.cfg.Clock.After(wait):
		}
	}
}

// step does one piece of work: a suspect, the next replica of the pass, or
// the end of the pass. It returns how long to wait before the next step; 0
// means at once.
func (vs *volumeScanner) step(ctx context.Context) time.Duration {
	s := vs.s
	s.report(ctx)
	clock := s.cfg.Clock
	if id, ok := vs.nextSuspect(clock.Now()); ok {
		if b, ok := vs.vol.store.Lookup(id); ok {
			vs.verify(ctx, b)
		}
		vs.mu.Lock()
		vs.recent[id] = clock.Now()
		vs.mu.Unlock()
		return 0
	}
	now := clock.Now()
	if vs.cur.passStart.IsZero() || vs.cur.passStart.After(now) {
		vs.startPass(now)
	}
	if vs.cur.done {
		due := vs.cur.passStart.Add(s.cfg.Period)
		if now.Before(due) {
			return due.Sub(now)
		}
		vs.startPass(now)
	}
	if vs.todo == nil {
		vs.todo = vs.list()
	}
	if len(vs.todo) == 0 {
		vs.cur.done, vs.cur.passEnd = true, now
		s.passEnded(now)
		vs.todo = nil
		vs.saveCursor()
		took := now.Sub(vs.cur.passStart)
		vs.log().Info("block scan pass complete", zap.Duration("took", took), zap.Int64("replicas_verified", s.verified.Load()),
			zap.Int64("bytes_verified", s.bytes.Load()), zap.Int64("bad_replicas", s.bad.Load()))
		if took > s.cfg.Period {
			vs.log().Warn("block scan pass took longer than its period; raise --scan-rate", zap.Duration("took", took), zap.Duration("period", s.cfg.Period))
		}
		return max(0, vs.cur.passStart.Add(s.cfg.Period).Sub(now))
	}
	id := vs.todo[0]
	vs.todo = vs.todo[1:]
	if b, ok := vs.vol.store.Lookup(id); ok {
		vs.verify(ctx, b)
	}
	if ctx.Err() != nil {
		return 0 // not verified to the end: the pass resumes with id
	}
	vs.cur.last, vs.cur.hasLast = id, true
	if clock.Now().Sub(vs.saved) >= cursorSaveEvery {
		vs.saveCursor()
	}
	return 0
}

func (vs *volumeScanner) startPass(now time.Time) {
	vs.cur = cursor{passStart: now}
	vs.todo = nil
	vs.saveCursor()
}

// list returns the finalized replicas still to verify in this pass.
func (vs *volumeScanner) list() []cairn.BlockID {
	var ids []cairn.BlockID
	for _, b := range vs.vol.store.Finalized() {
		if !vs.cur.hasLast || b.ID > vs.cur.last {
			ids = append(ids, b.ID)
		}
	}
	slices.Sort(ids)
	if ids == nil {
		ids = []cairn.BlockID{}
	}
	return ids
}

// nextSuspect pops the first suspect not verified in the last
// suspectMemory.
func (vs *volumeScanner) nextSuspect(now time.Time) (cairn.BlockID, bool) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for id, at := range vs.recent {
		if now.Sub(at) >= suspectMemory {
			delete(vs.recent, id)
		}
	}
	for len(vs.suspects) > 0 {
		id := vs.suspects[0]
		vs.suspects = vs.suspects[1:]
		if _, seen := vs.recent[id]; !seen {
			return id, true
		}
	}
	return 0, false
}

// verify checks the replica b and reports it to metad if it is bad and
// still the replica the volume holds.
func (vs *volumeScanner) verify(ctx context.Context, b cairn.Block) {
	reason, ioErr := vs.check(ctx, b)
	if ctx.Err() != nil {
		return
	}
	vs.s.verified.Add(1)
	if vs.s.observe != nil {
		vs.s.observe(b, reason)
	}
	if reason == "" {
		return
	}
	if now, ok := vs.vol.store.Lookup(b.ID); !ok || now.GenStamp != b.GenStamp {
		return // deleted or reopened while it was read
	}
	if ioErr != nil {
		vs.s.vols.DiskError(b, ioErr)
	}
	vs.s.bad.Add(1)
	vs.log().Warn("block scanner found a bad replica", zap.Stringer("block", b), zap.String("reason", reason))
	vs.s.report(ctx, cairn.BadReplica{Block: b, StorageID: vs.s.cfg.StorageID, Reason: reason})
}

// check verifies the replica b against its .meta, reading the block at the
// volume's rate. It returns why the replica is bad ("" when it is good),
// and the I/O error behind it when the disk, not the data, failed.
func (vs *volumeScanner) check(ctx context.Context, b cairn.Block) (reason string, ioErr error) {
	store := vs.vol.store
	meta, err := os.Open(store.MetaPath(b))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if other := otherMetas(store.BlockPath(b), b); len(other) > 0 {
				return fmt.Sprintf("stale generation stamp: the replica is at %d, beside it is only %s", b.GenStamp, strings.Join(other, ", ")), nil
			}
			return fmt.Sprintf("missing or unreadable meta: %v", err), nil
		}
		return fmt.Sprintf("missing or unreadable meta: %v", err), err
	}
	defer meta.Close()
	data, err := os.Open(store.BlockPath(b))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("missing or unreadable block file: %v", err), nil
		}
		return fmt.Sprintf("missing or unreadable block file: %v", err), err
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return fmt.Sprintf("missing or unreadable block file: %v", err), err
	}
	return verifyReplicaFiles(b, st.Size(), meta, &rateReader{ctx: ctx, r: data, vs: vs})
}

// verifyReplicaFiles checks the replica b, whose block file (of size bytes)
// reads through block and whose .meta is meta, positioned at its start. It
// is shared by the scanner and `cairn blockd verify`. It returns why the
// replica is bad, "" if it is good, and the I/O error when reading failed
// for a reason other than the data.
func verifyReplicaFiles(b cairn.Block, size int64, meta io.ReadSeeker, block io.Reader) (reason string, ioErr error) {
	if size != b.Len {
		return fmt.Sprintf("length mismatch: block file has %d bytes, the replica was finalized with %d", size, b.Len), nil
	}
	hb := make([]byte, checksum.HeaderSize)
	n, err := io.ReadFull(meta, hb)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("missing or unreadable meta: %v", err), err
	}
	h, err := checksum.ParseHeader(hb[:n])
	if err != nil {
		return "missing or unreadable meta: " + corruptionReason(err), nil
	}
	if h.BlockID != uint64(b.ID) {
		return fmt.Sprintf("missing or unreadable meta: its header names block %d", h.BlockID), nil
	}
	if h.GenStamp != uint64(b.GenStamp) {
		return fmt.Sprintf("stale generation stamp: meta header has %d, the replica is at %d", h.GenStamp, b.GenStamp), nil
	}
	if _, err := meta.Seek(0, io.SeekStart); err != nil {
		return fmt.Sprintf("missing or unreadable meta: %v", err), err
	}
	err = checksum.VerifyFile(block, size, meta)
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "", nil
	case checksum.IsCorruption(err):
		return corruptionReason(err), nil
	default:
		return fmt.Sprintf("unreadable replica: %v", err), err
	}
}

// corruptionReason is a corruption error's reason without the block id:
// "checksum mismatch at chunk 3 (offset 49152)".
func corruptionReason(err error) string {
	var ce *checksum.CorruptionError
	if !errors.As(err, &ce) {
		return err.Error()
	}
	if ce.Chunk >= 0 && ce.Offset >= 0 {
		return fmt.Sprintf("%s at chunk %d (offset %d)", ce.Reason, ce.Chunk, ce.Offset)
	}
	if ce.Chunk >= 0 {
		return fmt.Sprintf("%s at chunk %d", ce.Reason, ce.Chunk)
	}
	return ce.Reason
}

// otherMetas lists the .meta files of b's block beside blockPath other than
// b's own.
func otherMetas(blockPath string, b cairn.Block) []string {
	ents, _ := os.ReadDir(filepath.Dir(blockPath))
	var out []string
	for _, e := range ents {
		if id, gs, ok := checksum.ParseMetaFileName(e.Name()); ok && id == uint64(b.ID) && gs != uint64(b.GenStamp) {
			out = append(out, e.Name())
		}
	}
	return out
}

// rateReader reads at most scanPiece bytes at a time and waits after each
// read for the volume's token bucket.
type rateReader struct {
	ctx context.Context
	r   io.Reader
	vs  *volumeScanner
}

func (r *rateReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) > scanPiece {
		p = p[:scanPiece]
	}
	n, err := r.r.Read(p)
	if n > 0 {
		r.vs.s.bytes.Add(int64(n))
		clock := r.vs.s.cfg.Clock
		if werr := sleep(r.ctx, clock, r.vs.bucket.take(clock.Now(), n)); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// The cursor file, DIR/current/scanner.cursor: "key=value" lines (see
// docs/FORMAT.md), written atomically.
func (vs *volumeScanner) cursorPath() string {
	return filepath.Join(vs.vol.dir, "current", cursorName)
}

// loadCursor reads the volume's cursor; a missing or unreadable one starts
// a new pass.
func (vs *volumeScanner) loadCursor() {
	b, err := os.ReadFile(vs.cursorPath())
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		vs.cur, err = parseCursor(b)
	}
	if err != nil {
		vs.log().Warn("scanner cursor unreadable; starting a new pass", zap.String("file", vs.cursorPath()), zap.Error(err))
		vs.cur = cursor{}
	}
}

func parseCursor(b []byte) (cursor, error) {
	kv, err := versionfile.Parse(b)
	if err != nil {
		return cursor{}, err
	}
	if kv["format"] != strconv.Itoa(cursorFormat) {
		return cursor{}, fmt.Errorf("unknown cursor format %q", kv["format"])
	}
	var c cursor
	if c.passStart, err = time.Parse(time.RFC3339Nano, kv["passStart"]); err != nil {
		return cursor{}, fmt.Errorf("passStart: %w", err)
	}
	if v, ok := kv["last"]; ok {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cursor{}, fmt.Errorf("last: %w", err)
		}
		c.last, c.hasLast = cairn.BlockID(id), true
	}
	if v, ok := kv["passEnd"]; ok {
		if c.passEnd, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return cursor{}, fmt.Errorf("passEnd: %w", err)
		}
		c.done = true
	}
	return c, nil
}

func (c cursor) marshal() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "format=%d\n", cursorFormat)
	if c.hasLast {
		fmt.Fprintf(&b, "last=%d\n", c.last)
	}
	if c.done {
		fmt.Fprintf(&b, "passEnd=%s\n", c.passEnd.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(&b, "passStart=%s\n", c.passStart.UTC().Format(time.RFC3339Nano))
	return []byte(b.String())
}

// saveCursor writes the cursor atomically: temporary file, fsync, rename,
// fsync of the directory. A failure is logged; the pass goes on.
func (vs *volumeScanner) saveCursor() {
	if vs.cur.passStart.IsZero() || vs.vol.out.Load() {
		return
	}
	vs.saved = vs.s.cfg.Clock.Now()
	if err := writeFileAtomic(vs.cursorPath(), vs.cur.marshal()); err != nil {
		vs.log().Warn("cannot save the scanner cursor", zap.Error(err))
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = versionfile.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// suspect asks the block scanner to verify b's replica before the rest of
// its pass: the data path calls it when a read of the replica failed.
func (d *Blockd) suspect(b cairn.Block) {
	if d.scan != nil {
		d.scan.Suspect(b)
	}
}
