package metad

import (
	"context"
	"math"
	"math/rand/v2"
	"net"
	"sort"
	"time"

	"google.golang.org/grpc/peer"

	"cairn"
)

// Placement, as HDFS's BlockPlacementPolicyDefault: the first replica of
// a new block on the writer's host when a blockd runs there (else on the
// writer's rack when the topology script knows it, else on a random
// blockd); the second on another rack; the third on the second's rack, on
// another blockd; any more at random, with at most (n-1)/racks+2 replicas
// on one rack (one fewer when that would allow all n on one rack). A block
// that already has replicas (re-replication, a node added to a pipeline)
// continues the same sequence from where they leave it: one replica, or
// two on one rack, get the next on another rack. With one rack there is no
// limit. Only live blockds with room for the block take a replica, and
// stale ones only while more than half the live blockds are stale. When
// the limit leaves too few blockds (the other racks' are full, say), it
// yields: a replica on a crowded rack is better than none.

// location is where a caller or a blockd is: its IP address and its rack
// ("" when unknown).
type location struct{ host, rack string }

// callerHost is the IP address of an RPC's peer as metad sees it; "" for
// an in-process call.
func callerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return hostOf(p.Addr.String())
}

// hostOf is the host part of a HOST:PORT address.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// locate says where the caller of ctx is: its address, and the rack of a
// blockd at that address or else what the topology script says of it.
func (m *Metad) locate(ctx context.Context) location {
	host := callerHost(ctx)
	if host == "" {
		return location{}
	}
	if rack := m.nodes.rackOfHost(host); rack != "" {
		return location{host, rack}
	}
	return location{host, m.topo.resolve([]string{host})[host]}
}

// rackOfHost is the rack of a registered blockd whose data address is on
// host, or "".
func (ns *nodeSet) rackOfHost(host string) string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, st := range ns.nodes {
		if hostOf(st.DataAddr) == host {
			return st.Rack
		}
	}
	return ""
}

// rackCount is how many racks have a live blockd.
func (ns *nodeSet) rackCount(now time.Time) int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	racks := map[string]bool{}
	for _, st := range ns.nodes {
		if ns.live(st, now) && ns.admin[st.StorageID].state == adminNormal {
			racks[st.Rack] = true
		}
	}
	return len(racks)
}

// misplaced reports whether a block wanting want replicas, whose replicas
// are on replicaRacks racks, breaks the rack rule in a cluster of
// clusterRacks racks (HDFS's BlockPlacementStatusDefault): it should be on
// at least min(2, want) racks, or on every rack when there are fewer.
func misplaced(replicaRacks, want, clusterRacks int) bool {
	if clusterRacks <= 1 {
		return false
	}
	return replicaRacks < min(2, want) && replicaRacks < clusterRacks
}

// candidate is one live blockd as placement sees it.
type candidate struct {
	cairn.Node
	host   string
	usable bool  // not stale (unless too many are)
	room   int64 // bytes it can take, as its last heartbeat said
}

// placement is a snapshot of the live blockds, for placing blocks of
// blockSize bytes. The replication monitor takes one a round and places
// each block of the round from it (sized).
type placement struct {
	cands     []*candidate
	racks     map[string]bool // racks with a live blockd
	known     map[string]cairn.Node
	blockSize int64
}

// placement takes a snapshot of the live blockds for placing a block of
// blockSize bytes.
func (ns *nodeSet) placement(blockSize int64, now time.Time) *placement {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	p := &placement{racks: map[string]bool{}, known: make(map[string]cairn.Node, len(ns.nodes)), blockSize: blockSize}
	live, stale := 0, 0
	for _, st := range ns.nodes {
		p.known[st.StorageID] = st.Node
		if !ns.live(st, now) || ns.admin[st.StorageID].state != adminNormal {
			continue // dead, or being (or) decommissioned: no new replicas
		}
		live++
		isStale := ns.stale(st, now)
		if isStale {
			stale++
		}
		// A blockd can take a block of the room its last heartbeat said.
		// One not heard from since it registered (its first heartbeat
		// follows at once) counts as having room; one that reports no
		// capacity at all has none.
		room := int64(math.MaxInt64)
		if st.heard {
			room = st.hb.Remaining
		}
		p.cands = append(p.cands, &candidate{Node: st.Node, host: hostOf(st.DataAddr), usable: !isStale, room: room})
		p.racks[st.Rack] = true
	}
	if float64(stale) > maxStaleRatio*float64(live) {
		for _, c := range p.cands {
			c.usable = true
		}
	}
	return p
}

// sized is the same snapshot for placing a block of blockSize bytes.
func (p *placement) sized(blockSize int64) *placement {
	q := *p
	q.blockSize = blockSize
	return &q
}

// chooser is one run of the placement sequence.
type chooser struct {
	p          *placement
	skip       map[string]bool // excluded, or already chosen
	perRack    map[string]int
	maxPerRack int
	racks      []string // of the replicas chosen so far, existing ones first
}

func (c *chooser) eligible(t *candidate) bool {
	return t.usable && t.room >= c.p.blockSize && !c.skip[t.StorageID] && c.perRack[t.Rack] < c.maxPerRack
}

// random picks an eligible blockd that satisfies want, at random; nil if
// there is none.
func (c *chooser) random(want func(*candidate) bool) *candidate {
	var pool []*candidate
	for _, t := range c.p.cands {
		if c.eligible(t) && want(t) {
			pool = append(pool, t)
		}
	}
	if len(pool) == 0 {
		return nil
	}
	return pool[rand.IntN(len(pool))]
}

func (c *chooser) take(rack, id string) {
	c.skip[id] = true
	c.perRack[rack]++
	c.racks = append(c.racks, rack)
}

func anyNode(*candidate) bool { return true }

func onRack(r string) func(*candidate) bool {
	return func(t *candidate) bool { return t.Rack == r }
}

func offRack(r string) func(*candidate) bool {
	return func(t *candidate) bool { return t.Rack != r }
}

// first returns the first of the choices that finds a blockd.
func (c *chooser) first(choices ...func(*candidate) bool) *candidate {
	for _, want := range choices {
		if t := c.random(want); t != nil {
			return t
		}
	}
	return nil
}

// choose picks up to n more blockds for a block whose replicas are on
// chosen (none for a new block), none of them in excluded, for a writer at
// w (the client, or the source of a copy), in pipeline order.
func (p *placement) choose(n int, w location, chosen, excluded []cairn.Node) []cairn.Node {
	c := &chooser{p: p, skip: map[string]bool{}, perRack: map[string]int{}}
	for _, e := range excluded {
		c.skip[e.StorageID] = true
	}
	liveChosen := 0
	for _, e := range chosen {
		rack := e.Rack
		if k, ok := p.known[e.StorageID]; ok {
			rack = k.Rack
		}
		c.take(rack, e.StorageID)
		if p.racks[rack] {
			liveChosen++
		}
	}
	total := n + liveChosen
	if total > len(p.cands) {
		n -= total - len(p.cands)
		total = len(p.cands)
	}
	if n <= 0 {
		return nil
	}
	c.maxPerRack = total
	if len(p.racks) > 1 && total > 1 {
		c.maxPerRack = (total-1)/len(p.racks) + 2
		if c.maxPerRack == total {
			c.maxPerRack--
		}
	}
	newBlock := len(chosen) == 0
	writerRack := w.rack
	if writerRack == "" && len(c.racks) > 0 {
		writerRack = c.racks[0]
	}
	var out []cairn.Node
	for len(out) < n {
		var t *candidate
		switch k := len(c.racks); {
		case k == 0:
			t = c.first(func(t *candidate) bool { return w.host != "" && t.host == w.host },
				func(t *candidate) bool { return w.rack != "" && t.Rack == w.rack }, anyNode)
		case k == 1:
			t = c.first(offRack(c.racks[0]), anyNode)
		case k == 2 && c.racks[0] == c.racks[1]:
			t = c.first(offRack(c.racks[0]), anyNode)
		case k == 2 && newBlock:
			t = c.first(onRack(c.racks[1]), anyNode)
		case k == 2 && writerRack != "":
			t = c.first(onRack(writerRack), anyNode)
		default:
			t = c.random(anyNode)
		}
		if t == nil {
			break
		}
		c.take(t.Rack, t.StorageID)
		out = append(out, t.Node)
	}
	// Better a replica on a crowded rack than none (the other racks' blockds
	// are full, stale or excluded): the rack limit yields, and the
	// replication monitor moves a mis-replicated block once it can.
	c.maxPerRack = total
	for len(out) < n {
		t := c.random(anyNode)
		if t == nil {
			break
		}
		c.take(t.Rack, t.StorageID)
		out = append(out, t.Node)
	}
	return out
}

// chooseExcess picks extra replicas to delete among live, as HDFS's
// chooseReplicasToDelete: from a rack holding more than one replica while
// there is one (so no rack the block is on is left), the blockd with the
// least room first.
func chooseExcess(live []cairn.Node, remaining map[string]int64, extra int) []cairn.Node {
	left := append([]cairn.Node(nil), live...)
	var out []cairn.Node
	for ; extra > 0 && len(left) > 0; extra-- {
		perRack := map[string]int{}
		for _, n := range left {
			perRack[n.Rack]++
		}
		best := -1
		for i, n := range left {
			if perRack[n.Rack] < 2 && len(perRack) < len(left) {
				continue // another rack holds more than one
			}
			if best < 0 || remaining[n.StorageID] < remaining[left[best].StorageID] {
				best = i
			}
		}
		out = append(out, left[best])
		left = append(left[:best], left[best+1:]...)
	}
	return out
}

// sortForReader orders a block's locations for a reader at w: blockds
// out of service (being decommissioned, or decommissioned) last, stale
// ones before them, and before that nearest first (the reader's host, then its
// rack, then the rest), keeping the order within each group (HDFS's
// sortLocatedBlocks).
func (ns *nodeSet) sortForReader(locs []cairn.Node, w location, now time.Time) {
	if len(locs) < 2 {
		return
	}
	key := make(map[string]int, len(locs))
	ns.mu.Lock()
	for _, n := range locs {
		d := 4
		switch {
		case w.host != "" && hostOf(n.DataAddr) == w.host:
			d = 0
		case w.rack != "" && n.Rack == w.rack:
			d = 2
		}
		if st, ok := ns.nodes[n.StorageID]; !ok || ns.stale(st, now) {
			d += 10
		}
		if ns.admin[n.StorageID].state != adminNormal {
			d += 20 // being decommissioned, or decommissioned: last
		}
		key[n.StorageID] = d
	}
	ns.mu.Unlock()
	sort.SliceStable(locs, func(i, j int) bool { return key[locs[i].StorageID] < key[locs[j].StorageID] })
}
