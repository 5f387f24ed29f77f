package metad

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// Maintenance, as HDFS's DatanodeAdminManager has it: a blockd taken out
// for a while (a reboot, a disk swap) without a storm of copies. A blockd
// entering maintenance ("Entering maintenance") takes no new replica and
// is offered to readers last, as one being decommissioned; but its
// replicas count as "in maintenance": a block wants only
// max(replication - replicas in maintenance, min(--maintenance-min-replication,
// replication)) live replicas on blockds in service (HDFS's
// getExpectedLiveRedundancyNum), so the replication monitor copies only
// the blocks that would otherwise be left with fewer than the maintenance
// minimum. Once every block it holds has that many (as its last full
// report since it registered said), it is "In maintenance" and may be
// switched off: dead, its replicas are still counted as in maintenance and
// not copied elsewhere; readers skip it; fsck calls none of its blocks
// missing. A blockd that is dead when its maintenance starts goes straight
// to "In maintenance", as in HDFS.
//
// Maintenance ends at -recommission, or by itself at its expiry: the
// blockd is in service again; if it is live, its replicas count again and
// the extra ones are trimmed; if it is dead, the monitor copies its blocks
// as for any dead blockd. The state and expiry live with the other admin
// states in metad's store ("a" keys), so a restart keeps them. The
// exclude file (--hosts-exclude, -refreshNodes) decommissions only.

// DefaultMaintenanceMinReplication is HDFS's
// dfs.namenode.maintenance.replication.min.
const DefaultMaintenanceMinReplication = 1

// liveTarget is how many live replicas in service a block wanting want
// replicas needs, maint of its replicas being on blockds entering or in
// maintenance (live or not).
func (m *Metad) liveTarget(want, maint int) int {
	if maint == 0 {
		return want
	}
	return max(want-maint, min(m.cfg.MaintenanceMinReplication, want))
}

// startMaintenance puts blockd id, whose record is cur, into maintenance
// until expire from now (0: until recommissioned); one already in
// maintenance gets the new expiry. Errors are op's.
func (m *Metad) startMaintenance(op, id string, cur adminRecord, expire time.Duration) error {
	if cur.state == adminDecommissioning || cur.state == adminDecommissioned {
		return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("blockd %s is %s: recommission it first", id, cur.state))
	}
	r := adminRecord{state: adminEnteringMaintenance}
	if cur.state.maintenance() {
		r.state = cur.state
	}
	if expire > 0 {
		r.expires = m.clock.Now().Add(expire)
	}
	if err := m.setAdmin(id, r); err != nil {
		return cairn.E(op, cairn.KindIO, "", err.Error())
	}
	m.log.Info("blockd entering maintenance", zap.String("storage_id", id), zap.String("state", r.state.String()),
		zap.Time("expires", r.expires), zap.Int("min_replication", m.cfg.MaintenanceMinReplication))
	return nil
}

// checkMaintenance ends the maintenances past their expiry, and makes
// each blockd entering maintenance In maintenance once every block it
// holds has its maintenance minimum of live replicas in service (or at
// once, if it is dead or has not registered since metad started).
func (m *Metad) checkMaintenance(now time.Time) {
	type entry struct {
		id       string
		r        adminRecord
		live, ok bool
	}
	var list []entry
	m.nodes.mu.Lock()
	for id, r := range m.nodes.admin {
		if !r.state.maintenance() {
			continue
		}
		st := m.nodes.nodes[id]
		e := entry{id: id, r: r}
		if st != nil {
			e.live, e.ok = m.nodes.live(st, now), st.reported
		}
		list = append(list, e)
	}
	m.nodes.mu.Unlock()
	for _, e := range list {
		switch {
		case !e.r.expires.IsZero() && !now.Before(e.r.expires):
			m.endMaintenance(e.id, e.r, "expired")
		case e.r.state == adminEnteringMaintenance && !e.live:
			m.toInMaintenance(e.id, e.r, "blockd not live")
		case e.r.state == adminEnteringMaintenance && e.ok:
			left, err := m.maintenanceLeft(e.id, now)
			if err != nil {
				m.log.Error("maintenance check", zap.String("storage_id", e.id), zap.Error(err))
				continue
			}
			if left > 0 {
				m.log.Debug("entering maintenance", zap.String("storage_id", e.id), zap.Int("blocks_waiting", left))
				continue
			}
			m.toInMaintenance(e.id, e.r, "every block it holds has its maintenance minimum elsewhere")
		}
	}
}

// endMaintenance puts blockd id back in service, unless its record
// changed since it was read as was.
func (m *Metad) endMaintenance(id string, was adminRecord, why string) {
	if !m.sameAdmin(id, was) {
		return
	}
	if err := m.setAdmin(id, adminRecord{}); err != nil {
		m.log.Error("maintenance check", zap.String("storage_id", id), zap.Error(err))
		return
	}
	m.log.Info("blockd back in service: maintenance over", zap.String("storage_id", id), zap.String("was", was.state.String()), zap.String("why", why))
}

// toInMaintenance makes blockd id In maintenance, unless its record
// changed since it was read as was.
func (m *Metad) toInMaintenance(id string, was adminRecord, why string) {
	if !m.sameAdmin(id, was) {
		return
	}
	r := was
	r.state = adminInMaintenance
	if err := m.setAdmin(id, r); err != nil {
		m.log.Error("maintenance check", zap.String("storage_id", id), zap.Error(err))
		return
	}
	m.log.Info("blockd in maintenance: it may be switched off", zap.String("storage_id", id), zap.String("why", why), zap.Time("expires", r.expires))
}

// sameAdmin reports whether blockd id's admin record is still r.
func (m *Metad) sameAdmin(id string, r adminRecord) bool {
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	cur := m.nodes.admin[id]
	return cur.state == r.state && cur.byFile == r.byFile && cur.expires.Equal(r.expires)
}

// maintenanceLeft counts the blocks on blockd id with fewer good replicas
// on live blockds in service than the maintenance minimum (at most their
// replication), or of a file being written.
func (m *Metad) maintenanceLeft(id string, now time.Time) (int, error) {
	left := 0
	for _, bid := range m.blocks.blocksOn(id) {
		stored, writing, ok, err := m.storedBlock(bid)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		if writing {
			left++
			continue
		}
		want, err := m.wantReplicas(bid)
		if err != nil {
			return 0, err
		}
		have := 0
		for _, h := range m.blocks.holders(stored) {
			if _, live, _, in := m.nodes.status(h, now); live && in {
				have++
			}
		}
		if have < min(m.cfg.MaintenanceMinReplication, want) {
			left++
		}
	}
	return left, nil
}

// inMaintenance reports whether blockd id is entering or in maintenance.
func (ns *nodeSet) inMaintenance(id string) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.admin[id].state.maintenance()
}

// adminStatus is blockd id's node and liveness, as isLive says, and its
// admin state, live or not.
func (ns *nodeSet) adminStatus(id string, now time.Time) (n cairn.Node, live bool, st adminState) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st = ns.admin[id].state
	if s, ok := ns.nodes[id]; ok && ns.live(s, now) {
		return s.Node, true, st
	}
	return cairn.Node{}, false, st
}
