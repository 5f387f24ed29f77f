package blockd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
	"cairn/internal/versionfile"
)

// LayoutVersion is the version of the data directory layout.
const LayoutVersion = 1

const lockName = "in_use.lock"

// Store is one blockd data directory: VERSION, a lock held while the blockd
// runs, replicas being written in current/rbw and finalized replicas in
// current/finalized/subdir<a>/subdir<b>.
type Store struct {
	dir  string
	lock *os.File
	log  *zap.Logger
	fs   fileSystem // every change to the replicas' files goes through it

	leafMu sync.Mutex
	leaves map[string]bool // finalized/ leaves made durable in this run

	reserveMu sync.Mutex // the metadata reserve (reserve.go)

	mu       sync.Mutex
	version  map[string]string
	replicas map[cairn.BlockID]replica     // finalized
	rbw      map[cairn.BlockID]*rbwReplica // not finalized: being written (RBW), left for recovery (RWR), under recovery (RUR)
	used     int64                         // bytes of finalized data and meta
}

type replica struct {
	gs      cairn.GenStamp
	len     int64
	metaLen int64
}

func (r replica) disk() int64 { return r.len + r.metaLen }

// OpenStore opens (creating on first use) a data directory and locks it,
// so a second blockd on the same directory is refused. What an earlier run
// left half done is completed or undone first (see load).
func OpenStore(dir string, log *zap.Logger) (*Store, error) {
	return openStore(dir, log, osFS{})
}

func openStore(dir string, log *zap.Logger, fsys fileSystem) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "current", "rbw"), filepath.Join(dir, "current", "finalized")} {
		if _, err := mkdirAll(fsys, d); err != nil {
			return nil, fmt.Errorf("blockd store: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("blockd store: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("blockd store: %s is in use by another blockd (lock %s): %w", dir, lockName, err)
	}
	_ = lock.Truncate(0)
	_, _ = lock.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	s := &Store{dir: dir, lock: lock, log: log, fs: fsys, leaves: map[string]bool{},
		replicas: map[cairn.BlockID]replica{}, rbw: map[cairn.BlockID]*rbwReplica{}}
	if err := s.loadVersion(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	s.ensureReserve()
	return s, nil
}

func (s *Store) loadVersion() error {
	v, err := versionfile.Read(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		v = map[string]string{
			"storageID":     versionfile.NewID("DS-"),
			"cTime":         strconv.FormatInt(time.Now().Unix(), 10),
			"layoutVersion": strconv.Itoa(LayoutVersion),
			"storageType":   "BLOCKD",
			"namespaceID":   "",
		}
		if err := versionfile.Write(s.dir, v); err != nil {
			return err
		}
		s.log.Info("new data directory", zap.String("dir", s.dir), zap.String("storage_id", v["storageID"]))
	} else if err != nil {
		return fmt.Errorf("blockd store %s: %w", s.dir, err)
	}
	if v["storageID"] == "" {
		return fmt.Errorf("blockd store %s: VERSION has no storageID", s.dir)
	}
	if lv, _ := strconv.Atoi(v["layoutVersion"]); lv > LayoutVersion {
		return fmt.Errorf("blockd store %s: layout version %d is newer than this blockd's %d", s.dir, lv, LayoutVersion)
	}
	s.version = v
	return nil
}

// StorageID is the directory's stable identity.
func (s *Store) StorageID() string { return s.version["storageID"] }

// NamespaceID is the namespace the directory belongs to, "" before the
// first registration.
func (s *Store) NamespaceID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version["namespaceID"]
}

// SetNamespaceID records the namespace on first registration.
func (s *Store) SetNamespaceID(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version["namespaceID"] == id {
		return nil
	}
	v := map[string]string{}
	for k, x := range s.version {
		v[k] = x
	}
	v["namespaceID"] = id
	if err := versionfile.Write(s.dir, v); err != nil {
		return err
	}
	s.version = v
	return nil
}

// Close releases the directory lock.
func (s *Store) Close() {
	if s.lock != nil {
		_ = s.lock.Close()
		s.lock = nil
	}
}

func (s *Store) rbwDir() string { return filepath.Join(s.dir, "current", "rbw") }

func (s *Store) finalizedDir(id cairn.BlockID) string {
	return filepath.Join(s.dir, "current", "finalized", checksum.FinalizedSubdir(uint64(id)))
}

// BlockPath and MetaPath locate a finalized replica's files.
func (s *Store) BlockPath(b cairn.Block) string {
	return filepath.Join(s.finalizedDir(b.ID), checksum.BlockFileName(uint64(b.ID)))
}

// MetaPath is the path of a finalized replica's .meta file.
func (s *Store) MetaPath(b cairn.Block) string {
	return filepath.Join(s.finalizedDir(b.ID), checksum.MetaFileName(uint64(b.ID), uint64(b.GenStamp)))
}

// Report lists every replica, in every state, with its stamp and length:
// what a full block report tells metad.
func (s *Store) Report() []cairn.Replica {
	s.mu.Lock()
	out := make([]cairn.Replica, 0, len(s.replicas)+len(s.rbw))
	for id, r := range s.replicas {
		out = append(out, cairn.Replica{Block: cairn.Block{ID: id, GenStamp: r.gs, Len: r.len}, State: cairn.ReplicaFinalized})
	}
	open := make([]*rbwReplica, 0, len(s.rbw))
	for _, w := range s.rbw {
		open = append(open, w)
	}
	s.mu.Unlock()
	for _, w := range open {
		w.mu.RLock()
		if !w.done {
			out = append(out, cairn.Replica{Block: w.b, State: w.state})
		}
		w.mu.RUnlock()
	}
	return out
}

// Finalized lists every finalized replica.
func (s *Store) Finalized() []cairn.Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]cairn.Block, 0, len(s.replicas))
	for id, r := range s.replicas {
		out = append(out, cairn.Block{ID: id, GenStamp: r.gs, Len: r.len})
	}
	return out
}

// Lookup returns the finalized replica of block id.
func (s *Store) Lookup(id cairn.BlockID) (cairn.Block, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.replicas[id]
	return cairn.Block{ID: id, GenStamp: r.gs, Len: r.len}, ok
}

// Usage returns the disk's capacity and free bytes and what replicas use.
func (s *Store) Usage() (capacity, used, remaining int64) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err == nil {
		capacity = int64(st.Blocks) * st.Bsize
		remaining = int64(st.Bavail) * st.Bsize
	}
	s.mu.Lock()
	used = s.used
	s.mu.Unlock()
	return capacity, used, remaining
}

// Delete removes the replica of b.ID, in any state, if its stamp is not
// newer than b's; one a stream is writing is left alone.
func (s *Store) Delete(b cairn.Block) error {
	s.mu.Lock()
	r, ok := s.replicas[b.ID]
	if w := s.rbw[b.ID]; !ok && w != nil {
		s.mu.Unlock()
		return w.deleteIdle(b.GenStamp)
	}
	s.mu.Unlock()
	if !ok || r.gs > b.GenStamp {
		return nil
	}
	return s.deleteFinalized(cairn.Block{ID: b.ID, GenStamp: r.gs})
}

// deleteFinalized removes the finalized replica of have.ID if it is still
// at have's stamp: the block file first, then the .meta, so a crash between
// leaves a .meta alone, which the next start removes.
func (s *Store) deleteFinalized(have cairn.Block) error {
	s.mu.Lock()
	r, ok := s.replicas[have.ID]
	if !ok || r.gs != have.GenStamp {
		s.mu.Unlock()
		return nil
	}
	delete(s.replicas, have.ID)
	s.used -= r.disk()
	s.mu.Unlock()
	err := removeIfExists(s.fs, s.BlockPath(have))
	if err == nil {
		err = removeIfExists(s.fs, s.MetaPath(have))
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", have, err)
	}
	return nil
}

// OpenReplica opens a finalized replica's data and meta for reading. A
// replica older than want's generation stamp is reported stale.
func (s *Store) OpenReplica(want cairn.Block) (cairn.Block, *os.File, *os.File, error) {
	const op = "blockd.OpenReplica"
	have, ok := s.Lookup(want.ID)
	if !ok {
		return have, nil, nil, cairn.E(op, cairn.KindNotExist, want.String(), "no finalized replica here")
	}
	if have.GenStamp < want.GenStamp {
		return have, nil, nil, cairn.E(op, cairn.KindNotExist, want.String(), fmt.Sprintf("replica is stale (generation stamp %d)", have.GenStamp))
	}
	data, err := os.Open(s.BlockPath(have))
	if err != nil {
		return have, nil, nil, cairn.E(op, cairn.KindIO, want.String(), strings.TrimPrefix(err.Error(), "open "))
	}
	meta, err := os.Open(s.MetaPath(have))
	if err != nil {
		_ = data.Close()
		return have, nil, nil, cairn.E(op, cairn.KindIO, want.String(), strings.TrimPrefix(err.Error(), "open "))
	}
	return have, data, meta, nil
}

// holds reports whether the store has a replica of id, finalized or being
// written.
func (s *Store) holds(id cairn.BlockID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.replicas[id]
	return ok || s.rbw[id] != nil
}

// setIdentity rewrites VERSION with the storage and namespace IDs of the
// blockd the directory belongs to, for a directory joining a blockd's set
// of data directories. It is called before the store serves.
func (s *Store) setIdentity(storageID, namespaceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := map[string]string{}
	for k, x := range s.version {
		v[k] = x
	}
	v["storageID"] = storageID
	v["namespaceID"] = namespaceID
	if err := versionfile.Write(s.dir, v); err != nil {
		return err
	}
	s.version = v
	return nil
}
