// Package cli dispatches cairn's subcommands to the packages that own them.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"

	"cairn/blockd"
	"cairn/metad"
	"cairn/mount"
	"cairn/tools/admin"
	"cairn/tools/balancer"
	"cairn/tools/cert"
	"cairn/tools/dev"
	"cairn/tools/dfs"
	"cairn/tools/fetchdt"
	"cairn/tools/fsck"
	"cairn/tools/httpfs"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"metad", "run the metadata daemon", metad.Main},
	{"blockd", "run a block daemon", blockd.Main},
	{"mount", "mount a cairn namespace with FUSE", func(ctx context.Context, args []string, _, stderr io.Writer) int {
		return mount.MainTo(ctx, args, stderr)
	}},
	{"dev", "run a whole cluster with a mount on this machine", dev.Main},
	{"dfs", "the hadoop fs verbs: -ls, -put, -get, -cat, -rm, -du... ('cairn dfs -help')", dfs.Main},
	{"fs", "same as dfs", dfs.Main},
	{"fsck", "check the integrity of files and their blocks", fsck.Main},
	{"admin", "administer the cluster: -report, -checkpoint NAME, -join-token", admin.Main},
	{"balancer", "move replicas until every blockd's use is near the mean: -threshold 10 [-bandwidth 10m]", balancer.Main},
	{"httpfs", "serve WebHDFS from one gateway that streams the bytes itself (HDFS's HttpFS): --listen :14000", httpfs.Main},
	{"fetchdt", "get a delegation token for WebHDFS into a file (hdfs fetchdt); --renew, --cancel, --print", fetchdt.Main},
	{"cert", "the cluster's certificates offline: create-ca, issue, join-token, join, inspect, revoke", cert.Main},
}

// Main runs the subcommand named by args[1]. Invoked as mount.cairn (by
// mount(8) or fstab), it is `cairn mount`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && filepath.Base(args[0]) == "mount.cairn" {
		return mount.Main(ctx, args[1:])
	}
	switch {
	case len(args) < 2:
		usage(stderr)
		return 2
	case args[1] == "-h" || args[1] == "--help":
		usage(stdout)
		return 0
	case args[1] == "help":
		return help(ctx, args[2:], stdout, stderr)
	case args[1] == "version" || args[1] == "--version":
		return versionMain(args[2:], stdout, stderr)
	}
	if c, ok := lookup(args[1]); ok {
		if dir := os.Getenv(ProfileEnv); dir != "" {
			defer profile(dir, c.name, stderr)()
		}
		return c.run(ctx, args[2:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "cairn: unknown command %q\n\n", args[1])
	usage(stderr)
	return 2
}

// lookup finds the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// help is `cairn help [COMMAND]`: the list of commands, or one command's
// usage and flags (its -h), on stdout with exit status 0; an unknown
// command is a usage error, status 2.
func help(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stdout)
		return 0
	case len(args) > 1:
		fmt.Fprintf(stderr, "cairn help: one command at a time (got %d)\n", len(args))
		return 2
	case args[0] == "help":
		fmt.Fprintln(stdout, "Usage: cairn help [COMMAND]\n\nLists the commands, or prints COMMAND's usage and flags.")
		return 0
	case args[0] == "version":
		fmt.Fprintln(stdout, "Usage: cairn version (or cairn --version)\n\nPrints cairn's version, the revision and commit time it was built from, and the Go version and platform.")
		return 0
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "cairn help: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	// Every command prints its usage and flags for -h (those that take
	// another's way, for theirs: helpArg), and exits 0.
	arg := "-h"
	if a, ok := helpArg[c.name]; ok {
		arg = a
	}
	return c.run(ctx, []string{arg}, stdout, stdout)
}

// helpArg is the argument that asks a command for its usage when it is
// not -h: `hadoop fs` takes -h for a verb's flag and -help for help, and
// cairn dfs does as it does.
var helpArg = map[string]string{"dfs": "-help", "fs": "-help"}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: cairn COMMAND [flags]\n\ncairn is a distributed filesystem in the shape of HDFS, mounted with FUSE.\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n  %-8s %s\n", "help", "print a command's usage and flags: cairn help COMMAND", "version", "print the version, the revision built from, and the Go version")
	fmt.Fprintln(w, "\nRun 'cairn help COMMAND' (or 'cairn COMMAND -h') for a command's flags.")
}

// ProfileEnv names the environment variable that makes every cairn process
// write a CPU profile: $CAIRN_CPUPROFILE/COMMAND-PID.pprof, written when the
// command returns (a daemon or a mount stopped by SIGTERM; not one killed).
// Read it with go tool pprof bin/cairn FILE.
const ProfileEnv = "CAIRN_CPUPROFILE"

// profile starts a CPU profile of this process into dir and returns the
// function that ends it. A profile that cannot start is reported and skipped.
func profile(dir, name string, stderr io.Writer) func() {
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "cairn: %s: %v\n", ProfileEnv, err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "cairn: %s: %v\n", ProfileEnv, err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "cairn: %s: %v\n", ProfileEnv, err)
		}
	}
}
