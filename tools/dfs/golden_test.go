package dfs

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cairn/tests/cluster"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// golden is the transcript every verb is checked against: each command
// run by the real cairn binary against a real cluster (one metad, two
// blockds, TLS, trash kept 60 minutes), then its stdout, its stderr and its exit code. What must
// vary from run to run is normalised, and only that: dates and times
// (DATE, TIME, MILLIS, LOGTIME of a log line), the user and group running the test (USER,
// GROUP), the local temporary directory (LOCAL), trash checkpoint names
// (CHECKPOINT). The layouts are Hadoop's FsShell's (see each verb's
// file); a change shows as a diff (go test ./tools/dfs -update accepts it).
var golden = [][]string{
	{"-mkdir", "-p", "/user/USER"},
	{"-ls", "/"},
	{"-mkdir", "/data"},
	{"-mkdir", "/data"},
	{"-mkdir", "/no/such/dir"},
	{"-mkdir", "-p", "/data/a/b", "logs"},
	{"-put", "LOCAL/small.txt", "/data/"},
	{"-put", "LOCAL/small.txt", "/data/"},
	{"-put", "-f", "LOCAL/small.txt", "/data/small.txt"},
	{"-copyFromLocal", "LOCAL/big.bin", "/data/big.bin"},
	{"-D", "dfs.blocksize=131072", "-put", "LOCAL/big.bin", "/data/big2.bin"},
	{"-put", "LOCAL/small.txt", "LOCAL/big.bin", "/data/nodir"},
	{"-put", "LOCAL/nofile", "/data/"},
	{"-ls", "/data"},
	{"-ls", "-d", "/data"},
	{"-ls", "-C", "/data"},
	{"-ls", "-S", "/data"},
	{"-ls", "-r", "-h", "/data"},
	{"-ls", "-R", "/data"},
	{"-ls", "/x"},
	{"-ls", "/data/*.bin"},
	{"-ls", "-C", "/data/{small,big}*"},
	{"-ls", "-C", "/data/big?.bin", "/data/[s]mall.txt"},
	{"-ls", "/data/*.none"},
	{"-ls"},
	{"-ls", "-C", "logs", "."},
	{"-ls", "-Z", "/"},
	{"-cat", "/data/small.txt"},
	{"-cat", "/data"},
	{"-text", "/data/small.txt"},
	{"-head", "/data/small.txt"},
	{"-tail", "/data/small.txt"},
	{"-appendToFile", "LOCAL/small.txt", "/data/small.txt"},
	{"-stat", "/data/small.txt"},
	{"-stat", "%b %F %g %n %o %r %u %a %A %y %Y %x %X %%", "/data/small.txt", "/data"},
	{"-stat", "/data/small.txt", "/data"},
	{"-stat", "-R", "%n %q%", "/data"},
	{"-stat", "%n"},
	{"-checksum", "/data/big.bin", "/data/big2.bin"},
	{"-checksum", "/data"},
	{"-D", "dfs.blocksize=100000", "-put", "LOCAL/big.bin", "/data/big3.bin"},
	{"-test", "-e", "/data"},
	{"-test", "-d", "/data/small.txt"},
	{"-test", "-f", "/data/small.txt"},
	{"-test", "-s", "/data/small.txt"},
	{"-test", "-z", "/data/small.txt"},
	{"-test", "-e", "/nothing"},
	{"-test", "-e", "-d", "/data"},
	{"-touchz", "/data/empty"},
	{"-touchz", "/data/small.txt"},
	{"-test", "-z", "/data/empty"},
	{"-count", "/data"},
	{"-count", "-q", "-h", "-v", "/data", "/data/big.bin"},
	{"-count", "-u", "-v", "/data"},
	{"-du", "/data"},
	{"-du", "-s", "-h", "/data"},
	{"-du", "-v", "-s", "/"},
	{"-chmod", "640", "/data/small.txt"},
	{"-chmod", "-R", "go-rx,u+x", "/data/a"},
	{"-chmod", "xyz", "/data"},
	{"-chgrp", "GROUP", "/data/empty"},
	{"-chown", "USER:GROUP", "/data/empty"},
	{"-ls", "-C", "-R", "/data/a"},
	{"-stat", "%a %A", "/data/small.txt", "/data/a", "/data/a/b"},
	{"-setfattr", "-n", "user.color", "-v", "blue", "/data/small.txt"},
	{"-setfattr", "-n", "user.flag", "/data/small.txt"},
	{"-getfattr", "-d", "/data/small.txt"},
	{"-getfattr", "-n", "user.color", "-e", "hex", "/data/small.txt"},
	{"-setfattr", "-x", "user.color", "/data/small.txt"},
	{"-getfattr", "-d", "/data/small.txt"},
	{"-cp", "/data/small.txt", "/data/copy.txt"},
	{"-cp", "/data/small.txt", "/data/copy.txt"},
	{"-cp", "-f", "-p", "/data/small.txt", "/data/copy.txt"},
	{"-cp", "/data", "/data/a"},
	{"-cp", "/data/a", "/data/acopy"},
	{"-ls", "-C", "-R", "/data/acopy"},
	{"-rm", "-r", "-skipTrash", "/data/acopy"},
	{"-mv", "/data/copy.txt", "/data/moved.txt"},
	{"-mv", "/data/moved.txt", "/data/small.txt"},
	{"-mv", "/data/moved.txt", "/data/a"},
	{"-cat", "/nothing"},
	{"-head", "/data"},
	{"-tail", "/data"},
	{"-touchz", "/data"},
	{"-get", "/nothing", "LOCAL/nothing"},
	{"-cp", "/nothing", "/data/x"},
	{"-mv", "/nothing", "/data/x"},
	{"-mv", "/data/a", "/data/a/b"},
	{"-chmod", "644", "/nothing"},
	{"-du", "/nothing"},
	{"-count", "/nothing"},
	{"-find", "/data", "-name", "*.txt"},
	{"-find", "/data", "-iname", "BIG*"},
	{"-get", "/data/small.txt", "LOCAL/got.txt"},
	{"-get", "/data/small.txt", "LOCAL/got.txt"},
	{"-copyToLocal", "/data/a", "LOCAL/"},
	{"-getmerge", "-nl", "/data/a", "LOCAL/merged.txt"},
	{"-moveFromLocal", "LOCAL/move.txt", "/data/"},
	{"-setrep", "-w", "2", "/data/empty"},
	{"-setrep", "2", "/data/small.txt"},
	{"-setrep", "x", "/data"},
	{"-setrep", "0", "/data"},
	{"-truncate", "1", "/data/small.txt"},
	{"-rmdir", "/data/a"},
	{"-rmdir", "/data/small.txt"},
	{"-rm", "/data/a"},
	{"-rm", "/data/nothing"},
	{"-rm", "-f", "/data/nothing", "/data/none*"},
	{"-rm", "/data/empty"},
	{"-rm", "-r", "/user"},
	{"-rm", "-skipTrash", "-r", "/data/a"},
	{"-rm", "-rf", "/data"},
	{"-ls", "-C", "-R", "/user/USER/.Trash"},
	{"-expunge"},
	{"-ls", "-C", "/user/USER/.Trash"},
	{"-expunge", "-immediate"},
	{"-ls", "-C", "/user/USER/.Trash"},
	{"-df"},
	{"-usage", "ls"},
	{"-usage", "nosuch"},
	{"-help", "mkdir"},
	{"-nosuchverb"},
}

func TestGolden(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 2, Replication: 1, MetadArgs: []string{"--trash-interval", "60"}})
	local := t.TempDir()
	writeFile(t, filepath.Join(local, "small.txt"), "hello, cairn\nsecond line\n")
	writeFile(t, filepath.Join(local, "move.txt"), "to be moved\n")
	big := make([]byte, 300000)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	writeFile(t, filepath.Join(local, "big.bin"), string(big))

	me, grp := currentUser(t)
	var out bytes.Buffer
	for _, cmd := range golden {
		args := make([]string, len(cmd))
		for i, a := range cmd {
			a = strings.ReplaceAll(a, "LOCAL", local)
			a = strings.ReplaceAll(a, "USER", me)
			args[i] = strings.ReplaceAll(a, "GROUP", grp)
		}
		res, err := c.RunOutput(append([]string{"dfs"}, args...)...)
		if err != nil {
			t.Fatalf("cairn dfs %s: %v", strings.Join(args, " "), err)
		}
		fmt.Fprintf(&out, "$ cairn dfs %s\n", strings.Join(cmd, " "))
		out.WriteString(normalise(res.Stdout, local, me, grp))
		if res.Stderr != "" {
			out.WriteString("[stderr]\n")
			out.WriteString(normalise(res.Stderr, local, me, grp))
		}
		fmt.Fprintf(&out, "[exit %d]\n\n", res.Code)
	}
	path := filepath.Join("testdata", "golden.txt")
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./tools/dfs -update writes it)", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("the transcript differs from %s (-update accepts it):\n%s", path, diff(string(want), got))
	}
	if b, err := os.ReadFile(filepath.Join(local, "got.txt")); err != nil || string(b) != "hello, cairn\nsecond line\nhello, cairn\nsecond line\n" {
		t.Errorf("-get wrote %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(local, "move.txt")); !os.IsNotExist(err) {
		t.Errorf("-moveFromLocal kept its source: %v", err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func currentUser(t *testing.T) (string, string) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	return u.Username, g.Name
}

var (
	reLogTime  = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} `)
	reDateTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?`)
	reMillis   = regexp.MustCompile(`\b1\d{12}\b`)
	reCkpt     = regexp.MustCompile(`\.Trash/\d{12}`)
	reAddr     = regexp.MustCompile(`cairn://127\.0\.0\.1:\d+`)
	reBytes    = regexp.MustCompile(`(?m)^(cairn://ADDR +)\S+ +\S+ +\S+ +\S+$`)
)

// normalise replaces what varies between runs, and only that.
func normalise(s, local, me, grp string) string {
	s = strings.ReplaceAll(s, local, "LOCAL")
	s = reLogTime.ReplaceAllString(s, "LOGTIME ")
	s = reDateTime.ReplaceAllStringFunc(s, func(m string) string {
		if len(m) > 16 {
			return "DATE TIME:SS"
		}
		return "DATE TIME"
	})
	s = reMillis.ReplaceAllString(s, "MILLIS")
	s = reCkpt.ReplaceAllString(s, ".Trash/CHECKPOINT")
	s = reAddr.ReplaceAllString(s, "cairn://ADDR")
	// df's figures are the disk's under the test.
	s = reBytes.ReplaceAllString(s, "${1}SIZE USED AVAIL USE%")
	s = replaceWord(s, me, "USER")
	return replaceWord(s, grp, "GROUP")
}

func replaceWord(s, old, new string) string {
	return regexp.MustCompile(`\b`+regexp.QuoteMeta(old)+`\b`).ReplaceAllString(s, new)
}

// diff shows the first differing lines.
func diff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			lo := max(i-3, 0)
			return fmt.Sprintf("line %d:\nwant: %q\ngot:  %q\ncontext:\n%s", i+1, w, g, strings.Join(gl[lo:min(i+4, len(gl))], "\n"))
		}
	}
	return ""
}
