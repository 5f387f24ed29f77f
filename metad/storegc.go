package metad

// Keeping the store's size bounded under churn. Pebble flushes its
// memtable only once the memtables waiting to be flushed add up to
// MemTableSize (16 MiB), and keeps every WAL file until the memtables it
// logged are flushed; a memtable never shrinks when its keys are deleted.
// So a namespace whose files are created and deleted over and over, and
// which stays small, left up to twice MemTableSize of WAL on disk (36 MB
// for an empty namespace in a test of ten minutes). metad therefore
// flushes the memtable itself once the WAL holds more than
// walFlushBytes and more than the tables hold: the WAL files behind the
// flush are then deleted (one is kept to be reused), and the tombstones
// flushed go down the levels with the compactions Pebble runs anyway,
// which drop them at the last level.

// walFlushBytes is the WAL size past which metad flushes the memtable
// when the tables are smaller.
const walFlushBytes = 1 << 20

// logged counts n bytes more written to the WAL and reports whether it is
// time to look at its size again: every walFlushBytes/4 of batches.
// Caller holds s.mu.
func (s *store) logged(n int) bool {
	s.walSince += int64(n)
	if s.walSince < walFlushBytes/4 {
		return false
	}
	s.walSince = 0
	return true
}

// maintain flushes the memtable when the WAL has outgrown walFlushBytes
// and the live tables, without waiting for the flush. It reports whether
// it started one.
func (s *store) maintain() bool {
	mt := s.db.Metrics()
	tables := uint64(0)
	for _, l := range mt.Levels {
		tables += uint64(l.TablesSize)
	}
	if mt.WAL.Size <= walFlushBytes || mt.WAL.Size <= tables {
		return false
	}
	_, err := s.db.AsyncFlush()
	return err == nil
}
