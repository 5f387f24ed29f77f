// Package httpfs is `cairn httpfs`, HDFS's HttpFS: the WebHDFS REST API
// (package webhdfs, Gateway mode) from one gateway that streams the
// bytes itself and never redirects, for networks where clients cannot
// reach the blockds; with Prometheus metrics at /metrics.
package httpfs

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/client"
	"cairn/internal/daemon"
	"cairn/trust"
	"cairn/webhdfs"
)

// Main is `cairn httpfs --listen :14000 --metad HOST:9000`, or
// --metad HOST1:9000,HOST2:9000,... for a metad group, whose leader each
// request's client follows (client/leader.go).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn httpfs", flag.ContinueOnError)
	fl.SetOutput(stderr)
	listen := fl.String("listen", ":14000", "HTTP address (port 0 picks a free port)")
	metad := fl.String("metad", "", "metad address, or a metad group's members HOST1:9000,HOST2:9000,... whose leader is followed (default $CAIRN_METAD or 127.0.0.1:9000)")
	certs := fl.String("certs", "", "the gateway's credentials: a mount or admin certificate speaks for the users whose certificates call it (default $CAIRN_CERTS or ~/.cairn/certs)")
	insecure := fl.Bool("insecure", false, "serve plain HTTP to an --insecure dev cluster, callers named by user.name (loopback only)")
	bodyTimeout := fl.Duration("body-timeout", webhdfs.DefaultBodyTimeout, "each read of a CREATE or APPEND body, and each write of OPEN's bytes, must finish within this: a stalled upload is cut off and the file closed with the bytes received; a reader that stops reading is cut off")
	addrFile := fl.String("addr-file", "", "write the bound address as JSON to this file once serving")
	debug := fl.Bool("debug", false, "log at debug level")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn httpfs [--listen :14000] [--metad HOST:9000[,HOST:9000...]] [--certs DIR | --insecure]\n\n"+
			"HDFS's HttpFS: the WebHDFS REST API (/webhdfs/v1/PATH?op=...) from one gateway that streams the bytes\n"+
			"itself and never redirects. Metrics at /metrics.\n\n")
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	log := daemon.Logger(*debug).Named("httpfs")
	defer func() { _ = log.Sync() }()
	if *insecure {
		if err := daemon.CheckInsecure("cairn httpfs", *listen); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	g := &gateway{metad: client.MetadAddr(*metad), insecure: *insecure, log: log, metrics: newMetrics(), bodyTimeout: *bodyTimeout,
		leader: client.NewLeaderHint()}
	if !*insecure {
		h, err := client.LoadCreds(*certs)
		if err != nil {
			fmt.Fprintf(stderr, "cairn httpfs: %v\n", err)
			return 2
		}
		g.creds = h
	}
	if err := g.serve(ctx, *listen, *addrFile); err != nil {
		log.Error("httpfs stopped", zap.Error(err))
		fmt.Fprintf(stderr, "cairn httpfs: %v\n", err)
		return 1
	}
	return 0
}

// gateway is a running HttpFS.
type gateway struct {
	metad    string
	insecure bool
	creds    *trust.Holder // nil when insecure
	log      *zap.Logger
	metrics  *metrics
	// bodyTimeout bounds each read of an upload's body.
	bodyTimeout time.Duration
	// leader is shared by the clients dialed per request: given a metad
	// group's members, each starts at the member found leading last.
	leader *client.LeaderHint
}

func (g *gateway) serve(ctx context.Context, listen, addrFile string) error {
	l, err := daemon.Listen("httpfs", listen)
	if err != nil {
		return err
	}
	l = daemon.CapListener(l, daemon.DefaultMaxConns, "httpfs", g.log)
	if g.creds != nil {
		l = tls.NewListener(l, trust.ServerConfig(g.creds, nil))
	}
	hs := webhdfs.Limit(&http.Server{Handler: g.handler()})
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	defer hs.Close()
	g.log.Info("httpfs serving", zap.String("http", l.Addr().String()), zap.String("metad", g.metad), zap.Bool("tls", g.creds != nil))
	if err := daemon.WriteAddrFile(addrFile, map[string]string{"http": l.Addr().String()}); err != nil {
		return err
	}
	ctx, stop := daemon.SignalContext(ctx)
	defer stop()
	select {
	case <-ctx.Done():
		g.log.Info("httpfs stopping")
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}

// handler serves WebHDFS, /metrics and /healthz.
func (g *gateway) handler() http.Handler {
	wh := &webhdfs.Handler{Mode: webhdfs.Gateway, Log: g.log.Named("webhdfs"), NameNodeID: g.metad,
		Session: g.session, Observe: g.metrics.observe, BodyTimeout: g.bodyTimeout}
	mux := http.NewServeMux()
	var m http.Handler = g.metrics.handler()
	if g.creds != nil {
		m = trust.RequireCert(m) // Prometheus scrapes with a certificate
	}
	mux.Handle("/metrics", m)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return webhdfs.Route(g.authenticate(wh), mux)
}

// authenticate puts the caller's peer into a secure request's context:
// its certificate's, else the owner its delegation token names (metad
// checks the token at every call the gateway makes with it).
func (g *gateway) authenticate(next http.Handler) http.Handler {
	if g.creds == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			if p, _, ok := trust.PeerOfState(*r.TLS); ok {
				next.ServeHTTP(w, r.WithContext(trust.WithPeer(r.Context(), p)))
				return
			}
		}
		if tok := trust.DelegationTokenOf(r); tok != "" {
			if t, _, _, err := trust.ParseDelegationToken(tok); err == nil {
				next.ServeHTTP(w, r.WithContext(trust.WithPeer(r.Context(), trust.Peer{Role: trust.RoleUser, Name: t.Owner})))
				return
			}
		}
		next.ServeHTTP(w, r) // CallerOf answers SecurityException
	})
}

// session dials metad as the caller: by its delegation token, or
// speaking for its certificate's user (the gateway's own certificate
// must be a mount's or an admin's), or as its user.name when insecure.
func (g *gateway) session(r *http.Request, q *webhdfs.Request) (*webhdfs.Session, error) {
	c, err := webhdfs.CallerOf(r, q, !g.insecure)
	if err != nil {
		return nil, err
	}
	opts := client.Options{Logger: g.log.Named("client"), Insecure: g.insecure, Creds: g.creds, Leader: g.leader}
	if c.ByToken {
		opts.Delegation = c.Token
	} else {
		opts.Identity = cairn.Identity{User: c.User}
	}
	cl, err := client.Dial(g.metad, opts)
	if err != nil {
		return nil, err
	}
	if c.ByToken {
		if err := webhdfs.CheckToken(r.Context(), cl.NS); err != nil {
			_ = cl.Close()
			return nil, err
		}
	}
	s := &webhdfs.Session{Ctx: r.Context(), NS: cl.NS, Client: cl, User: c.User, ByToken: c.ByToken, Token: c.Token,
		Close: func() { _ = cl.Close() }}
	if !g.insecure {
		s.Delegations = cl.Delegations()
	}
	return s, nil
}
