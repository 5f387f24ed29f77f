package metad

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"runtime/metrics"
	"sort"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
)

// stats counts what metad's work costs, for operators and for tests that
// check a client's calls cost what they should: how many mutations were
// applied, how many of them waited for a WAL sync (concurrent ones may
// share one: group commit), and how many RPCs of each method came in.
type stats struct {
	mutations atomic.Int64
	walSyncs  atomic.Int64

	mu   sync.Mutex
	rpcs map[string]*atomic.Int64 // by method name, e.g. "Create"
}

// rpc counts one call of method.
func (s *stats) rpc(method string) {
	s.mu.Lock()
	c := s.rpcs[method]
	if c == nil {
		if s.rpcs == nil {
			s.rpcs = map[string]*atomic.Int64{}
		}
		c = &atomic.Int64{}
		s.rpcs[method] = c
	}
	s.mu.Unlock()
	c.Add(1)
}

// countRPCs is a gRPC interceptor that counts every call by method.
func (s *stats) countRPCs(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.rpc(path.Base(info.FullMethod))
	return h(ctx, req)
}

// write prints the counters in Prometheus's text format, sorted.
func (s *stats) write(w io.Writer) {
	fmt.Fprintf(w, "# TYPE cairn_metad_mutations_total counter\ncairn_metad_mutations_total %d\n", s.mutations.Load())
	fmt.Fprintf(w, "# TYPE cairn_metad_wal_syncs_total counter\ncairn_metad_wal_syncs_total %d\n", s.walSyncs.Load())
	s.mu.Lock()
	methods := make([]string, 0, len(s.rpcs))
	for m := range s.rpcs {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	counts := make([]int64, len(methods))
	for i, m := range methods {
		counts[i] = s.rpcs[m].Load()
	}
	s.mu.Unlock()
	fmt.Fprintf(w, "# TYPE cairn_metad_rpcs_total counter\n")
	for i, m := range methods {
		fmt.Fprintf(w, "cairn_metad_rpcs_total{method=%q} %d\n", m, counts[i])
	}
	// Go's heap (the block map lives there; Pebble's cache and memtables
	// do not): live as of the last collection, and in use now, garbage
	// included.
	ms := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(ms)
	for i, name := range []string{"cairn_metad_go_heap_live_bytes", "cairn_metad_go_heap_objects_bytes"} {
		if ms[i].Value.Kind() == metrics.KindUint64 {
			fmt.Fprintf(w, "# TYPE %s gauge\n%s %d\n", name, name, ms[i].Value.Uint64())
		}
	}
}

// serveMetrics answers GET /metrics.
func (s *stats) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.write(w)
}
