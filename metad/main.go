package metad

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"cairn"
	"cairn/internal/daemon"
	"cairn/rpc"
)

// Main is the `cairn metad` command.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn metad", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("data", "", "data directory (required)")
	format := fl.Bool("format", false, "format the data directory with a fresh namespace ID, then serve")
	force := fl.Bool("force", false, "with --format: destroy an existing namespace")
	listen := fl.String("listen", ":9000", "RPC address (port 0 picks a free port)")
	httpAddr := fl.String("http", ":9870", "HTTP address for status (port 0 picks a free port; empty disables)")
	repl := fl.Int("replication", cairn.DefaultReplication, "default replication factor")
	blockSize := fl.Int64("block-size", cairn.DefaultBlockSize, "default block size in bytes")
	deadAfter := fl.Duration("dead-after", cairn.DefaultDeadAfter, "a blockd silent this long is dead")
	heartbeat := fl.Duration("heartbeat", cairn.DefaultHeartbeat, "the blockds' heartbeat interval; a blockd silent for two is stale and read from last")
	addrFile := fl.String("addr-file", "", "write the bound addresses as JSON to this file once serving")
	debug := fl.Bool("debug", false, "log at debug level")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn metad --data DIR [--format [--force]] [--listen :9000] [--http :9870]\n\nThe metadata daemon: keeps the namespace in Pebble and tells clients where blocks live.\n\n")
		fl.PrintDefaults()
	}
	pos, err := daemon.Parse(fl, args)
	if daemon.IsHelp(err) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		return daemon.Usage(stderr, "cairn metad", fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if *dir == "" {
		return daemon.Usage(stderr, "cairn metad", "--data DIR is required")
	}
	log := daemon.Logger(*debug).Named("metad")
	defer func() { _ = log.Sync() }()
	if err := serve(ctx, log, *dir, *format, *force, *listen, *httpAddr, *addrFile, Config{
		Dir: *dir, Replication: *repl, BlockSize: *blockSize, DeadAfter: *deadAfter, Heartbeat: *heartbeat, Logger: log,
	}); err != nil {
		log.Error("metad stopped", zap.Error(err))
		fmt.Fprintf(stderr, "cairn metad: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, log *zap.Logger, dir string, format, force bool, listen, httpAddr, addrFile string, cfg Config) error {
	if format {
		id, err := Format(dir, force)
		if err != nil {
			return err
		}
		log.Info("formatted", zap.String("dir", dir), zap.String("namespace_id", id))
	}
	m, err := Open(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := m.Close(); err != nil {
			log.Error("close store", zap.Error(err))
		}
	}()
	lis, err := daemon.Listen("metad RPC", listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.UnaryInterceptor(rpc.ServerIdentity))
	rpc.RegisterNamespace(srv, m)
	rpc.RegisterRegistry(srv, m)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	defer srv.Stop()

	addrs := map[string]string{"rpc": lis.Addr().String(), "namespace_id": m.namespaceID}
	if httpAddr != "" {
		hl, err := daemon.Listen("metad HTTP", httpAddr)
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: m.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		defer hs.Close()
		addrs["http"] = hl.Addr().String()
	}
	log.Info("metad serving", zap.String("rpc", addrs["rpc"]), zap.String("http", addrs["http"]),
		zap.String("namespace_id", m.namespaceID), zap.String("dir", dir))
	if err := daemon.WriteAddrFile(addrFile, addrs); err != nil {
		return err
	}
	ctx, stop := daemon.SignalContext(ctx)
	defer stop()
	select {
	case <-ctx.Done():
		log.Info("metad stopping")
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return nil
	case err := <-errc:
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}

func (m *Metad) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		rep, _ := m.Report(r.Context())
		st, _ := m.Statfs(r.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "cairn metad\nnamespace %s\nfiles and directories %d, blocks %d\ncapacity %d, used %d, remaining %d\n\n",
			rep.NamespaceID, st.Files, st.Blocks, st.Capacity, st.Used, st.Remaining)
		for _, n := range rep.Nodes {
			state := "live"
			if !n.Live {
				state = "dead"
			}
			fmt.Fprintf(w, "%s %s %s blocks=%d used=%d remaining=%d last=%s\n", n.DataAddr, n.StorageID, state, n.Blocks, n.Used, n.Remaining, n.LastHeartbeat.Format(time.RFC3339))
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return mux
}
