// Command cairn is the one binary of cairn: daemons, the mount, the cluster
// in one command, and the tools. Each subcommand is a package's Main.
package main

import (
	"context"
	"os"

	"cairn/internal/cli"
)

func main() { os.Exit(cli.Main(context.Background(), os.Args, os.Stdout, os.Stderr)) }
