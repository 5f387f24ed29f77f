package mount

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"cairn"
	"cairn/client"
)

const usage = `usage: cairn mount HOST:PORT[,HOST:PORT...][/subdir] MOUNTPOINT [-o opt,opt...] [--foreground] [--debug] [--log FILE]

Mounts the cairn namespace served by metad at HOST:PORT (or its directory
/subdir) at MOUNTPOINT. Without --foreground it detaches once the mount is
up, as mount(8) expects of mount.cairn.

  -o rw|ro               read-write (default) or read-only
  -o allow_other         let other users in (metad checks each as itself)
  -o default_permissions let the kernel also check permission bits against
                         the uids and gids shown (metad checks them anyway)
  -o nonempty            mount over a non-empty directory
  -o debug               as --debug
  -o log=FILE            as --log FILE
  -o certs=DIR           the mount's key and certificate (default
                         $CAIRN_CERTS, else ~/.cairn/mount)
  -o join=TOKEN          join the cluster with this token (cairn admin
                         -join-token --role mount) if the mount has no
                         certificate yet (also $CAIRN_JOIN)
  -o insecure            talk to an --insecure dev cluster in plain text
                         (also $CAIRN_INSECURE=1)
  -o ack_timeout=DUR     wait of a write pipeline's blockd for the next one's
                         ack (default 60s); each node further up, and the
                         mount, waits an extension more per node between
  -o setup_timeout=DUR   the same for connecting and setting up a write
                         pipeline (default 10s)
  -o read_timeout=DUR    connecting to a replica to read and its answer;
                         then the next replica is tried (default 5s)
  -o read_ahead=KIB      the kernel's read-ahead for the mount (default
                         4096; 0 leaves the kernel's 128); needs root
  -o metrics=ADDR        serve Prometheus metrics at https://ADDR/metrics
                         to holders of a cluster certificate (plain HTTP,
                         loopback only, with -o insecure); port 0 picks
                         one, logged as "metrics serving"
  -o nosuid,nodev,...    passed to the kernel
  (_netdev, nofail, noauto, auto, user, users, defaults, x-* are ignored)
  --foreground           stay in the foreground; unmount on SIGINT/SIGTERM
  --debug                log at debug level, FUSE requests included
  --log FILE             log to FILE instead of stderr (detached: syslog)
  --metrics ADDR         as -o metrics=ADDR
  -f                     check the arguments, do not mount (mount(8) -f)
  -s                     ignore unknown -o options (mount(8) -s)
  -n, -v, -t TYPE        accepted from mount(8), ignored
`

// metadTimeout bounds the check that metad answers, before mounting.
const metadTimeout = 10 * time.Second

// config is a parsed command line.
type config struct {
	source     string // HOST:PORT[/subdir] as given
	addr       string
	root       string // cairn directory to mount
	mountpoint string
	opts       Options
	rawOpts    []string // -o options as given, for the detached child
	client     client.Options
	nonempty   bool
	foreground bool
	debug      bool
	fake       bool
	logFile    string
	certs      string // -o certs=DIR
	metrics    string // -o metrics=ADDR: where /metrics is served
	join       string // -o join=TOKEN
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// optList collects repeated, comma-separated -o options.
type optList struct{ opts *[]string }

func (o optList) String() string {
	if o.opts == nil {
		return ""
	}
	return strings.Join(*o.opts, ",")
}

func (o optList) Set(s string) error {
	for _, opt := range strings.Split(s, ",") {
		if opt = strings.TrimSpace(opt); opt != "" {
			*o.opts = append(*o.opts, opt)
		}
	}
	return nil
}

// parseArgs reads the command line; flags may come before, between or
// after the two positionals.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fl := flag.NewFlagSet("cairn mount", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.Var(optList{&cfg.rawOpts}, "o", "mount options")
	fl.BoolVar(&cfg.foreground, "foreground", false, "stay in the foreground")
	fl.BoolVar(&cfg.debug, "debug", false, "debug logging")
	fl.StringVar(&cfg.logFile, "log", "", "log file")
	fl.StringVar(&cfg.metrics, "metrics", "", "metrics address")
	fl.BoolVar(&cfg.fake, "f", false, "do not mount")
	sloppy := fl.Bool("s", false, "ignore unknown options")
	fl.Bool("n", false, "ignored")
	fl.Bool("v", false, "ignored")
	fl.String("t", "", "ignored")
	var pos []string
	for rest := args; ; {
		if err := fl.Parse(rest); errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
			return cfg, err
		} else if err != nil {
			return cfg, usageError{err.Error()}
		}
		rest = fl.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	if len(pos) != 2 {
		return cfg, usageError{"want HOST:PORT[/subdir] and MOUNTPOINT"}
	}
	cfg.source, cfg.mountpoint = pos[0], pos[1]
	var err error
	if cfg.addr, cfg.root, err = parseSource(cfg.source); err != nil {
		return cfg, err
	}
	for _, o := range cfg.rawOpts {
		if err := cfg.option(o, *sloppy); err != nil {
			return cfg, err
		}
	}
	if cfg.metrics != "" {
		if _, _, err := net.SplitHostPort(cfg.metrics); err != nil {
			return cfg, usageError{fmt.Sprintf("metrics address %q: want HOST:PORT, such as 127.0.0.1:9547", cfg.metrics)}
		}
	}
	return cfg, nil
}

// parseSource splits HOST:PORT[/subdir], where HOST:PORT may be the
// members of a metad group, HOST1:PORT,HOST2:PORT,... (the client follows
// their leader).
func parseSource(s string) (addr, root string, err error) {
	addr, sub, _ := strings.Cut(s, "/")
	for _, a := range strings.Split(addr, ",") {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", "", usageError{fmt.Sprintf("%q: want HOST:PORT[,HOST:PORT...][/subdir]", s)}
		}
	}
	root = "/" + strings.TrimRight(sub, "/")
	if err := cairn.ValidatePath(root); err != nil {
		return "", "", usageError{fmt.Sprintf("%q: bad subdir: %v", s, err)}
	}
	return addr, root, nil
}

// kernelOptions pass to the kernel as given.
var kernelOptions = map[string]bool{
	"suid": true, "nosuid": true, "dev": true, "nodev": true, "exec": true, "noexec": true,
	"atime": true, "noatime": true, "relatime": true, "sync": true, "async": true, "dirsync": true,
}

// ignoredOptions are for mount(8) and fstab, not for the mount itself.
var ignoredOptions = map[string]bool{
	"_netdev": true, "nofail": true, "noauto": true, "auto": true,
	"user": true, "nouser": true, "users": true, "defaults": true,
}

// timeoutOptions are the -o options that set a client timeout.
var timeoutOptions = map[string]func(*client.Options) *time.Duration{
	"ack_timeout":   func(o *client.Options) *time.Duration { return &o.AckTimeout },
	"setup_timeout": func(o *client.Options) *time.Duration { return &o.SetupTimeout },
	"read_timeout":  func(o *client.Options) *time.Duration { return &o.ReadTimeout },
}

// option applies one -o option.
func (cfg *config) option(o string, sloppy bool) error {
	key, val, hasVal := strings.Cut(o, "=")
	switch {
	case o == "rw":
		cfg.opts.ReadOnly = false
	case o == "ro":
		cfg.opts.ReadOnly = true
	case o == "allow_other":
		cfg.opts.AllowOther = true
	case o == "default_permissions":
		cfg.opts.DefaultPermissions = true
	case o == "debug":
		cfg.debug = true
	case o == "nonempty":
		cfg.nonempty = true
	case key == "log" && hasVal && val != "":
		cfg.logFile = val
	case key == "certs" && hasVal && val != "":
		cfg.certs = val
	case key == "metrics" && hasVal:
		cfg.metrics = val
	case key == "join" && hasVal && val != "":
		cfg.join = val
	case o == "insecure":
		cfg.client.Insecure = true
	case timeoutOptions[key] != nil && hasVal:
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return usageError{fmt.Sprintf("mount option %q: want a positive duration such as 5s", o)}
		}
		*timeoutOptions[key](&cfg.client) = d
	case key == "read_ahead" && hasVal:
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.ToLower(val), "k"))
		if err != nil || kb < 0 {
			return usageError{fmt.Sprintf("mount option %q: want KiB, such as 4096", o)}
		}
		cfg.opts.ReadAheadKB = kb
	case kernelOptions[o]:
		cfg.opts.KernelOptions = append(cfg.opts.KernelOptions, o)
	case ignoredOptions[o], strings.HasPrefix(o, "x-"), key == "comment", sloppy:
	default:
		return usageError{fmt.Sprintf("unknown mount option %q", o)}
	}
	return nil
}

// Main is the `cairn mount` command; it returns the exit status: 0, 1 on
// failure, 2 on a bad command line.
func Main(ctx context.Context, args []string) int { return MainTo(ctx, args, os.Stderr) }

// MainTo is Main with its usage and command-line errors written to
// stderr (`cairn help mount` sends them to stdout). The mount's log goes
// to os.Stderr or its --log file.
func MainTo(ctx context.Context, args []string, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "cairn mount: %v (cairn mount -h shows how)\n", err)
		return 2
	}
	if err := cfg.checkMountpoint(); err != nil {
		fmt.Fprintf(stderr, "cairn mount: %v\n", err)
		return 1
	}
	if cfg.fake {
		return 0
	}
	if !cfg.foreground {
		return background(ctx, cfg, stderr)
	}
	return foreground(ctx, cfg)
}

// checkMountpoint makes the mountpoint absolute and checks it is a
// directory, and an empty one unless -o nonempty.
func (cfg *config) checkMountpoint() error {
	dir, err := filepath.Abs(cfg.mountpoint)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", cfg.mountpoint, bare(err))
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", cfg.mountpoint, bare(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", cfg.mountpoint)
	}
	if !cfg.nonempty {
		d, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("mountpoint %s: %w", cfg.mountpoint, bare(err))
		}
		names, _ := d.Readdirnames(1)
		d.Close()
		if len(names) > 0 {
			return fmt.Errorf("mountpoint %s is not empty (-o nonempty mounts over it)", cfg.mountpoint)
		}
	}
	cfg.mountpoint = dir
	return nil
}

// bare drops the operation and path of a *fs.PathError, which the
// message around it already names.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// dialBackend connects to metad at addr with opts; the returned func
// disconnects. This package's tests replace it to run Main over an
// in-memory backend.
var dialBackend = func(addr string, opts client.Options) (Backend, func() error, error) {
	opts.Logger = opts.Logger.Named("client")
	c, err := client.Dial(addr, opts)
	if err != nil {
		return nil, nil, err
	}
	return ClientBackend(c), c.Close, nil
}

// foreground mounts and serves until SIGINT, SIGTERM, ctx's end or an
// unmount from outside.
func foreground(ctx context.Context, cfg config) int {
	// Signals are caught from the start: killed while go-fuse probes the
	// new mount from inside this process, it could never finish dying.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case s := <-sig:
			stop(fmt.Errorf("signal %v", s))
		case <-ctx.Done():
		}
	}()
	detached := os.Getenv(detachedEnv) == "1"
	if detached {
		// The parent stops reading stderr once the mount is up.
		signal.Ignore(syscall.SIGPIPE)
	}
	out := &logSink{w: os.Stderr}
	var logFile *os.File
	if cfg.logFile != "" {
		f, err := os.OpenFile(cfg.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cairn mount: %v\n", err)
			return 1
		}
		defer f.Close()
		logFile = f
		out.set(f)
	}
	log := newLogger(cfg.debug, out)
	defer log.Sync()

	copts := cfg.client
	copts.Logger = log
	if os.Getenv("CAIRN_INSECURE") != "" {
		copts.Insecure = true
	}
	if !copts.Insecure && copts.Creds == nil {
		h, dir, err := mountCreds(ctx, cfg, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cairn mount: %v\n", err)
			return 1
		}
		copts.Creds = h
		go renewCreds(ctx, cfg.addr, h, dir, log.Named("trust"))
	}
	opts := cfg.opts
	if cfg.metrics != "" {
		reg := NewMetricsRegistry()
		creds := copts.Creds
		if copts.Insecure {
			creds = nil
		}
		_, stopMetrics, err := metricsServer(cfg.metrics, reg, creds, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cairn mount: %v\n", err)
			return 1
		}
		defer stopMetrics()
		copts.Metrics, opts.Metrics = reg, reg
	}
	b, disconnect, err := dialBackend(cfg.addr, copts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn mount: metad %s: %v\n", cfg.addr, err)
		return 1
	}
	defer disconnect()
	sctx, cancel := context.WithTimeout(ctx, metadTimeout)
	defer cancel()
	fi, err := b.Stat(sctx, cfg.root)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", cfg.root)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn mount: metad %s: %v\n", cfg.addr, err)
		return 1
	}
	opts.Root, opts.FsName, opts.Debug, opts.Logger = cfg.root, cfg.source, cfg.debug, log
	m, err := Mount(sctx, b, cfg.mountpoint, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn mount: %v\n", err)
		return 1
	}
	log.Info("mounted", zap.String("mountpoint", cfg.mountpoint), zap.String("metad", cfg.addr), zap.String("root", cfg.root))
	if detached {
		detach(out, logFile, log)
	}

	served := make(chan struct{})
	go func() { m.Wait(); close(served) }()
	select {
	case <-ctx.Done():
		log.Info("unmounting", zap.String("mountpoint", cfg.mountpoint), zap.NamedError("cause", context.Cause(ctx)))
	case <-served:
		log.Info("unmounted from outside", zap.String("mountpoint", cfg.mountpoint))
		m.fsys.closeWriters()
		return 0
	}
	if err := m.Unmount(); err != nil {
		log.Error("unmount failed", zap.Error(err))
		return 1
	}
	log.Info("unmounted", zap.String("mountpoint", cfg.mountpoint))
	return 0
}

// newLogger logs in zap's production format, console-encoded, to w.
func newLogger(debug bool, w zapcore.WriteSyncer) *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	level := zapcore.InfoLevel
	if debug {
		level = zapcore.DebugLevel
	}
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(cfg.EncoderConfig), w, level)
	return zap.New(core, zap.ErrorOutput(w)).Named("mount")
}

// logSink is where log lines go; a detached mount moves it off the
// parent's stderr once mounted.
type logSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *logSink) Sync() error { return nil }

func (s *logSink) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}
