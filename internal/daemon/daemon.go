// Package daemon holds what cairn's long-running commands share: a zap
// logger, flag parsing that accepts flags after positionals, the address
// file tests and scripts read, and a listener that logs what it bound.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"cairn"
)

// Logger returns a console logger on stderr at info level, or debug.
func Logger(debug bool) *zap.Logger {
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	level := zapcore.InfoLevel
	if debug {
		level = zapcore.DebugLevel
	}
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(cfg), zapcore.Lock(os.Stderr), level)
	return zap.New(core)
}

// Parse parses args with fs, allowing flags before, between and after the
// positional arguments, which it returns. "--" ends flag parsing.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// WriteAddrFile writes v as JSON to path atomically (temporary file, rename),
// for scripts and tests that start a daemon on port 0.
func WriteAddrFile(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	return nil
}

// Listen listens on TCP addr and returns the listener; the caller logs
// l.Addr().
func Listen(what, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
	}
	return l, nil
}

// SignalContext returns a context cancelled on SIGINT or SIGTERM.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// Usage prints a one-line usage error and returns exit code 2.
func Usage(w io.Writer, cmd, msg string) int {
	fmt.Fprintf(w, "%s: %s\nRun '%s -h' for usage.\n", cmd, msg, cmd)
	return 2
}

// IsHelp reports whether err is the flag package's answer to -h.
func IsHelp(err error) bool { return errors.Is(err, flag.ErrHelp) }

// MetadAddr is the metad address when no flag names one: $CAIRN_METAD, else
// 127.0.0.1:9000.
func MetadAddr() string {
	if env := os.Getenv("CAIRN_METAD"); env != "" {
		return env
	}
	return cairn.DefaultMetadAddr
}

// ParseFlags parses the args of a command that takes flags and exactly
// want positional arguments (-1: any number). When the command should not
// go on it returns ok false and the exit code: 0 after -h, 2 after bad
// flags or the wrong number of arguments (with a message on stderr).
func ParseFlags(fl *flag.FlagSet, args []string, want int, stderr io.Writer) (pos []string, code int, ok bool) {
	pos, err := Parse(fl, args)
	switch {
	case IsHelp(err):
		return nil, 0, false
	case err != nil:
		return nil, 2, false
	case want == 0 && len(pos) > 0:
		return nil, Usage(stderr, fl.Name(), fmt.Sprintf("unexpected argument %q", pos[0])), false
	case want > 0 && len(pos) != want:
		return nil, Usage(stderr, fl.Name(), fmt.Sprintf("%d arguments given, %d wanted", len(pos), want)), false
	}
	return pos, 0, true
}

// CheckInsecure refuses to serve addr without TLS unless it is a loopback
// address: --insecure is for a dev cluster on one machine only.
func CheckInsecure(what, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	shown := host
	if shown == "" {
		shown = "every interface"
	}
	return fmt.Errorf("%s: --insecure serves %s without TLS, so anyone who reaches it owns the cluster; it binds loopback addresses only (e.g. 127.0.0.1:PORT). Drop --insecure to serve with the cluster's certificates", what, shown)
}
