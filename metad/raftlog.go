package metad

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// raftLog is the Raft log and the Raft stable store (current term, vote)
// of a replicated metad, in a Pebble of its own (DIR/raft), apart from the
// namespace store: the log is written by Raft, synced at every append, and
// truncated behind snapshots; the namespace store only receives committed
// entries (raftfsm.go).
//
// Keys: "l" index(8 BE) -> an encoded raft.Log; "s" name -> a stable value.
type raftLog struct{ db *pebble.DB }

const (
	raftLogPrefix    = 'l'
	raftStablePrefix = 's'
)

var (
	_ raft.LogStore    = (*raftLog)(nil)
	_ raft.StableStore = (*raftLog)(nil)
)

// openRaftLog opens (creating if needed) the Raft log in dir.
func openRaftLog(dir string) (*raftLog, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}, CacheSize: 8 << 20, MemTableSize: 16 << 20})
	if err != nil {
		return nil, fmt.Errorf("open the raft log in %s: %w", dir, err)
	}
	return &raftLog{db: db}, nil
}

func (l *raftLog) close() error { return l.db.Close() }

func raftLogKey(i uint64) []byte {
	k := make([]byte, 9)
	k[0] = raftLogPrefix
	binary.BigEndian.PutUint64(k[1:], i)
	return k
}

// encodeRaftLog lays a log entry out as index, term, type, appendedAt
// (Unix ns), then data and extensions, each length-prefixed.
func encodeRaftLog(e *raft.Log) []byte {
	b := make([]byte, 0, 8+8+1+8+8+len(e.Data)+len(e.Extensions))
	b = binary.BigEndian.AppendUint64(b, e.Index)
	b = binary.BigEndian.AppendUint64(b, e.Term)
	b = append(b, byte(e.Type))
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Data)))
	b = append(b, e.Data...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Extensions)))
	return append(b, e.Extensions...)
}

func decodeRaftLog(v []byte, e *raft.Log) error {
	const fixed = 8 + 8 + 1 + 8 + 4
	if len(v) < fixed {
		return fmt.Errorf("raft log record of %d bytes", len(v))
	}
	e.Index = binary.BigEndian.Uint64(v)
	e.Term = binary.BigEndian.Uint64(v[8:])
	e.Type = raft.LogType(v[16])
	e.AppendedAt = time.Time{}
	if at := int64(binary.BigEndian.Uint64(v[17:])); at != 0 {
		e.AppendedAt = time.Unix(0, at)
	}
	n := int(binary.BigEndian.Uint32(v[25:]))
	rest := v[fixed:]
	if n > len(rest)-4 {
		return fmt.Errorf("raft log record %d: data of %d bytes in %d", e.Index, n, len(rest))
	}
	e.Data = append([]byte(nil), rest[:n]...)
	rest = rest[n:]
	m := int(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if m != len(rest) {
		return fmt.Errorf("raft log record %d: extensions of %d bytes in %d", e.Index, m, len(rest))
	}
	e.Extensions = nil
	if m > 0 {
		e.Extensions = append([]byte(nil), rest...)
	}
	return nil
}

// edge returns the first (or last) index in the log, 0 when empty.
func (l *raftLog) edge(last bool) (uint64, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{raftLogPrefix}, UpperBound: []byte{raftLogPrefix + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	ok := it.First()
	if last {
		ok = it.Last()
	}
	if !ok {
		return 0, it.Error()
	}
	return binary.BigEndian.Uint64(it.Key()[1:]), nil
}

func (l *raftLog) FirstIndex() (uint64, error) { return l.edge(false) }
func (l *raftLog) LastIndex() (uint64, error)  { return l.edge(true) }

func (l *raftLog) GetLog(index uint64, e *raft.Log) error {
	v, closer, err := l.db.Get(raftLogKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raft log %d: %w", index, err)
	}
	defer closer.Close()
	return decodeRaftLog(v, e)
}

func (l *raftLog) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

// StoreLogs writes the entries in one synced batch: Raft counts an entry
// as durable on this member once this returns.
func (l *raftLog) StoreLogs(es []*raft.Log) error {
	b := l.db.NewBatch()
	defer b.Close()
	for _, e := range es {
		if err := b.Set(raftLogKey(e.Index), encodeRaftLog(e), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("append to the raft log: %w", err)
	}
	return nil
}

func (l *raftLog) DeleteRange(lo, hi uint64) error {
	if hi < lo {
		return nil
	}
	end := raftLogKey(hi + 1)
	if hi == ^uint64(0) {
		end = []byte{raftLogPrefix + 1}
	}
	if err := l.db.DeleteRange(raftLogKey(lo), end, pebble.Sync); err != nil {
		return fmt.Errorf("truncate the raft log %d..%d: %w", lo, hi, err)
	}
	return nil
}

func stableKey(k []byte) []byte { return append([]byte{raftStablePrefix}, k...) }

func (l *raftLog) Set(k, v []byte) error {
	if err := l.db.Set(stableKey(k), v, pebble.Sync); err != nil {
		return fmt.Errorf("raft stable store %s: %w", k, err)
	}
	return nil
}

func (l *raftLog) Get(k []byte) ([]byte, error) {
	v, closer, err := l.db.Get(stableKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raft stable store %s: %w", k, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func (l *raftLog) SetUint64(k []byte, v uint64) error {
	return l.Set(k, binary.BigEndian.AppendUint64(nil, v))
}

func (l *raftLog) GetUint64(k []byte) (uint64, error) {
	v, err := l.Get(k)
	if err != nil || len(v) == 0 {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft stable store %s: a value of %d bytes, not 8", k, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
