package metad

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cairn"
)

// BenchmarkScale drives one metad (its real Pebble store, its block map)
// with 1,000 simulated blockds in the same process, calling its registry
// methods (Register, Heartbeat, BlockReport) as the RPC layer does, and
// reports what docs/PERFORMANCE.md lists: the heap per block, the time to
// process a full report of a blockd of the cluster and one of 1 M
// replicas, client call latency (Stat, and Complete, which records the
// acked replicas in the block map) p50/p99 during a storm of full
// reports, and one replication round after 100 blockds die.
// CAIRN_SCALE_BLOCKS sets the number of blocks (default 100,000, so that
// make bench stays short; docs/PERFORMANCE.md gives larger runs); each
// has three replicas.
//
//	CAIRN_SCALE_BLOCKS=1000000 go test -run '^$' -bench Scale -benchtime 1x -timeout 2h ./metad/
func BenchmarkScale(b *testing.B) {
	blocks := 100_000
	if v := os.Getenv("CAIRN_SCALE_BLOCKS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("CAIRN_SCALE_BLOCKS=%q: want a number of at least 1000", v)
		}
		blocks = n
	}
	const nodes, perFile = 1000, 1000
	clock := newFakeClock()
	m := openCfg(b, Config{Clock: clock, DeadAfter: time.Minute})
	ctx := context.Background()

	// The namespace: files of perFile blocks each, written straight into
	// the store in batches (as AddBlock writes them).
	start := time.Now()
	var all []cairn.Block
	must(b, m.Mkdirs(ctx, "/scale", 0o755))
	for f := 0; f*perFile < blocks; f++ {
		all = append(all, scaleFile(b, m, fmt.Sprintf("/scale/f%07d", f), uint64(1<<40)+uint64(f*perFile), min(perFile, blocks-f*perFile))...)
	}
	b.Logf("namespace of %d blocks in %d files loaded in %v", len(all), (blocks+perFile-1)/perFile, time.Since(start).Round(time.Millisecond))

	ids := make([]string, nodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("DS-%04d", i)
		_, err := m.Register(ctx, cairn.Registration{Node: cairn.Node{StorageID: ids[i], DataAddr: fmt.Sprintf("10.%d.%d.%d:9866", i/65536, i/256%256, i%256), Rack: fmt.Sprintf("/rack%d", i%20)}})
		must(b, err)
	}
	// Replica k of block i is on node (i + k*nodes/3) % nodes: three
	// nodes, on three racks.
	reports := make([][]cairn.Replica, nodes)
	for i, blk := range all {
		for k := range 3 {
			n := (i + k*(nodes/3+1)) % nodes
			reports[n] = append(reports[n], cairn.Replica{Block: blk, State: cairn.ReplicaFinalized})
		}
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// The first full report of each blockd, one at a time.
	start = time.Now()
	var one time.Duration
	for n := range nodes {
		t0 := time.Now()
		must(b, m.BlockReport(ctx, ids[n], reports[n]))
		if n == 0 {
			one = time.Since(t0)
		}
	}
	b.Logf("first full reports of %d blockds (%d replicas each) in %v; one took %v", nodes, len(reports[0]), time.Since(start).Round(time.Millisecond), one.Round(time.Microsecond))
	b.ReportMetric(float64(one.Microseconds())/1000, "ms/report")

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(all))
	b.Logf("heap: %.1f bytes a block of 3 replicas (%d MiB for the map)", per, (after.HeapAlloc-before.HeapAlloc)>>20)
	b.ReportMetric(per, "B/block")

	// A full report of 1 M replicas (or every block, when fewer): a
	// blockd holding a fourth replica of each.
	big := make([]cairn.Replica, 0, min(len(all), 1_000_000))
	for _, blk := range all[:min(len(all), 1_000_000)] {
		big = append(big, cairn.Replica{Block: blk, State: cairn.ReplicaFinalized})
	}
	_, err := m.Register(ctx, cairn.Registration{Node: cairn.Node{StorageID: "DS-big", DataAddr: "10.255.0.1:9866", Rack: "/rack-big"}})
	must(b, err)
	t0 := time.Now()
	must(b, m.BlockReport(ctx, "DS-big", big))
	bigTook := time.Since(t0)
	b.Logf("full report of %d replicas in %v", len(big), bigTook.Round(time.Millisecond))
	b.ReportMetric(bigTook.Seconds(), "s/1M-report")
	must(b, m.BlockReport(ctx, "DS-big", nil))

	// Client calls during a storm: every blockd sends its full report
	// again, 8 at a time, while 4 clients stat files and 2 complete new
	// ones.
	var lat latencies
	stop := make(chan struct{})
	var cw sync.WaitGroup
	for c := range 4 {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				_, err := m.Stat(ctx, fmt.Sprintf("/scale/f%07d", (i*7+c)%((blocks+perFile-1)/perFile)))
				lat.add("stat", time.Since(t0), err)
			}
		}()
	}
	for c := range 2 {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("/scale/new-%d-%d", c, i)
				t0 := time.Now()
				_, err := m.Create(ctx, p, cairn.CreateOptions{Client: "bench"})
				if err == nil {
					err = m.Complete(ctx, cairn.WriterRef{Path: p, Client: "bench"}, nil)
				}
				lat.add("create+complete", time.Since(t0), err)
			}
		}()
	}
	start = time.Now()
	var next atomic.Int64
	var sw sync.WaitGroup
	for range 8 {
		sw.Add(1)
		go func() {
			defer sw.Done()
			for {
				n := int(next.Add(1) - 1)
				if n >= nodes {
					return
				}
				must(b, m.BlockReport(ctx, ids[n], reports[n]))
			}
		}()
	}
	sw.Wait()
	storm := time.Since(start)
	close(stop)
	cw.Wait()
	b.Logf("storm: %d full reports in %v", nodes, storm.Round(time.Millisecond))
	for _, op := range []string{"stat", "create+complete"} {
		p50, p99, n, errs := lat.percentiles(op)
		b.Logf("during the storm: %s p50 %v p99 %v (%d calls, %d errors)", op, p50, p99, n, errs)
		b.ReportMetric(float64(p99.Microseconds())/1000, "ms-p99-"+op)
	}

	// 100 blockds die: the others heartbeat past the dead interval; then
	// one replication round.
	clock.Add(2 * time.Minute)
	for n := 100; n < nodes; n++ {
		_, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: ids[n], Capacity: 1 << 50, Remaining: 1 << 49})
		must(b, err)
	}
	t0 = time.Now()
	must(b, m.checkReplication(false))
	round := time.Since(t0)
	queued := 0
	m.repl.mu.Lock()
	for _, c := range m.repl.transfers {
		queued += len(c)
	}
	m.repl.mu.Unlock()
	b.Logf("replication round after 100 of %d blockds died: %v, %d transfers queued", nodes, round.Round(time.Millisecond), queued)
	b.ReportMetric(round.Seconds(), "s/repl-round")
}

// scaleFile writes a closed file of n blocks, IDs from first on, straight
// into the store.
func scaleFile(t testing.TB, m *Metad, path string, first uint64, n int) []cairn.Block {
	t.Helper()
	fi, err := m.Create(context.Background(), path, cairn.CreateOptions{Client: "load", Replication: 3, BlockSize: 64 << 20})
	must(t, err)
	in, err := m.st.inode(fi.Inode)
	must(t, err)
	b := m.st.db.NewBatch()
	out := make([]cairn.Block, n)
	for i := range n {
		blk := cairn.Block{ID: cairn.BlockID(first + uint64(i)), GenStamp: 1000, Len: 64 << 20}
		_ = b.Set(fileBlockKey(in.Id, uint32(i)), encodeBlock(blk), nil)
		_ = b.Set(blockKey(blk.ID), u64(in.Id), nil)
		out[i] = blk
	}
	in.Blocks, in.Size, in.LeaseHolder = uint32(n), int64(n)*(64<<20), ""
	must(t, setInode(b, in))
	must(t, b.Commit(nil))
	return out
}

// latencies collects call durations by operation.
type latencies struct {
	mu   sync.Mutex
	d    map[string][]time.Duration
	errs map[string]int
}

func (l *latencies) add(op string, d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.d == nil {
		l.d, l.errs = map[string][]time.Duration{}, map[string]int{}
	}
	l.d[op] = append(l.d[op], d)
	if err != nil {
		l.errs[op]++
	}
}

func (l *latencies) percentiles(op string) (p50, p99 time.Duration, n, errs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := slices.Clone(l.d[op])
	if len(d) == 0 {
		return 0, 0, 0, l.errs[op]
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100], len(d), l.errs[op]
}
