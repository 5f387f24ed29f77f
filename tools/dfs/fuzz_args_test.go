package dfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
)

// The fuzz targets of what a user types on the command line: flags,
// chmod modes, xattr values, setrep's replication.

// FuzzFlags: any command line parses without a panic; what is left as
// arguments is a tail of what was given, every option taken is known.
func FuzzFlags(f *testing.F) {
	for _, s := range []string{"-f\x00-r\x00/x", "-s\x00100\x00f", "-s", "--\x00-f", "-\x00-x", "-rf\x00/x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		o, err := parse(args, 0, -1, words("f r R"), "s")
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q: %v is no usage error", args, err)
			}
			return
		}
		if len(o.args) > len(args) || strings.Join(o.args, "\x00") != strings.Join(args[len(args)-len(o.args):], "\x00") {
			t.Fatalf("%q: arguments %q are not its tail", args, o.args)
		}
		for k := range o.set {
			if k != "f" && k != "r" && k != "R" && k != "s" {
				t.Fatalf("%q: unknown option %q taken", args, k)
			}
		}
	})
}

// FuzzChmodMode: no mode panics; a mode applied gives permission bits
// (and sticky, setuid, setgid) only, never a file type.
func FuzzChmodMode(f *testing.F) {
	for _, s := range []string{"644", "1777", "u+x", "go-rwx,u=rw", "a+X", "+t", "o=u", "xyz", "", "u+", "=,"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, mode string, isDir bool) {
		old := fs.FileMode(0o640)
		got, err := applyMode(mode, old, isDir)
		if err != nil {
			return
		}
		if extra := got &^ (fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid); extra != 0 {
			t.Fatalf("chmod %q made %v (bits %v beyond permissions)", mode, got, extra)
		}
	})
}

// FuzzXattrValue: hex and base64 values round-trip; no -v value panics
// the decoder.
func FuzzXattrValue(f *testing.F) {
	for _, s := range []string{`"blue"`, "0x626c7565", "0sYmx1ZQ==", "plain", "0x", "0xg", `"`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		_, _ = decodeXattr(v)
		for _, enc := range []string{"hex", "base64"} {
			back, err := decodeXattr(encodeXattr([]byte(v), enc))
			if err != nil || !bytes.Equal(back, []byte(v)) {
				t.Fatalf("%s of %q came back %q, %v", enc, v, back, err)
			}
		}
	})
}

// FuzzReplication: setrep's REP is a number in 1..32767 (Java's short)
// or a usage error.
func FuzzReplication(f *testing.F) {
	for _, s := range []string{"2", "0", "-1", "x", "70000", "+3", "", "32767"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := parseReplication(v, io.Discard)
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q: %v is no usage error", v, err)
			}
			return
		}
		if n < 1 || n > 32767 {
			t.Fatalf("%q gave replication %d", v, n)
		}
	})
}
