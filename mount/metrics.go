package mount

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"cairn/internal/daemon"
	"cairn/trust"
)

// metrics are the mount's FUSE counters (timedfs.go counts into them),
// registered in Options.Metrics. The client's (RPC latency, pipeline
// recoveries) go in the same registry, from package client.
type metrics struct {
	opTime       *prometheus.HistogramVec // by FUSE op
	errs         *prometheus.CounterVec   // by op and errno
	readBytes    prometheus.Counter
	writtenBytes prometheus.Counter
}

// fuseBuckets are the bounds, in seconds, of the FUSE op histogram: a
// getattr answered from memory to a write that waits on a pipeline.
var fuseBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		opTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_mount_fuse_op_duration_seconds",
			Help:    "Time the mount took to answer a FUSE request, by op (lookup, getattr, read, write, create, flush, ...).",
			Buckets: fuseBuckets}, []string{"op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_mount_fuse_errors_total",
			Help: "FUSE requests answered with an error, by op and errno (ENOENT of a lookup is a name that is not there)."}, []string{"op", "errno"}),
		readBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_mount_read_bytes_total",
			Help: "Bytes read from files through the mount (what the kernel asked for and got, its read-ahead included)."}),
		writtenBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_mount_written_bytes_total",
			Help: "Bytes written to files through the mount."}),
	}
	for _, c := range []prometheus.Collector{m.opTime, m.errs, m.readBytes, m.writtenBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mount metrics: %w", err)
		}
	}
	return m, nil
}

// op records one FUSE request of op that began at start and ended st.
func (m *metrics) op(op string, start time.Time, st fuse.Status) {
	m.opTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if st != fuse.OK {
		m.errs.WithLabelValues(op, errnoName(st)).Inc()
	}
}

// errnoName is st's errno as its C name (ENOENT), or its number.
func errnoName(st fuse.Status) string {
	if n := unix.ErrnoName(syscall.Errno(st)); n != "" {
		return n
	}
	return fmt.Sprintf("errno%d", int32(st))
}

// NewMetricsRegistry is the registry a mount serves at -o metrics=ADDR:
// the Go runtime's and the process's collectors; Mount and the client
// add theirs.
func NewMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// metricsServer serves reg's /metrics at addr: over TLS with the mount's
// certificate to holders of a cluster certificate (creds set), or in plain
// HTTP on a loopback address only (an --insecure cluster's mount). It
// returns the bound address and the function that stops it.
func metricsServer(addr string, reg *prometheus.Registry, creds *trust.Holder, log *zap.Logger) (string, func(), error) {
	if creds == nil {
		if err := daemon.CheckInsecure("cairn mount -o metrics", addr); err != nil {
			return "", nil, err
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	var h http.Handler = mux
	if creds != nil {
		h = trust.RequireCert(mux)
		l = tls.NewListener(l, trust.ServerConfig(creds, nil))
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", zap.Error(err))
		}
	}()
	bound := l.Addr().String()
	log.Info("metrics serving", zap.String("addr", bound), zap.Bool("tls", creds != nil))
	return bound, func() { _ = srv.Close() }, nil
}
