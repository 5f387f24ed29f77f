package tests

import (
	"runtime"
	"slices"
	"strings"
	"testing"

	"cairn/tests/cluster"
)

// TestHelp runs `cairn help` and `cairn help CMD` for every command it
// lists, through the real binary: each prints a command's usage (a
// "Usage: cairn ..." line: an alias prints its command's) and its flags on
// stdout and exits 0; an unknown command exits 2 with the list on stderr.
func TestHelp(t *testing.T) {
	bin := cluster.Binary(t)
	list := cluster.Exec(t, bin, "help")
	if list.Code != 0 || list.Stderr != "" {
		t.Fatalf("cairn help: exit %d, stderr %q", list.Code, list.Stderr)
	}
	cmds, summaries := listedCommands(list.Stdout)
	for _, want := range []string{"metad", "blockd", "mount", "admin", "fsck", "help", "version"} {
		if !slices.Contains(cmds, want) {
			t.Errorf("cairn help lists %v, not %s:\n%s", cmds, want, list.Stdout)
		}
	}
	for _, c := range cmds {
		t.Run(c, func(t *testing.T) {
			out := cluster.Exec(t, bin, "help", c)
			if out.Code != 0 {
				t.Fatalf("cairn help %s: exit %d\nstdout:\n%s\nstderr:\n%s", c, out.Code, out.Stdout, out.Stderr)
			}
			// An alias ("same as dfs") prints its command's usage.
			name := c
			if target, ok := strings.CutPrefix(summaries[c], "same as "); ok {
				name = strings.Fields(target)[0]
			}
			if !strings.Contains(strings.ToLower(out.Stdout), "usage: cairn "+name) {
				t.Errorf("cairn help %s prints no usage line on stdout:\n%s", c, out.Stdout)
			}
			if out.Stderr != "" {
				t.Errorf("cairn help %s writes to stderr: %q", c, out.Stderr)
			}
		})
	}
	for _, args := range [][]string{{"help", "nosuchcommand"}, {"nosuchcommand"}} {
		out := cluster.Exec(t, bin, args...)
		if out.Code != 2 || !strings.Contains(out.Stderr, `unknown command "nosuchcommand"`) || !strings.Contains(out.Stderr, "metad") {
			t.Errorf("cairn %s: exit %d, stderr %q; want 2 and the list of commands", strings.Join(args, " "), out.Code, out.Stderr)
		}
	}
}

// TestVersion runs `cairn version` and `cairn --version`: the same lines,
// naming the version, the revision and the Go toolchain and platform.
func TestVersion(t *testing.T) {
	bin := cluster.Binary(t)
	a := cluster.Exec(t, bin, "version")
	b := cluster.Exec(t, bin, "--version")
	if a.Code != 0 || b.Code != 0 || a.Stdout != b.Stdout {
		t.Fatalf("cairn version (exit %d):\n%s\ncairn --version (exit %d):\n%s", a.Code, a.Stdout, b.Code, b.Stdout)
	}
	lines := strings.Split(strings.TrimSpace(a.Stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "cairn version ") || !strings.HasPrefix(lines[1], "revision ") ||
		!strings.HasPrefix(lines[2], "go1.") || !strings.HasSuffix(lines[2], " "+runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("cairn version prints:\n%s", a.Stdout)
	}
	if bad := cluster.Exec(t, bin, "version", "extra"); bad.Code != 2 {
		t.Errorf("cairn version extra: exit %d, want 2", bad.Code)
	}
}

// listedCommands reads the command names, in order, and each one's
// summary from `cairn help`'s list.
func listedCommands(s string) ([]string, map[string]string) {
	var names []string
	summaries := map[string]string{}
	_, list, _ := strings.Cut(s, "Commands:\n")
	for _, line := range strings.Split(list, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
			summaries[f[0]] = strings.Join(f[1:], " ")
		}
	}
	return names, summaries
}
