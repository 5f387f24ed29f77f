package metad

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// The replicated state machine of a metad group: each committed Raft entry
// is one namespace mutation's Pebble batch, applied to this member's store
// in log order together with the entry's index (raftAppliedKey), in one
// batch, so a restarted member knows which entries its store holds and
// skips them when Raft replays its log. A snapshot is a Pebble checkpoint
// of the store, streamed as a tar archive; installing one replaces the
// store directory atomically (restoreStore).

// Entry types, the first byte of a command entry.
const (
	// entryBatch: a mutation's batch (pebble.Batch.Repr).
	entryBatch = 1
	// entrySeed: the whole store of the member formatted with --peers,
	// proposed once, as the log's first command, by the first leader, so
	// every member starts from the same namespace (raftnode.go).
	entrySeed = 2
	// entryCall: a mutating call's first batch with the call's record
	// (raftcalls.go): the record's length (4 BE), the record, the batch.
	entryCall = 3
	// entryAnswer: a mutating call's answer, for the members' retry
	// caches (raftcalls.go); the store only records its index.
	entryAnswer = 4
)

// raftAppliedKey holds the index of the last entry applied to the store
// (8 bytes BE); outside the namespace (check.go leaves it out of the
// digest).
var raftAppliedKey = []byte("mraft-applied")

// raftFSM applies committed entries to the store. Raft calls Apply,
// Snapshot and Restore from one goroutine; Persist may run beside Apply.
type raftFSM struct {
	m *Metad
	// applied is the index of the last entry in the store; read by the
	// leader's goroutines too.
	mu      sync.Mutex
	applied uint64
	pipe    pipeState // of the leaders' pipelines (raftadmit.go)
	// beforeApply, when set (tests), runs before each command entry is
	// applied.
	beforeApply atomic.Pointer[func(*raft.Log)]
}

var _ raft.FSM = (*raftFSM)(nil)

func newRaftFSM(m *Metad) (*raftFSM, error) {
	f := &raftFSM{m: m}
	v, err := m.st.get(raftAppliedKey)
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("read the applied raft index: %w", err)
	default:
		if f.applied, err = parseU64(v); err != nil {
			return nil, fmt.Errorf("the applied raft index: %w", err)
		}
	}
	if f.pipe, err = loadPipeState(m.st); err != nil {
		return nil, err
	}
	return f, nil
}

// loadPipeState reads the state machine's pipeline record (zero when
// there is none yet).
func loadPipeState(st *store) (pipeState, error) {
	v, err := st.get(raftPipeKey)
	switch {
	case isNotFound(err):
		return pipeState{}, nil
	case err != nil:
		return pipeState{}, fmt.Errorf("read the raft pipeline record: %w", err)
	}
	p, err := decodePipeState(v)
	if err != nil {
		return pipeState{}, fmt.Errorf("the raft pipeline record: %w", err)
	}
	return p, nil
}

func (f *raftFSM) appliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Apply applies one committed entry. What it returns is the apply
// future's Response: nil; errDropped for a leader's pipelined entry not
// admitted (raftadmit.go); or the error that kept the entry out of the
// store (then this member's store can no longer follow the log, and it
// says so loudly).
func (f *raftFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if hook := f.beforeApply.Load(); hook != nil {
		(*hook)(l)
	}
	data := l.Data
	piped := len(data) > 0 && data[0] == entryPiped
	var h pipeHeader
	if piped {
		var err error
		if h, data, err = splitPiped(data[1:]); err != nil {
			f.m.log.Error("a committed raft entry is unreadable: this member's store stops following the log", zap.Uint64("index", l.Index), zap.Error(err))
			return fmt.Errorf("raft entry %d: %w", l.Index, err)
		}
	}
	if applied := f.appliedIndex(); l.Index <= applied {
		// In the store already: a replay after a restart, which fills
		// the retry cache again all the same (but for a dropped entry,
		// whose call was not made).
		f.m.log.Debug("raft entry in the store already: skipped", zap.Uint64("index", l.Index), zap.Uint64("term", l.Term), zap.Uint64("applied", applied))
		if !piped || !f.wasDropped(l.Index) {
			f.m.noteCalls(l.Index, data)
		}
		return nil
	}
	f.mu.Lock()
	next := f.pipe
	f.mu.Unlock()
	if piped {
		var ok bool
		if next, ok = next.admit(h, l.Index); !ok {
			if err := f.drop(l.Index, next); err != nil {
				f.m.log.Error("a dropped raft entry could not be recorded: this member's store stops following the log", zap.Uint64("index", l.Index), zap.Error(err))
				return err
			}
			f.m.log.Info("a pipelined entry built on one that did not commit is dropped", zap.Uint64("index", l.Index),
				zap.Uint64("term", h.term), zap.Uint64("seq", h.seq))
			return errDropped
		}
	} else if len(data) > 0 && data[0] != entryAnswer {
		next.lastChange = l.Index
	}
	if ce := f.m.log.Check(zap.DebugLevel, "raft entry applied"); ce != nil {
		ce.Write(zap.Uint64("index", l.Index), zap.Uint64("term", l.Term), zap.Bool("piped", piped), zap.Uint64("pipe_term", h.term),
			zap.Uint64("pipe_gen", h.gen), zap.Uint64("pipe_seq", h.seq), zap.Int("bytes", len(data)))
	}
	touched, err := applyEntry(f.m.st.db, l.Index, data, next)
	if err != nil {
		f.m.log.Error("a committed raft entry could not be applied: this member's store stops following the log", zap.Uint64("index", l.Index), zap.Error(err))
		return err
	}
	f.mu.Lock()
	f.applied = l.Index
	f.pipe = next
	f.mu.Unlock()
	f.m.noteCalls(l.Index, data)
	f.m.reloadKept(touched)
	return nil
}

// drop records that the entry at index was dropped, with the pipeline
// state after it.
func (f *raftFSM) drop(index uint64, next pipeState) error {
	b := f.m.st.db.NewBatch()
	defer b.Close()
	_ = b.Set(raftDroppedKey(index), nil, nil)
	_ = b.Set(raftPipeKey, next.encode(), nil)
	_ = b.Set(raftAppliedKey, u64(index), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("record dropped raft entry %d: %w", index, err)
	}
	f.mu.Lock()
	f.applied = index
	f.pipe = next
	f.mu.Unlock()
	return nil
}

// wasDropped reports whether the entry at index, applied before, was
// dropped.
func (f *raftFSM) wasDropped(index uint64) bool {
	_, err := f.m.st.get(raftDroppedKey(index))
	return err == nil
}

// applyEntry commits entry data, with index, to db without syncing: the
// Raft log holds the entry durably, and a store that lost it in a crash
// gets it again when the log is replayed (Snapshot syncs the store before
// the log may be truncated behind it). It returns the prefixes of the
// keys the entry changed whose records metad keeps in memory too
// (keptPrefixes).
func applyEntry(db *pebble.DB, index uint64, data []byte, pipe pipeState) (keptSet, error) {
	var touched keptSet
	if len(data) < 1 {
		return touched, errors.New("an empty raft entry")
	}
	var repr []byte
	switch data[0] {
	case entryBatch, entrySeed:
		repr = data[1:]
	case entryCall:
		_, body, err := splitCallEntry(data[1:])
		if err != nil {
			return touched, fmt.Errorf("raft entry %d: %w", index, err)
		}
		repr = body
	case entryAnswer:
	default:
		return touched, fmt.Errorf("raft entry %d of unknown type %d", index, data[0])
	}
	b := db.NewBatch()
	defer b.Close()
	if repr != nil {
		if err := b.SetRepr(append([]byte(nil), repr...)); err != nil {
			return touched, fmt.Errorf("raft entry %d: %w", index, err)
		}
	}
	touched = keptKeys(b)
	if err := b.Set(raftAppliedKey, u64(index), nil); err != nil {
		return touched, err
	}
	if err := b.Set(raftPipeKey, pipe.encode(), nil); err != nil {
		return touched, err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return touched, fmt.Errorf("apply raft entry %d: %w", index, err)
	}
	return touched, nil
}

// keptSet says which records kept in memory too an entry changed.
type keptSet struct{ blockKeys, admin bool }

// keptKeys looks through b for block token keys and admin states: the
// records a member keeps in memory as well as in its store.
func keptKeys(b *pebble.Batch) keptSet {
	var k keptSet
	r := b.Reader()
	for {
		_, key, _, ok, err := r.Next()
		if !ok || err != nil {
			return k
		}
		if len(key) > 0 {
			switch key[0] {
			case prefixBlockKey:
				k.blockKeys = true
			case prefixDecom:
				k.admin = true
			}
		}
	}
}

// encodeEntry makes a command entry of type typ from a batch.
func encodeEntry(typ byte, b *pebble.Batch) []byte {
	r := b.Repr()
	out := make([]byte, 1+len(r))
	out[0] = typ
	copy(out[1:], r)
	return out
}

// Snapshot syncs the store (so it holds at least what the snapshot does,
// before Raft truncates the log behind it) and checkpoints it into a
// directory that Persist streams and Release removes.
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	db := f.m.st.db
	if err := db.LogData(nil, pebble.Sync); err != nil {
		return nil, fmt.Errorf("snapshot: sync the store: %w", err)
	}
	dir, err := os.MkdirTemp(f.m.cfg.Dir, ".raft-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	ck := filepath.Join(dir, storeDir)
	if err := db.Checkpoint(ck, pebble.WithFlushedWAL()); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("snapshot: checkpoint the store: %w", err)
	}
	return &storeSnapshot{dir: dir, store: ck}, nil
}

// storeSnapshot is a checkpoint of the store waiting to be streamed.
type storeSnapshot struct{ dir, store string }

// Persist writes the checkpoint's files to sink as a tar archive.
func (s *storeSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeTar(sink, s.store); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("snapshot: %w", err)
	}
	return sink.Close()
}

func (s *storeSnapshot) Release() { _ = os.RemoveAll(s.dir) }

// writeTar writes the regular files of dir (flat, as a Pebble store is)
// to w.
func writeTar(w io.Writer, dir string) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range es {
		if e.Name() == "LOCK" || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		in, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, in)
		_ = in.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// readTar unpacks a snapshot into dir, which it makes: flat regular files
// only, every file synced, then the directory.
func readTar(r io.Reader, dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := h.Name
		if h.Typeflag != tar.TypeReg || name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
			return fmt.Errorf("snapshot holds %q, not a store file", name)
		}
		out, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			_ = out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			_ = out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

// Names of the store directory's neighbours during a restore: the
// snapshot is unpacked into storeIncoming, renamed storeRestored once
// whole (the commit point), and then takes the store's place.
const (
	storeIncoming = storeDir + ".incoming"
	storeRestored = storeDir + ".restored"
)

// Restore replaces the store by the snapshot in r. The new store is
// unpacked beside the old and checked to open; then, under the store's
// lock and with every reader of the store held off (Metad.serving), the
// old one is closed and the new one renamed into its place.
func (f *raftFSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	m := f.m
	dir := m.cfg.Dir
	incoming := filepath.Join(dir, storeIncoming)
	if err := os.RemoveAll(incoming); err != nil {
		return fmt.Errorf("restore a snapshot: %w", err)
	}
	if err := readTar(r, incoming); err != nil {
		_ = os.RemoveAll(incoming)
		return fmt.Errorf("restore a snapshot: unpack: %w", err)
	}
	applied, err := storeApplied(incoming)
	if err != nil {
		_ = os.RemoveAll(incoming)
		return fmt.Errorf("restore a snapshot: %w", err)
	}
	m.serving.Lock()
	defer m.serving.Unlock()
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	if err := m.st.db.Close(); err != nil {
		m.log.Warn("close the store for a snapshot", zap.Error(err))
	}
	swapErr := os.Rename(incoming, filepath.Join(dir, storeRestored))
	if swapErr == nil {
		swapErr = syncDir(dir)
	}
	if swapErr == nil {
		swapErr = finishRestore(dir)
	}
	// Whatever happened, a store is open again: the new one, or the old
	// one if the new one did not take its place.
	db, err := pebble.Open(filepath.Join(dir, storeDir), storeOptions(m.cfg.CacheSize))
	if err != nil {
		return fmt.Errorf("restore a snapshot: open the store: %w (replacing it: %v)", err, swapErr)
	}
	m.st.db = db
	if swapErr != nil {
		_ = os.RemoveAll(incoming)
		return fmt.Errorf("restore a snapshot: %w", swapErr)
	}
	if err := m.st.loadCounters(); err != nil {
		return fmt.Errorf("restore a snapshot: %w", err)
	}
	m.reloadKept(keptSet{blockKeys: true, admin: true})
	pipe, err := loadPipeState(m.st)
	if err != nil {
		return fmt.Errorf("restore a snapshot: %w", err)
	}
	m.st.dropPipeline()
	f.mu.Lock()
	f.applied = applied
	f.pipe = pipe
	f.mu.Unlock()
	m.log.Info("store replaced by a snapshot", zap.Uint64("applied_index", applied))
	return nil
}

// storeApplied opens the store in dir read-only and returns its applied
// index.
func storeApplied(dir string) (uint64, error) {
	opts := storeOptions(1 << 20)
	opts.ReadOnly = true
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return 0, fmt.Errorf("the snapshot is not a store: %w", err)
	}
	defer db.Close()
	v, closer, err := db.Get(raftAppliedKey)
	if err != nil {
		return 0, fmt.Errorf("the snapshot has no applied index: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("the snapshot's applied index is %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// finishRestore completes (or undoes) a store replacement cut short: a
// whole snapshot (storeRestored) takes the store's place; a partly
// unpacked one (storeIncoming) is removed. Called at every open, so a
// crash at any point leaves either the old store or the new one.
func finishRestore(dir string) error {
	if err := os.RemoveAll(filepath.Join(dir, storeIncoming)); err != nil {
		return err
	}
	restored := filepath.Join(dir, storeRestored)
	if _, err := os.Stat(restored); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	store := filepath.Join(dir, storeDir)
	if err := os.RemoveAll(store); err != nil {
		return err
	}
	if err := os.Rename(restored, store); err != nil {
		return err
	}
	return syncDir(dir)
}
