package blockd

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"cairn/rpc/pb"
)

// metrics are a blockd's counters and histograms, served at /metrics on
// its HTTP port from a registry of its own (several blockds may run in
// one process in tests). Counting is an atomic add on the data path; the
// gauges (space, volumes, the scanner's progress) are read at scrape time.
type metrics struct {
	reg *prometheus.Registry

	readBytes, writtenBytes   prometheus.Counter
	readBlocks, writtenBlocks prometheus.Counter
	opTime                    *prometheus.HistogramVec // by data op
	checksumFailures          *prometheus.CounterVec   // by where found
	volumeFailures            prometheus.Counter
	recoveries                *prometheus.CounterVec // block recoveries led, by result
	replications              *prometheus.CounterVec // copies metad asked for, by result
	replicatedBytes           prometheus.Counter
	deletes                   prometheus.Counter
	heartbeatTime             prometheus.Histogram
}

// dataBuckets are the bounds, in seconds, of the data op histogram: a
// small read served from the page cache to a whole block written through
// a slow pipeline.
var dataBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newMetrics(d *Blockd) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		readBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_blockd_read_bytes_total",
			Help: "Block bytes sent to readers (clients, WebHDFS) from this blockd's replicas."}),
		writtenBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_blockd_written_bytes_total",
			Help: "Block bytes written to this blockd's replicas by pipelines: writers, appends, copies."}),
		readBlocks: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_blockd_read_blocks_total",
			Help: "Block reads served to the end (a read of part of a block counts one)."}),
		writtenBlocks: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_blockd_written_blocks_total",
			Help: "Replicas finalized after a pipeline wrote them: a block written, appended to, or copied here."}),
		opTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_blockd_op_duration_seconds",
			Help:    "Time a data port operation took, from its opening to its end, by op (write_block, read_block, transfer_block, init_recovery, update_recovery, verify_block).",
			Buckets: dataBuckets}, []string{"op"}),
		checksumFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_blockd_checksum_failures_total",
			Help: "Checksum mismatches found on the data path, by where: write (a packet received from upstream), read (a replica read for a reader or a copy). The scanner's finds are cairn_blockd_scanner_bad_blocks_total."}, []string{"where"}),
		volumeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_blockd_volume_failures_total",
			Help: "Volumes taken out of service after disk errors since the start."}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_blockd_block_recoveries_total",
			Help: "Block recoveries this blockd led as primary (a writer's pipeline or lease recovered), by result."}, []string{"result"}),
		replications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_blockd_replications_total",
			Help: "Replicas copied to another blockd as metad asked (re-replication, decommissioning, balancer moves), by result."}, []string{"result"}),
		replicatedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_blockd_replicated_bytes_total",
			Help: "Block bytes of the replicas copied to another blockd as metad asked."}),
		deletes: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_blockd_deleted_blocks_total",
			Help: "Replicas deleted as metad asked."}),
		heartbeatTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_blockd_heartbeat_duration_seconds",
			Help: "Time a heartbeat to metad took, its answer included.", Buckets: dataBuckets}),
	}
	for _, r := range []string{"ok", "failed"} {
		m.recoveries.WithLabelValues(r)
		m.replications.WithLabelValues(r)
	}
	for _, w := range []string{"write", "read"} {
		m.checksumFailures.WithLabelValues(w)
	}
	m.reg.MustRegister(m.readBytes, m.writtenBytes, m.readBlocks, m.writtenBlocks, m.opTime, m.checksumFailures,
		m.volumeFailures, m.recoveries, m.replications, m.replicatedBytes, m.deletes, m.heartbeatTime,
		stateCollector{d}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// opName is the op label of a data port operation: WRITE_BLOCK → write_block.
func opName(op pb.OpHeader_Op) string { return strings.ToLower(op.String()) }

// observeOp times one data port operation.
func (m *metrics) observeOp(op pb.OpHeader_Op, start time.Time) {
	m.opTime.WithLabelValues(opName(op)).Observe(time.Since(start).Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// stateCollector reads a blockd's state at scrape time: its space, its
// volumes, its work under way and its block scanner's progress.
type stateCollector struct{ d *Blockd }

var (
	descCapacity    = prometheus.NewDesc("cairn_blockd_capacity_bytes", "Capacity of the volumes in service (within --capacity).", nil, nil)
	descUsed        = prometheus.NewDesc("cairn_blockd_used_bytes", "Bytes of replicas on the volumes in service.", nil, nil)
	descRemaining   = prometheus.NewDesc("cairn_blockd_remaining_bytes", "Bytes the volumes in service can still take.", nil, nil)
	descVolumes     = prometheus.NewDesc("cairn_blockd_volumes", "Data directories by state: in_service or failed.", []string{"state"}, nil)
	descActive      = prometheus.NewDesc("cairn_blockd_active_transfers", "Copies and recoveries under way, as heartbeats tell metad.", nil, nil)
	descConns       = prometheus.NewDesc("cairn_blockd_data_connections", "Connections the data port is serving.", nil, nil)
	descScanBlocks  = prometheus.NewDesc("cairn_blockd_scanner_verified_blocks_total", "Replicas the block scanner verified.", nil, nil)
	descScanBytes   = prometheus.NewDesc("cairn_blockd_scanner_verified_bytes_total", "Block bytes the block scanner read and verified.", nil, nil)
	descScanBad     = prometheus.NewDesc("cairn_blockd_scanner_bad_blocks_total", "Replicas the block scanner found bad.", nil, nil)
	descScanLastEnd = prometheus.NewDesc("cairn_blockd_scanner_last_full_scan_timestamp_seconds", "When the block scanner last finished a pass of a volume (Unix time; 0: none yet).", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCapacity, descUsed, descRemaining, descVolumes, descActive, descConns, descScanBlocks, descScanBytes, descScanBad, descScanLastEnd} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	capacity, used, remaining := d.usage()
	gauge(descCapacity, float64(capacity))
	gauge(descUsed, float64(used))
	gauge(descRemaining, float64(remaining))
	gauge(descVolumes, float64(len(d.store.Dirs())), "in_service")
	gauge(descVolumes, float64(len(d.store.Failed())), "failed")
	gauge(descActive, float64(d.active.Load()))
	gauge(descConns, float64(d.conns.Load()))
	var blocks, bytes, bad int64
	var last float64
	if s := d.scan; s != nil {
		blocks, bytes, bad = s.verified.Load(), s.bytes.Load(), s.bad.Load()
		if t := s.lastPass.Load(); t != 0 {
			last = float64(t) / 1e9
		}
	}
	ch <- prometheus.MustNewConstMetric(descScanBlocks, prometheus.CounterValue, float64(blocks))
	ch <- prometheus.MustNewConstMetric(descScanBytes, prometheus.CounterValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(descScanBad, prometheus.CounterValue, float64(bad))
	gauge(descScanLastEnd, last)
}
