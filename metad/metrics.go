package metad

import (
	"context"
	"net/http"
	"path"
	"runtime/metrics"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// Describe and Collect make stats a prometheus.Collector: the counters are
// read when /metrics is asked for, so counting stays an atomic add.
func (s *stats) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMutations
	ch <- descWALSyncs
	ch <- descRPCs
	ch <- descHeapLive
	ch <- descHeapObjects
}

func (s *stats) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descMutations, prometheus.CounterValue, float64(s.mutations.Load()))
	ch <- prometheus.MustNewConstMetric(descWALSyncs, prometheus.CounterValue, float64(s.walSyncs.Load()))
	s.mu.Lock()
	defer s.mu.Unlock()
	for m, c := range s.rpcs {
		ch <- prometheus.MustNewConstMetric(descRPCs, prometheus.CounterValue, float64(c.Load()), m)
	}
	// Go's heap (the block map lives there; Pebble's cache and memtables
	// do not): live as of the last collection, and in use now, garbage
	// included.
	ms := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(ms)
	for i, d := range []*prometheus.Desc{descHeapLive, descHeapObjects} {
		if ms[i].Value.Kind() == metrics.KindUint64 {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(ms[i].Value.Uint64()))
		}
	}
}

var (
	descMutations = prometheus.NewDesc("cairn_metad_mutations_total", "Namespace mutations applied.", nil, nil)
	descWALSyncs  = prometheus.NewDesc("cairn_metad_wal_syncs_total", "Mutations that waited for a WAL sync (concurrent ones may share one).", nil, nil)
	descRPCs      = prometheus.NewDesc("cairn_metad_rpcs_total", "RPCs received, by method.", []string{"method"}, nil)

	descHeapLive    = prometheus.NewDesc("cairn_metad_go_heap_live_bytes", "Go heap live as of the last collection (the block map lives there; Pebble's cache does not).", nil, nil)
	descHeapObjects = prometheus.NewDesc("cairn_metad_go_heap_objects_bytes", "Go heap in use now, garbage included.", nil, nil)
)

// metricsHandler serves /metrics in Prometheus's text format: metad's
// counters and the Go runtime's.
func (s *stats) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(s, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
