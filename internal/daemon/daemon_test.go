package daemon

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseFlagsAnywhere(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  []string
		fg   bool
		o    string
	}{
		{[]string{"host:9000", "/mnt", "--foreground"}, []string{"host:9000", "/mnt"}, true, ""},
		{[]string{"--foreground", "host:9000", "-o", "ro", "/mnt"}, []string{"host:9000", "/mnt"}, true, "ro"},
		{[]string{"host:9000", "--", "-odd-name"}, []string{"host:9000", "-odd-name"}, false, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fg := fs.Bool("foreground", false, "")
		o := fs.String("o", "", "")
		pos, err := Parse(fs, c.args)
		if err != nil || !slices.Equal(pos, c.pos) || *fg != c.fg || *o != c.o {
			t.Errorf("Parse(%q) = %q, fg=%v o=%q, %v; want %q, %v, %q", c.args, pos, *fg, *o, err, c.pos, c.fg, c.o)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := Parse(fs, []string{"x", "--nope"}); err == nil {
		t.Error("an unknown flag after a positional was accepted")
	}
}

func TestParseFlagsCounts(t *testing.T) {
	for _, c := range []struct {
		args       []string
		want, code int
		ok         bool
	}{
		{[]string{"/a"}, 1, 0, true},
		{[]string{}, 1, 2, false},
		{[]string{"/a", "/b"}, 1, 2, false},
		{[]string{"x"}, 0, 2, false},
		{[]string{"-h"}, 0, 0, false},
		{[]string{"--bogus"}, 0, 2, false},
		{[]string{"a", "b", "c"}, -1, 0, true},
	} {
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		_, code, ok := ParseFlags(fs, c.args, c.want, io.Discard)
		if code != c.code || ok != c.ok {
			t.Errorf("ParseFlags(%q, %d) = %d, %v; want %d, %v", c.args, c.want, code, ok, c.code, c.ok)
		}
	}
}
