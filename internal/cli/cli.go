// Package cli dispatches cairn's subcommands to the packages that own them.
package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"cairn/blockd"
	"cairn/metad"
	"cairn/mount"
	"cairn/tools/admin"
	"cairn/tools/dev"
	"cairn/tools/fsck"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"metad", "run the metadata daemon", metad.Main},
	{"blockd", "run a block daemon", blockd.Main},
	{"mount", "mount a cairn namespace with FUSE", func(ctx context.Context, args []string, _, stderr io.Writer) int {
		return mount.Main(ctx, args)
	}},
	{"dev", "run a whole cluster with a mount on this machine", dev.Main},
	{"fsck", "check the integrity of files and their blocks", fsck.Main},
	{"admin", "administer the cluster: -report, -checkpoint DIR", admin.Main},
}

// Main runs the subcommand named by args[1]. Invoked as mount.cairn (by
// mount(8) or fstab), it is `cairn mount`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && filepath.Base(args[0]) == "mount.cairn" {
		return mount.Main(ctx, args[1:])
	}
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		usage(stderr)
		if len(args) < 2 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[1] {
			return c.run(ctx, args[2:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "cairn: unknown command %q\n\n", args[1])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: cairn COMMAND [flags]\n\ncairn is a distributed filesystem in the shape of HDFS, mounted with FUSE.\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'cairn COMMAND -h' for a command's flags.")
}
