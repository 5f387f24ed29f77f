package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestVersionLines(t *testing.T) {
	for _, c := range []struct {
		b    BuildInfo
		want string
	}{
		{BuildInfo{Version: "v1.2.3", Revision: "abc123", Time: "2026-12-01T20:49:09Z", GoVersion: "go1.26.8", OS: "linux", Arch: "amd64"},
			"cairn version v1.2.3\nrevision abc123, committed 2026-12-01T20:49:09Z\ngo1.26.8 linux/amd64\n"},
		{BuildInfo{Version: "(devel)", Revision: "abc123", Modified: true, Time: "2026-12-01T20:49:09Z", GoVersion: "go1.26.8", OS: "linux", Arch: "arm64"},
			"cairn version (devel)\nrevision abc123+dirty, committed 2026-12-01T20:49:09Z\ngo1.26.8 linux/arm64\n"},
		{BuildInfo{Version: "(devel)", GoVersion: "go1.26.8", OS: "linux", Arch: "amd64"},
			"cairn version (devel)\nrevision unknown, committed unknown\ngo1.26.8 linux/amd64\n"},
	} {
		var b bytes.Buffer
		c.b.Write(&b)
		if b.String() != c.want {
			t.Errorf("%+v prints\n%s\nwant\n%s", c.b, b.String(), c.want)
		}
	}
	if b := ReadBuildInfo(); b.Version == "" || b.GoVersion == "" {
		t.Errorf("ReadBuildInfo: %+v", b)
	}
}

// TestHelpUnknown: help for a command that does not exist is a usage
// error, and help with no command lists them on stdout.
func TestHelpUnknown(t *testing.T) {
	var out, errs bytes.Buffer
	if code := Main(context.Background(), []string{"cairn", "help", "nope"}, &out, &errs); code != 2 || !strings.Contains(errs.String(), `unknown command "nope"`) {
		t.Errorf("cairn help nope: exit %d, stderr %q", code, errs.String())
	}
	out.Reset()
	if code := Main(context.Background(), []string{"cairn", "help"}, &out, &errs); code != 0 || !strings.Contains(out.String(), "metad") {
		t.Errorf("cairn help: exit %d, stdout %q", code, out.String())
	}
}
