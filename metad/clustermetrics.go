package metad

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clusterCollector serves the cluster's state as metad sees it at
// /metrics: blockds by state, blocks and files, capacity, safe mode, and
// the replication monitor's view of the blocks. Everything is read at
// scrape time from counts metad keeps anyway (the block table's size, the
// store's file count, the queues' lengths, the last replication round's
// tally): no scrape walks the block map or the namespace. The walk over
// the blockds is one per scrape, as the status page's.
type clusterCollector struct{ m *Metad }

var (
	descBlockds        = prometheus.NewDesc("cairn_metad_blockds", "Registered blockds by liveness: live (heard from within --dead-after) or dead.", []string{"state"}, nil)
	descBlockdsAdmin   = prometheus.NewDesc("cairn_metad_blockds_admin", "Blockds by admin state: decommissioning (its replicas being copied away), decommissioned, entering_maintenance (copying what the maintenance minimum needs), in_maintenance.", []string{"state"}, nil)
	descBlocks         = prometheus.NewDesc("cairn_metad_blocks", "Blocks with at least one replica recorded in the block map.", nil, nil)
	descFiles          = prometheus.NewDesc("cairn_metad_files", "Files and directories in the namespace.", nil, nil)
	descCapacity       = prometheus.NewDesc("cairn_metad_capacity_bytes", "Capacity of the live blockds, as their last heartbeats said.", nil, nil)
	descUsed           = prometheus.NewDesc("cairn_metad_used_bytes", "Bytes of block data on the live blockds, as their last heartbeats said.", nil, nil)
	descRemaining      = prometheus.NewDesc("cairn_metad_remaining_bytes", "Bytes the live blockds can still take, as their last heartbeats said.", nil, nil)
	descSafeMode       = prometheus.NewDesc("cairn_metad_safe_mode", "1 while metad is in safe mode (read-only), else 0.", nil, nil)
	descSafeReported   = prometheus.NewDesc("cairn_metad_safe_mode_reported_blocks", "Startup safe mode: blocks the blockds have reported a good replica of.", nil, nil)
	descSafeNeeded     = prometheus.NewDesc("cairn_metad_safe_mode_needed_blocks", "Startup safe mode: blocks that must be reported before it ends (0 when not in startup safe mode).", nil, nil)
	descMissing        = prometheus.NewDesc("cairn_metad_missing_blocks", "Blocks of closed files with no good replica on a live blockd, as of the last replication round.", nil, nil)
	descCorrupt        = prometheus.NewDesc("cairn_metad_corrupt_blocks", "Blocks of closed files with at least one replica marked corrupt, as of the last replication round.", nil, nil)
	descUnder          = prometheus.NewDesc("cairn_metad_under_replicated_blocks", "Blocks of closed files with fewer live replicas than their file's replication, as of the last replication round.", nil, nil)
	descQueue          = prometheus.NewDesc("cairn_metad_replication_queue_blocks", "Blocks the last replication round found wanting a copy, by priority: highest (one live replica left), low (fewer than wanted), placed (full count but on blockds being decommissioned or too few racks).", []string{"priority"}, nil)
	descPending        = prometheus.NewDesc("cairn_metad_pending_replications", "Copies scheduled and not yet reported done, sent to their source or still queued for its next heartbeat.", []string{"state"}, nil)
	descRounds         = prometheus.NewDesc("cairn_metad_replication_rounds_total", "Rounds of the replication monitor (none run in safe mode).", nil, nil)
	descLastRoundBlock = prometheus.NewDesc("cairn_metad_replication_round_candidates", "Blocks the last replication round looked at (a full round: every block; otherwise those not plainly settled).", nil, nil)
)

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBlockds, descBlockdsAdmin, descBlocks, descFiles, descCapacity, descUsed, descRemaining,
		descSafeMode, descSafeReported, descSafeNeeded, descMissing, descCorrupt, descUnder, descQueue, descPending, descRounds, descLastRoundBlock} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	now := m.clock.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	n := m.nodes.counts(now)
	gauge(descBlockds, float64(n.live), "live")
	gauge(descBlockds, float64(n.dead), "dead")
	gauge(descBlockdsAdmin, float64(n.decommissioning), "decommissioning")
	gauge(descBlockdsAdmin, float64(n.decommissioned), "decommissioned")
	gauge(descBlockdsAdmin, float64(n.enteringMaintenance), "entering_maintenance")
	gauge(descBlockdsAdmin, float64(n.inMaintenance), "in_maintenance")
	gauge(descCapacity, float64(n.capacity))
	gauge(descUsed, float64(n.used))
	gauge(descRemaining, float64(n.remaining))
	gauge(descBlocks, float64(m.blocks.count()))
	m.st.mu.Lock()
	files := m.st.numFiles
	m.st.mu.Unlock()
	gauge(descFiles, float64(files))

	sm := m.safe.status(now)
	on := 0.0
	if sm.On {
		on = 1
	}
	gauge(descSafeMode, on)
	gauge(descSafeReported, float64(sm.Reported))
	gauge(descSafeNeeded, float64(sm.Needed))

	h := m.health.load()
	gauge(descMissing, float64(h.missing))
	gauge(descCorrupt, float64(h.corrupt))
	gauge(descUnder, float64(h.underReplicated()))
	for prio, name := range []string{"highest", "low", "placed"} {
		gauge(descQueue, float64(h.queued[prio]), name)
	}
	gauge(descLastRoundBlock, float64(h.candidates))
	ch <- prometheus.MustNewConstMetric(descRounds, prometheus.CounterValue, float64(h.rounds))
	sent, queued := m.repl.pendingCounts()
	gauge(descPending, float64(sent), "sent")
	gauge(descPending, float64(queued), "queued")
}

// replHealth is the replication monitor's tally of its last round, for
// /metrics: what it found, without a walk of its own.
type replHealth struct {
	mu   sync.Mutex
	last roundTally
}

// roundTally is what one replication round found.
type roundTally struct {
	rounds           int64
	candidates       int
	missing, corrupt int
	queued           [prioPlaced + 1]int // blocks wanting a copy, by priority
	at               time.Time           // the round's end; zero before the first
}

// underReplicated is the blocks of the round with fewer live replicas in
// service than they need (maintenance.go's target), and at least one.
func (t roundTally) underReplicated() int { return t.queued[prioHighest] + t.queued[prioLow] }

// store records the tally of a round just ended.
func (h *replHealth) store(t roundTally) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t.rounds = h.last.rounds + 1
	h.last = t
}

func (h *replHealth) load() roundTally {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// nodeCounts is the blockds by state, and the live ones' space.
type nodeCounts struct {
	live, dead                         int
	decommissioning, decommissioned    int
	enteringMaintenance, inMaintenance int
	capacity, used, remaining          int64
}

// counts tallies the registered blockds: one pass over them, no block.
func (ns *nodeSet) counts(now time.Time) nodeCounts {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var c nodeCounts
	for id, n := range ns.nodes {
		if ns.live(n, now) {
			c.live++
			c.capacity += n.hb.Capacity
			c.used += n.hb.Used
			c.remaining += n.hb.Remaining
		} else {
			c.dead++
		}
		switch ns.admin[id].state {
		case adminDecommissioning:
			c.decommissioning++
		case adminDecommissioned:
			c.decommissioned++
		case adminEnteringMaintenance:
			c.enteringMaintenance++
		case adminInMaintenance:
			c.inMaintenance++
		}
	}
	return c
}

// pendingCounts is how many copies are under way: sent to their source,
// and queued for its next heartbeat. One look per source, not per copy.
func (q *replQueue) pendingCounts() (sent, queued int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range q.transfers {
		queued += len(c)
	}
	return len(q.pending) - queued, queued
}
