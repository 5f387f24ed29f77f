// Package dfs is `cairn dfs` (alias `cairn fs`): the verbs of `hadoop fs`
// (Hadoop's FsShell) over the client library, with Hadoop's flags, output
// layouts, error texts and exit codes, so that a Hadoop user's habits and
// scripts carry over. Globs are expanded here, against metad's namespace,
// as Hadoop's Globber does; relative paths resolve against /user/$USER.
//
// One file per group of verbs: ls.go, copy.go (put, get, cp, mv...),
// read.go (cat, head, tail, text), rm.go, attrs.go (chmod, chown, setrep,
// xattrs...), usage.go (count, du, df), stat.go, test.go, find.go,
// glob.go, trash.go, checksum.go, progress.go, help.go.
package dfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"syscall"

	"cairn"
	"cairn/checksum"
	"cairn/client"
	"cairn/tools/fetchdt"
)

// Exit codes, as FsShell's: 0 success, 1 when any path failed, and -1
// (255 to the shell) for a usage error or an unknown verb.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 255
	// exitInterrupted is a shell's code for a process ended by SIGINT.
	exitInterrupted = 130
)

// shell runs one verb for one invocation.
type shell struct {
	ctx   context.Context
	out   io.Writer
	errw  io.Writer
	stdin io.Reader
	// tty: stderr is a terminal (put and get draw a progress bar).
	tty bool

	addr string
	dial func() (*client.Client, error)
	cl   *client.Client

	verb string // without its dash, for messages ("ls")
	home string // /user/$USER
	user string
	// errs counts the paths that failed; the exit code is 1 when any did.
	errs int

	ls lsState
}

// usageError is a bad command line: FsShell prints "-VERB: MESSAGE",
// the usage of every verb and the verb's own, and exits -1.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// pathError is FsShell's PathIOException: "`PATH': MESSAGE".
type pathError struct {
	path string
	msg  string
}

func (e *pathError) Error() string { return fmt.Sprintf("`%s': %s", e.path, e.msg) }

// Hadoop's PathExceptions' messages (org.apache.hadoop.fs.PathNotFoundException
// and its siblings), by cairn's error kind.
var kindText = map[cairn.Kind]string{
	cairn.KindNotExist:    "No such file or directory",
	cairn.KindExist:       "File exists",
	cairn.KindNotDir:      "Is not a directory",
	cairn.KindIsDir:       "Is a directory",
	cairn.KindNotEmpty:    "Directory is not empty",
	cairn.KindAccess:      "Permission denied",
	cairn.KindPermission:  "Operation not permitted",
	cairn.KindNameTooLong: "File name too long",
}

// perr is err about the path shown as display, in Hadoop's words when
// its kind has them.
func perr(display string, err error) error {
	var pe *pathError
	if errors.As(err, &pe) {
		return err
	}
	if msg, ok := kindText[cairn.KindOf(err)]; ok {
		return &pathError{display, msg}
	}
	return &pathError{display, cleanErr(err)}
}

// cleanErr is an error's text without the gRPC wrapping a user has no
// use for.
func cleanErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	return s
}

// hadoopMsg is an error whose text is Hadoop's, capital letter and all.
type hadoopMsg string

func (m hadoopMsg) Error() string { return string(m) }

func newPathError(display, msg string) error { return &pathError{display, msg} }

// fail reports err as FsShell's displayError does ("VERB: MESSAGE", the
// first line only) and counts it.
func (s *shell) fail(err error) {
	s.errs++
	if s.ctx.Err() != nil {
		return // interrupted: the failures that follow are the interrupt's
	}
	msg := err.Error()
	var pe *pathError
	if !errors.As(err, &pe) {
		msg = cleanErr(err)
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	fmt.Fprintf(s.errw, "%s: %s\n", s.verb, msg)
}

// client returns the connection to metad, dialled on first use.
func (s *shell) client() (*client.Client, error) {
	if s.cl == nil {
		c, err := s.dial()
		if err != nil {
			return nil, err
		}
		s.cl = c
	}
	return s.cl, nil
}

// ns is the namespace service; callers have checked client() first.
func (s *shell) ns() cairn.Namespace { return s.cl.NS }

// abs resolves p, as typed, to an absolute, clean namespace path:
// relative paths are under the home directory (/user/$USER).
func (s *shell) abs(p string) string {
	p = stripScheme(p)
	if !strings.HasPrefix(p, "/") {
		p = s.home + "/" + p
	}
	return path.Clean(p)
}

// stripScheme drops a URI's scheme and authority (cairn://host:port/x,
// hdfs://nn/x are /x): there is one namespace.
func stripScheme(p string) string {
	if i := strings.Index(p, "://"); i > 0 && !strings.ContainsAny(p[:i], "/*?[{") {
		rest := p[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j:]
		}
		return "/"
	}
	return p
}

// child is how the entry name of the directory shown as dir is shown:
// Hadoop keeps paths as the user typed them, so a relative argument
// lists relative names ("." lists bare names).
func child(dir, name string) string {
	switch {
	case dir == "." || dir == "":
		return name
	case strings.HasSuffix(dir, "/"):
		return dir + name
	}
	return dir + "/" + name
}

// Main is `cairn dfs`: [--metad HOST:PORT] -VERB [flags] [args].
//
// An interrupt (SIGINT, SIGTERM) cancels the verb, which removes what it
// was writing (put's PATH._COPYING_, get's local one), as the JVM's
// shutdown hooks do for FsShell; the exit code is then 130 and nothing
// more is said, as a Hadoop client killed by ^C.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, args, os.Stdin, stdout, stderr, isTerminal(stderr))
	if ctx.Err() != nil {
		return exitInterrupted
	}
	return code
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) int {
	metad := ""
	var copts client.Options
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "-D" && len(args) > 1:
			if err := setProperty(&copts, args[1]); err != nil {
				fmt.Fprintln(stderr, err)
				return exitUsage
			}
			args = args[2:]
			continue
		case a == "--metad" || a == "-metad" || a == "-fs" || a == "--fs":
			if len(args) < 2 {
				fmt.Fprintf(stderr, "%s needs HOST:PORT\n", a)
				printUsage(stderr)
				return exitUsage
			}
			metad, args = stripScheme(args[1]), args[2:]
			metad = strings.TrimSuffix(metad, "/")
			continue
		case strings.HasPrefix(a, "--metad="):
			metad, args = strings.TrimPrefix(a, "--metad="), args[1:]
			continue
		}
		break
	}
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	name := strings.TrimPrefix(args[0], "-")
	if name == "fetchdt" {
		// HDFS's `hdfs fetchdt`, a verb here too: cairn fetchdt's flags.
		rest := args[1:]
		if metad != "" {
			rest = append([]string{"--metad", metad}, rest...)
		}
		return fetchdt.Main(ctx, rest, stdout, stderr)
	}
	v, ok := verbs[name]
	if !ok {
		fmt.Fprintf(stderr, "%s: Unknown command\n", args[0])
		printUsage(stderr)
		return exitUsage
	}
	id := client.ProcessIdentity()
	s := &shell{
		ctx: ctx, out: stdout, errw: stderr, stdin: stdin, tty: tty,
		addr: client.MetadAddr(metad), verb: name,
		user: id.User, home: "/user/" + id.User,
	}
	s.dial = func() (*client.Client, error) { return client.Dial(s.addr, copts) }
	defer func() {
		if s.cl != nil {
			_ = s.cl.Close()
		}
	}()
	err := v.run(s, args[1:])
	var ue usageError
	if errors.As(err, &ue) {
		// FsShell.run on an IllegalArgumentException: the message, every
		// verb's usage, then this verb's.
		fmt.Fprintf(stderr, "-%s: %s\n", name, ue.msg)
		printUsage(stderr)
		fmt.Fprintf(stderr, "Usage: cairn dfs [generic options] -%s %s\n", name, v.usage)
		return exitUsage
	}
	if err != nil {
		s.fail(err)
	}
	if s.errs > 0 {
		return exitError
	}
	return exitOK
}

// setProperty is a generic option -D KEY=VALUE: Hadoop's dfs.blocksize
// and dfs.replication, for the files this command writes.
func setProperty(o *client.Options, kv string) error {
	k, v, _ := strings.Cut(kv, "=")
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case k != "dfs.blocksize" && k != "dfs.replication":
		return fmt.Errorf("-D %s: cairn dfs knows dfs.blocksize and dfs.replication", k)
	case err != nil || n <= 0:
		return fmt.Errorf("-D %s: %q is not a positive number", k, v)
	case k == "dfs.blocksize" && n%int64(checksum.DefaultChunkSize) != 0:
		// DFSOutputStream's refusal, in its words.
		return hadoopMsg(fmt.Sprintf("Invalid values: dfs.bytes-per-checksum (=%d) must divide block size (=%d).", checksum.DefaultChunkSize, n))
	case k == "dfs.blocksize":
		o.BlockSize = n
	default:
		o.Replication = int(n)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
