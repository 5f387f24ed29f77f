package metad

import (
	"sync"
	"time"
)

// blockHealth is the replication monitor's count of blocks in trouble at
// the end of its last round, for the web UI's overview. A round looks at
// every block not settled in memory (settledBlock), which every block in
// trouble is; a file asking for more than the default replication is
// looked at on full rounds only, as the monitor itself does. The counts
// are those of dfsadmin -report: under-replicated blocks have a live good
// replica but fewer in service than their file wants, missing ones have
// no live good replica, and corrupt ones have a replica marked bad.
type blockHealth struct {
	mu                      sync.Mutex
	under, corrupt, missing int64
	at                      time.Time // the round's end; zero before the first
}

// healthTally counts one round's blocks.
type healthTally struct{ under, corrupt, missing int64 }

// count adds one block with live good replicas of which inService are on
// blockds in service, that needs want live replicas in service, with maint
// replicas on blockds in maintenance (live or not) and corrupt replicas
// marked bad.
func (t *healthTally) count(live, inService, want, maint, corrupt int) {
	switch {
	case live == 0 && maint == 0:
		t.missing++
	case live == 0:
		// Every replica on blockds in maintenance that are switched
		// off: neither missing nor under-replicated, as fsck says.
	case inService < want:
		t.under++
	}
	if corrupt > 0 {
		t.corrupt++
	}
}

// record makes t the counts as of at.
func (h *blockHealth) record(t healthTally, at time.Time) {
	h.mu.Lock()
	h.under, h.corrupt, h.missing, h.at = t.under, t.corrupt, t.missing, at
	h.mu.Unlock()
}

// get returns the last round's counts and when it ended.
func (h *blockHealth) get() (under, corrupt, missing int64, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.under, h.corrupt, h.missing, h.at
}
