package metad

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/trust"
)

// Decommissioning, as HDFS's DatanodeAdminManager. A blockd being
// decommissioned ("Decommission in progress") takes no new replica, is
// offered to readers last, and its replicas no longer count towards their
// blocks' replication, so the replication monitor copies each elsewhere
// (keeping the rack rule), from it or another holder. It is never asked to
// delete a replica of a file. Once every block it holds (as its last full
// report said, made since it registered) has its full count on blockds in
// service, it is "Decommissioned": it may be switched off without loss,
// and until then it serves reads, last, and keeps its replicas. A
// recommissioned blockd is in service again; the extra replicas are
// trimmed.
//
// The state lives in metad's store ("a" keys: docs/FORMAT.md), written
// synced, so a restart keeps it. A blockd is named by an administrator
// (admin -decommission NODE, -recommission NODE) or by metad's
// --hosts-exclude file (HDFS's dfs.hosts.exclude), read at start and at
// admin -refreshNodes: the blockds it names are decommissioned, those it
// named before and no longer does go back in service.

// adminState is a blockd's state in decommissioning or maintenance
// (maintenance.go).
type adminState uint8

const (
	adminNormal adminState = iota
	adminDecommissioning
	adminDecommissioned
	adminEnteringMaintenance
	adminInMaintenance
)

func (s adminState) String() string {
	switch s {
	case adminDecommissioning:
		return cairn.AdminDecommissioning
	case adminDecommissioned:
		return cairn.AdminDecommissioned
	case adminEnteringMaintenance:
		return cairn.AdminEnteringMaintenance
	case adminInMaintenance:
		return cairn.AdminInMaintenance
	}
	return cairn.AdminNormal
}

// maintenance reports whether s is entering or in maintenance.
func (s adminState) maintenance() bool {
	return s == adminEnteringMaintenance || s == adminInMaintenance
}

// adminRecord is a blockd's admin state, whether the exclude file asked
// for it, and when a maintenance ends by itself (zero: never).
type adminRecord struct {
	state   adminState
	byFile  bool
	expires time.Time
}

// An "a" key's value: the state, then 1 when the exclude file asked for
// it; a maintenance adds its expiry, in Unix nanoseconds (0: none), 8
// bytes big-endian.
func adminKey(storageID string) []byte { return append([]byte{prefixDecom}, storageID...) }

func encodeAdmin(r adminRecord) []byte {
	v := []byte{byte(r.state), 0}
	if r.byFile {
		v[1] = 1
	}
	if r.state.maintenance() {
		var exp int64
		if !r.expires.IsZero() {
			exp = r.expires.UnixNano()
		}
		v = binary.BigEndian.AppendUint64(v, uint64(exp))
	}
	return v
}

func decodeAdmin(v []byte) (adminRecord, error) {
	switch {
	case len(v) == 2 && v[0] >= byte(adminDecommissioning) && v[0] <= byte(adminDecommissioned) && v[1] <= 1:
		return adminRecord{state: adminState(v[0]), byFile: v[1] == 1}, nil
	case len(v) == 10 && adminState(v[0]).maintenance() && v[1] == 0:
		r := adminRecord{state: adminState(v[0])}
		if exp := int64(binary.BigEndian.Uint64(v[2:])); exp != 0 {
			r.expires = time.Unix(0, exp)
		}
		return r, nil
	}
	return adminRecord{}, fmt.Errorf("admin state record %x: want 2 bytes (a state of 1 or 2 and a flag of 0 or 1) or 10 (a state of 3 or 4, a flag of 0 and an expiry)", v)
}

// loadAdmin reads the admin states kept in the store.
func loadAdmin(db *pebble.DB) (map[string]adminRecord, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDecom}, UpperBound: []byte{prefixDecom + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]adminRecord{}
	for it.First(); it.Valid(); it.Next() {
		r, err := decodeAdmin(it.Value())
		if err != nil {
			return nil, fmt.Errorf("blockd %s: %w", it.Key()[1:], err)
		}
		out[string(it.Key()[1:])] = r
	}
	return out, it.Error()
}

// inService reports whether blockd id takes new replicas and counts
// towards replication: it is not being decommissioned, nor decommissioned.
func (ns *nodeSet) inService(id string) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.admin[id].state == adminNormal
}

// status is isLive's answer and whether the blockd is in service.
func (ns *nodeSet) status(id string, now time.Time) (n cairn.Node, live, stale, inService bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st, ok := ns.nodes[id]
	if !ok || !ns.live(st, now) {
		return cairn.Node{}, false, false, false
	}
	return st.Node, true, ns.stale(st, now), ns.admin[id].state == adminNormal
}

// setAdmin records blockd id's admin state, in the store first.
func (m *Metad) setAdmin(id string, r adminRecord) error {
	err := m.keptMutate(func(b *pebble.Batch) error {
		if r.state == adminNormal {
			return b.Delete(adminKey(id), nil)
		}
		return b.Set(adminKey(id), encodeAdmin(r), nil)
	})
	if err != nil {
		return fmt.Errorf("record blockd %s as %s: %w", id, r.state, err)
	}
	m.nodes.mu.Lock()
	if r.state == adminNormal {
		delete(m.nodes.admin, id)
	} else {
		m.nodes.admin[id] = r
	}
	m.nodes.mu.Unlock()
	return nil
}

// SetNodeAdmin decommissions, puts in maintenance (maintenance.go) or
// recommissions a blockd (cairn admin -decommission NODE, -maintenance
// NODE [-expire DURATION], -recommission NODE).
func (m *Metad) SetNodeAdmin(ctx context.Context, node string, action cairn.NodeAdminAction, expire time.Duration) (cairn.NodeReport, error) {
	const op = "metad.SetNodeAdmin"
	if err := m.adminOnly(ctx, op, "decommission, recommission or put in maintenance a blockd"); err != nil {
		return cairn.NodeReport{}, err
	}
	if expire < 0 || (expire != 0 && action != cairn.NodeMaintenance) {
		return cairn.NodeReport{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("expiry %v: want a positive duration, for a maintenance only", expire))
	}
	id, ok := m.nodes.resolve(node)
	if !ok {
		return cairn.NodeReport{}, cairn.E(op, cairn.KindNotExist, "", fmt.Sprintf("no blockd has storage ID or data address %q", node))
	}
	m.nodes.mu.Lock()
	cur := m.nodes.admin[id]
	m.nodes.mu.Unlock()
	switch action {
	case cairn.NodeDecommission:
		if cur.state.maintenance() {
			return cairn.NodeReport{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("blockd %s is %s: recommission it first", id, cur.state))
		}
		if cur.state == adminNormal {
			if err := m.setAdmin(id, adminRecord{state: adminDecommissioning}); err != nil {
				return cairn.NodeReport{}, cairn.E(op, cairn.KindIO, "", err.Error())
			}
			m.log.Info("decommissioning a blockd", zap.String("storage_id", id), zap.String("by", "admin"))
		}
	case cairn.NodeMaintenance:
		if err := m.startMaintenance(op, id, cur, expire); err != nil {
			return cairn.NodeReport{}, err
		}
	case cairn.NodeRecommission:
		if cur.state != adminNormal {
			if err := m.setAdmin(id, adminRecord{}); err != nil {
				return cairn.NodeReport{}, cairn.E(op, cairn.KindIO, "", err.Error())
			}
			m.log.Info("blockd back in service", zap.String("storage_id", id), zap.String("was", cur.state.String()), zap.String("by", "admin"))
		}
	default:
		return cairn.NodeReport{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("unknown node admin action %d", action))
	}
	return m.nodeReport(id), nil
}

// RefreshNodes reads the --hosts-exclude file again and applies it.
func (m *Metad) RefreshNodes(ctx context.Context) ([]cairn.NodeReport, error) {
	const op = "metad.RefreshNodes"
	if err := m.adminOnly(ctx, op, "refresh the nodes"); err != nil {
		return nil, err
	}
	if m.cfg.HostsExclude == "" {
		return nil, cairn.E(op, cairn.KindInvalid, "", "metad runs without --hosts-exclude: there is no file to read")
	}
	changed, err := m.applyExclude()
	if err != nil {
		return nil, cairn.E(op, cairn.KindIO, m.cfg.HostsExclude, err.Error())
	}
	out := make([]cairn.NodeReport, 0, len(changed))
	for _, id := range changed {
		out = append(out, m.nodeReport(id))
	}
	return out, nil
}

// adminOnly refuses a caller that is not an admin certificate speaking as
// a superuser (or, without certificates, a superuser).
func (m *Metad) adminOnly(ctx context.Context, op, what string) error {
	if p, ok := trust.PeerFrom(ctx); ok && p.Role != trust.RoleAdmin {
		return cairn.E(op, cairn.KindAccess, "", fmt.Sprintf("certificate %s: to %s needs an admin certificate", p, what))
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	if !c.super {
		return cairn.E(op, cairn.KindAccess, "", fmt.Sprintf("user %s is not a superuser: only a superuser may %s", c.user, what))
	}
	return nil
}

// readExclude reads an exclude file: one blockd a line, named by its
// host (IP address or name), its data address HOST:PORT or its storage ID;
// '#' starts a comment, blank lines are skipped.
func readExclude(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		for _, f := range strings.Fields(line) {
			out[f] = true
		}
	}
	return out, sc.Err()
}

// excluded reports whether the exclude list names n.
func excluded(list map[string]bool, n cairn.Node) bool {
	return list[n.StorageID] || list[n.DataAddr] || list[hostOf(n.DataAddr)]
}

// applyExclude reads the exclude file and decommissions the registered
// blockds it names, and puts back in service those it named before and no
// longer does. It returns the storage IDs whose state changed.
func (m *Metad) applyExclude() ([]string, error) {
	list, err := readExclude(m.cfg.HostsExclude)
	if err != nil {
		return nil, err
	}
	m.nodes.mu.Lock()
	m.nodes.exclude = list
	type change struct {
		id string
		r  adminRecord
	}
	var changes []change
	seen := map[string]bool{}
	for id, st := range m.nodes.nodes {
		seen[id] = true
		cur := m.nodes.admin[id]
		switch named := excluded(list, st.Node); {
		case named && cur.state == adminNormal:
			changes = append(changes, change{id, adminRecord{state: adminDecommissioning, byFile: true}})
		case !named && cur.byFile:
			changes = append(changes, change{id, adminRecord{}})
		}
	}
	for id, cur := range m.nodes.admin {
		if !seen[id] && cur.byFile && !list[id] {
			changes = append(changes, change{id, adminRecord{}})
		}
	}
	m.nodes.mu.Unlock()
	var ids []string
	for _, c := range changes {
		if err := m.setAdmin(c.id, c.r); err != nil {
			return ids, err
		}
		ids = append(ids, c.id)
		if c.r.state == adminNormal {
			m.log.Info("blockd back in service", zap.String("storage_id", c.id), zap.String("by", "exclude file"))
		} else {
			m.log.Info("decommissioning a blockd", zap.String("storage_id", c.id), zap.String("by", "exclude file"))
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// admitted starts decommissioning a blockd that registers while the
// exclude file names it.
func (m *Metad) admitted(n cairn.Node) {
	m.nodes.mu.Lock()
	start := excluded(m.nodes.exclude, n) && m.nodes.admin[n.StorageID].state == adminNormal
	m.nodes.mu.Unlock()
	if !start {
		return
	}
	if err := m.setAdmin(n.StorageID, adminRecord{state: adminDecommissioning, byFile: true}); err != nil {
		m.log.Error("cannot decommission a blockd the exclude file names", zap.String("storage_id", n.StorageID), zap.Error(err))
		return
	}
	m.log.Info("decommissioning a blockd", zap.String("storage_id", n.StorageID), zap.String("by", "exclude file"))
}

// resolve finds a blockd by storage ID or data address: a registered one,
// or one metad keeps an admin state of.
func (ns *nodeSet) resolve(name string) (string, bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if _, ok := ns.nodes[name]; ok {
		return name, true
	}
	if _, ok := ns.admin[name]; ok {
		return name, true
	}
	for id, st := range ns.nodes {
		if st.DataAddr == name {
			return id, true
		}
	}
	return "", false
}

// nodeReport is what Report says of blockd id.
func (m *Metad) nodeReport(id string) cairn.NodeReport {
	for _, n := range m.nodes.report(m.clock.Now(), m.blocks) {
		if n.StorageID == id {
			return n
		}
	}
	m.nodes.mu.Lock()
	r := m.nodes.admin[id]
	m.nodes.mu.Unlock()
	return cairn.NodeReport{Node: cairn.Node{StorageID: id}, AdminState: r.state.String(), MaintenanceExpires: r.expires}
}

// checkDecommissions makes each blockd being decommissioned Decommissioned
// once every block it holds has its full count on blockds in service. A
// blockd that has not sent a full report since it registered (or since
// metad started) is not judged: what it holds is not known yet.
func (m *Metad) checkDecommissions(now time.Time) {
	m.nodes.mu.Lock()
	var ids []string
	for id, r := range m.nodes.admin {
		if st := m.nodes.nodes[id]; r.state == adminDecommissioning && st != nil && st.reported {
			ids = append(ids, id)
		}
	}
	m.nodes.mu.Unlock()
	for _, id := range ids {
		left, err := m.decommissionLeft(id, now)
		if err != nil {
			m.log.Error("decommission check", zap.String("storage_id", id), zap.Error(err))
			continue
		}
		if left > 0 {
			m.log.Debug("decommission in progress", zap.String("storage_id", id), zap.Int("blocks_waiting", left))
			continue
		}
		m.nodes.mu.Lock()
		r := m.nodes.admin[id]
		m.nodes.mu.Unlock()
		if r.state != adminDecommissioning {
			continue // recommissioned meanwhile
		}
		r.state = adminDecommissioned
		if err := m.setAdmin(id, r); err != nil {
			m.log.Error("decommission check", zap.String("storage_id", id), zap.Error(err))
			continue
		}
		m.log.Info("blockd decommissioned: every block it holds has its full count elsewhere", zap.String("storage_id", id))
	}
}

// decommissionLeft counts the blocks on blockd id that lack their full
// count of good replicas on live blockds in service, or belong to a file
// being written.
func (m *Metad) decommissionLeft(id string, now time.Time) (int, error) {
	left := 0
	for _, bid := range m.blocks.blocksOn(id) {
		stored, writing, ok, err := m.storedBlock(bid)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue // of no file: nobody needs it
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
		if have < want {
			left++
		}
	}
	return left, nil
}

// blocksOn lists the blocks of which blockd id reported a replica, in any
// state: its list in the block map, no walk of the whole map.
func (bm *blockMap) blocksOn(id string) []cairn.BlockID {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	n := bm.t.nodeIndex(id, false)
	if n == 0 {
		return nil
	}
	l := bm.t.lists[n-1]
	out := make([]cairn.BlockID, 0, len(l))
	for _, p := range l {
		out = append(out, bm.t.slab[p].id)
	}
	return out
}
