package metad

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"

	"cairn"
)

// modelMap is the block map as the plain maps it used to be: what the
// compact table must agree with.
type modelMap map[cairn.BlockID]map[string]cairn.Replica

func (mm modelMap) check(t *testing.T, bm *blockMap, step int) {
	t.Helper()
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if bm.t.used != len(mm) {
		t.Fatalf("step %d: %d blocks in the map, the model has %d", step, bm.t.used, len(mm))
	}
	perNode := map[string]int{}
	for id, reps := range mm {
		got := bm.replicasLocked(id)
		if len(got) != len(reps) {
			t.Fatalf("step %d: blk_%d has %d replicas, the model %d: %+v vs %+v", step, id, len(got), len(reps), got, reps)
		}
		for _, r := range got {
			if want, ok := reps[r.StorageID]; !ok || want != r.Replica {
				t.Fatalf("step %d: blk_%d on %s is %+v, the model says %+v (%v)", step, id, r.StorageID, r.Replica, want, ok)
			}
			if x, ok := bm.replica(r.StorageID, id); !ok || x != r.Replica {
				t.Fatalf("step %d: replica(%s, blk_%d) = %+v, %v", step, r.StorageID, id, x, ok)
			}
		}
		for node := range reps {
			perNode[node]++
		}
	}
	for i, id := range bm.t.nodeIDs {
		if len(bm.t.lists[i]) != perNode[id] {
			t.Fatalf("step %d: %s lists %d replicas, the model %d", step, id, len(bm.t.lists[i]), perNode[id])
		}
		for pos, p := range bm.t.lists[i] {
			e := &bm.t.slab[p]
			if _, ok := mm[e.id][id]; !ok {
				t.Fatalf("step %d: %s lists blk_%d, which it does not hold", step, id, e.id)
			}
			found := false
			for s, n := range e.node {
				if n == nodeIdx(i+1) && e.pos[s] == uint32(pos) {
					found = true
				}
			}
			for _, x := range bm.t.extra[e.id] {
				if x.node == nodeIdx(i+1) && x.pos == uint32(pos) {
					found = true
				}
			}
			if !found {
				t.Fatalf("step %d: %s's list position %d (blk_%d) is not recorded in the entry", step, id, pos, e.id)
			}
		}
	}
}

// TestBlockTableAgreesWithAModel drives the compact table and a model of
// plain maps with the same random adds (other stamps, lengths and states,
// more than three replicas) and removals, and full reports, and compares
// every block, every node's list and the counts.
func TestBlockTableAgreesWithAModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bm := newBlockMap()
	mm := modelMap{}
	nodes := []string{"n0", "n1", "n2", "n3", "n4", "n5"}
	const blocks = 300
	randReplica := func(id cairn.BlockID) cairn.Replica {
		r := cairn.Replica{Block: cairn.Block{ID: id, GenStamp: 1000, Len: 4096}, State: cairn.ReplicaFinalized}
		switch rng.IntN(8) {
		case 0:
			r.GenStamp = cairn.GenStamp(1000 + rng.IntN(3))
		case 1:
			r.Len = int64(rng.IntN(4097))
		case 2:
			r.State = cairn.ReplicaState(1 + rng.IntN(4))
		case 3:
			r.State = cairn.ReplicaState(rng.IntN(100)) // a state no blockd sends
		}
		return r
	}
	for step := range 20000 {
		id := cairn.BlockID(1<<30 + rng.IntN(blocks))
		node := nodes[rng.IntN(len(nodes))]
		switch op := rng.IntN(10); {
		case op < 6:
			r := randReplica(id)
			bm.mu.Lock()
			bm.add(node, r)
			bm.mu.Unlock()
			if mm[id] == nil {
				mm[id] = map[string]cairn.Replica{}
			}
			mm[id][node] = r
		case op < 9:
			bm.mu.Lock()
			bm.remove(node, id)
			bm.mu.Unlock()
			delete(mm[id], node)
			if len(mm[id]) == 0 {
				delete(mm, id)
			}
		default:
			// A full report of node: some of what it holds, and some new.
			var rep []cairn.Replica
			for bid, reps := range mm {
				if _, ok := reps[node]; ok && rng.IntN(2) == 0 {
					rep = append(rep, reps[node])
				}
				_ = bid
			}
			for range rng.IntN(20) {
				rep = append(rep, randReplica(cairn.BlockID(1<<30+rng.IntN(blocks))))
			}
			bm.reports.Lock()
			bm.beginReport(node)
			bm.mu.Lock()
			for _, r := range rep {
				bm.add(node, r)
			}
			bm.mu.Unlock()
			bm.sweepReport(node)
			bm.reports.Unlock()
			in := map[cairn.BlockID]cairn.Replica{}
			for _, r := range rep {
				in[r.ID] = r
			}
			for bid, reps := range mm {
				if _, ok := in[bid]; !ok {
					delete(reps, node)
					if len(reps) == 0 {
						delete(mm, bid)
					}
				}
			}
			for bid, r := range in {
				if mm[bid] == nil {
					mm[bid] = map[string]cairn.Replica{}
				}
				mm[bid][node] = r
			}
		}
		if step%97 == 0 {
			mm.check(t, bm, step)
		}
	}
	mm.check(t, bm, -1)
	for _, n := range nodes {
		want := 0
		for _, reps := range mm {
			if _, ok := reps[n]; ok {
				want++
			}
		}
		if got := bm.countOn(n); got != int64(want) {
			t.Fatalf("countOn(%s) = %d, want %d", n, got, want)
		}
	}
}

// TestFullReportKeepsReplicasRecordedWhileItRuns: a replica recorded by
// another path (an incremental report, Complete) while a full report of
// the same node is being processed stays, though the report (made before
// it) does not list it; a replica the report leaves out and nothing
// recorded again is forgotten.
func TestFullReportKeepsReplicasRecordedWhileItRuns(t *testing.T) {
	bm := newBlockMap()
	fin := func(id cairn.BlockID) cairn.Replica {
		return cairn.Replica{Block: cairn.Block{ID: id, GenStamp: 1000, Len: 1}, State: cairn.ReplicaFinalized}
	}
	bm.mu.Lock()
	bm.add("a", fin(1))
	bm.add("a", fin(2))
	bm.mu.Unlock()
	bm.reports.Lock()
	bm.beginReport("a")
	bm.mu.Lock()
	bm.add("a", fin(1)) // in the report
	bm.add("a", fin(3)) // recorded meanwhile by Complete
	bm.mu.Unlock()
	bm.sweepReport("a")
	bm.reports.Unlock()
	got := map[cairn.BlockID]bool{}
	for _, id := range []cairn.BlockID{1, 2, 3} {
		bm.mu.Lock()
		_, ok := bm.replica("a", id)
		bm.mu.Unlock()
		got[id] = ok
	}
	if !got[1] || got[2] || !got[3] {
		t.Fatalf("after the full report: blk_1 %v (want true), blk_2 %v (want false), blk_3 %v (want true)", got[1], got[2], got[3])
	}
}

// TestBlockMapConcurrentReportsCompletesAndWalks runs full and
// incremental reports of several nodes, recordAcked-style adds, frees and
// a replication walk at once (run it with -race), then checks the map
// against what the last full reports said.
func TestBlockMapConcurrentReportsCompletesAndWalks(t *testing.T) {
	bm := newBlockMap()
	const nodes, perNode = 4, 3 * scanSlice
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := fmt.Sprintf("n%d", n)
			for round := range 3 {
				bm.reports.Lock()
				bm.beginReport(node)
				for s := 0; s < perNode; s += 512 {
					bm.mu.Lock()
					for i := s; i < s+512; i++ {
						id := cairn.BlockID(1<<30 + i + round*perNode/2)
						bm.add(node, cairn.Replica{Block: cairn.Block{ID: id, GenStamp: 1000, Len: 1}, State: cairn.ReplicaFinalized})
					}
					bm.mu.Unlock()
				}
				bm.sweepReport(node)
				bm.reports.Unlock()
			}
		}()
	}
	walks := 0
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			seen := 0
			for c := 0; c >= 0; {
				c = bm.scan(c, func(id cairn.BlockID, reps []nodeReplica) { seen += len(reps) })
			}
			walks++
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := cairn.BlockID(1<<29 + i%1000) // blocks no report lists
			bm.mu.Lock()
			bm.add("acked", cairn.Replica{Block: cairn.Block{ID: id, GenStamp: 1000, Len: 1}, State: cairn.ReplicaFinalized})
			bm.mu.Unlock()
			_ = bm.holders(cairn.Block{ID: id, GenStamp: 1000, Len: 1})
			_ = bm.countOn("n0")
			if i%3 == 0 {
				bm.free([]cairn.Block{{ID: id}})
			}
		}
	}()
	// The reporters end by themselves; then the others are stopped.
	done := make(chan struct{})
	go func() {
		for n := range nodes {
			for bm.countOn(fmt.Sprintf("n%d", n)) != perNode {
				runtime.Gosched()
			}
		}
		close(done)
	}()
	<-done
	close(stop)
	wg.Wait()
	for n := range nodes {
		node := fmt.Sprintf("n%d", n)
		if got := bm.countOn(node); got != perNode {
			t.Fatalf("%s holds %d replicas after its last full report, want %d", node, got, perNode)
		}
		bm.mu.Lock()
		for i := range perNode {
			id := cairn.BlockID(1<<30 + i + 2*perNode/2)
			if _, ok := bm.replica(node, id); !ok {
				bm.mu.Unlock()
				t.Fatalf("%s lost blk_%d of its last report", node, id)
			}
		}
		bm.mu.Unlock()
	}
	t.Logf("%d whole-map walks ran beside the reports", walks)
}

// blockMapBytes fills a block map with blocks of three finalized
// replicas on 1,000 nodes and returns the heap it takes per block.
func blockMapBytes(blocks int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	bm := newBlockMap()
	nodes := make([]string, 1000)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("DS-%08d-0000-0000-0000-000000000000", i)
	}
	bm.mu.Lock()
	for i := range blocks {
		r := cairn.Replica{Block: cairn.Block{ID: cairn.BlockID(1<<30 + i), GenStamp: 1000 + cairn.GenStamp(i%7), Len: 64 << 20}, State: cairn.ReplicaFinalized}
		for k := range 3 {
			bm.add(nodes[(i*7+k*331)%len(nodes)], r)
		}
	}
	bm.mu.Unlock()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(bm)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(blocks)
}

// TestBlockMapMemoryPerBlock: a block of three replicas takes at most
// 100 bytes of heap (HDFS: about 150). The map it replaced took about
// 440.
func TestBlockMapMemoryPerBlock(t *testing.T) {
	blocks := 1 << 20
	if testing.Short() {
		blocks = 1 << 18
	}
	per := blockMapBytes(blocks)
	t.Logf("%d blocks of 3 replicas: %.1f bytes a block", blocks, per)
	if per > 100 {
		t.Fatalf("%.1f bytes a block, over 100", per)
	}
}

// BenchmarkBlockMapMemory reports the heap per block of three replicas
// for 1 M blocks, and for CAIRN_SCALE_BLOCKS more when set (10 M in
// docs/PERFORMANCE.md):
//
//	CAIRN_SCALE_BLOCKS=10000000 go test -run '^$' -bench BlockMapMemory -benchtime 1x ./metad/
func BenchmarkBlockMapMemory(b *testing.B) {
	sizes := []int{1 << 20}
	if n, err := strconv.Atoi(os.Getenv("CAIRN_SCALE_BLOCKS")); err == nil && n > 1<<20 {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("blocks=%d", n), func(b *testing.B) {
			var per float64
			for range b.N {
				per = blockMapBytes(n)
			}
			b.ReportMetric(per, "B/block")
		})
	}
}

// TestScanVisitsEveryBlockOnce: a walk in slices sees each block of a map
// that does not change exactly once.
func TestScanVisitsEveryBlockOnce(t *testing.T) {
	bm := newBlockMap()
	const n = 3*scanSlice + 17
	bm.mu.Lock()
	for i := range n {
		bm.add("a", cairn.Replica{Block: cairn.Block{ID: cairn.BlockID(1<<30 + i)}, State: cairn.ReplicaFinalized})
	}
	for i := 0; i < n; i += 5 {
		bm.remove("a", cairn.BlockID(1<<30+i))
	}
	bm.mu.Unlock()
	var ids []cairn.BlockID
	for c := 0; c >= 0; {
		c = bm.scan(c, func(id cairn.BlockID, _ []nodeReplica) { ids = append(ids, id) })
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	want := n - (n+4)/5
	if len(ids) != want {
		t.Fatalf("the walk saw %d blocks, want %d", len(ids), want)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Fatalf("blk_%d seen twice", ids[i])
		}
	}
}
