// Package fetchdt is `cairn fetchdt`, HDFS's `hdfs fetchdt`: it gets a
// delegation token naming the caller from metad and writes it to a file
// (or prints it), renews or cancels one, or prints what a token file
// holds.
package fetchdt

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"cairn/client"
	"cairn/internal/daemon"
	"cairn/trust"
)

// Main is `cairn fetchdt [--renewer NAME] [TOKEN_FILE]`, `--renew FILE`,
// `--cancel FILE` and `--print FILE`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn fetchdt", flag.ContinueOnError)
	fl.SetOutput(stderr)
	metad := fl.String("metad", "", "metad address (default $CAIRN_METAD or 127.0.0.1:9000)")
	renewer := fl.String("renewer", "", "the user who may renew the token (default: you)")
	renew := fl.Bool("renew", false, "renew the token in TOKEN_FILE (its renewer only)")
	cancel := fl.Bool("cancel", false, "cancel the token in TOKEN_FILE (its owner or renewer)")
	printTok := fl.Bool("print", false, "print what the token in TOKEN_FILE says")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn fetchdt [--metad HOST:PORT] [--renewer NAME] [TOKEN_FILE]\n"+
			"       cairn fetchdt --renew | --cancel | --print TOKEN_FILE\n\n"+
			"Gets a delegation token naming you (HDFS's hdfs fetchdt) and writes it to TOKEN_FILE (mode 0600),\n"+
			"or prints it when no file is named. Use it as WebHDFS's delegation=TOKEN parameter.\n\n")
		fl.PrintDefaults()
	}
	pos, err := daemon.Parse(fl, args)
	if err != nil {
		if daemon.IsHelp(err) {
			return 0
		}
		return 2
	}
	if len(pos) > 1 || ((*renew || *cancel || *printTok) && len(pos) != 1) {
		fl.Usage()
		return 2
	}
	file := ""
	if len(pos) == 1 {
		file = pos[0]
	}
	if err := run(ctx, client.MetadAddr(*metad), file, *renewer, *renew, *cancel, *printTok, stdout); err != nil {
		fmt.Fprintf(stderr, "cairn fetchdt: %v\n", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, metad, file, renewer string, renew, cancel, print bool, stdout io.Writer) error {
	if print {
		tok, err := readToken(file)
		if err != nil {
			return err
		}
		t, _, _, err := trust.ParseDelegationToken(tok)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Token (%s): owner=%s, renewer=%s, issued=%s, maxDate=%s\n", file, t.Owner, t.Renewer,
			t.Issued.UTC().Format(time.RFC3339), t.MaxDate.UTC().Format(time.RFC3339))
		return nil
	}
	c, err := client.Dial(metad, client.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, done := context.WithTimeout(ctx, 30*time.Second)
	defer done()
	switch {
	case renew:
		tok, err := readToken(file)
		if err != nil {
			return err
		}
		exp, err := c.Delegations().RenewDelegationToken(ctx, tok)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Renewed token from %s until %s\n", file, exp.UTC().Format(time.RFC3339))
		return nil
	case cancel:
		tok, err := readToken(file)
		if err != nil {
			return err
		}
		if err := c.Delegations().CancelDelegationToken(ctx, tok); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Cancelled token from %s\n", file)
		return nil
	}
	tok, exp, maxDate, err := c.Delegations().GetDelegationToken(ctx, renewer)
	if err != nil {
		return err
	}
	if file == "" {
		fmt.Fprintln(stdout, tok)
		return nil
	}
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	fmt.Fprintf(stdout, "Fetched token for %s into %s (works until %s unless renewed; never after %s)\n",
		metad, file, exp.UTC().Format(time.RFC3339), maxDate.UTC().Format(time.RFC3339))
	return nil
}

// readToken reads a token file: the token on its first line.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return tok, nil
}
