package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Version is cairn's release version; a release build sets it with
// -ldflags "-X cairn/internal/cli.Version=v1.2.3". Otherwise the module's
// version from the build information stands, "(devel)" for a build from a
// checkout.
var Version = ""

// BuildInfo is what `cairn version` prints: the version, the VCS revision
// and commit time the binary was built from (with "+dirty" for a tree with
// changes), and the Go toolchain and platform.
type BuildInfo struct {
	Version, Revision, Time string
	Modified                bool
	GoVersion, OS, Arch     string
}

// ReadBuildInfo gathers BuildInfo from runtime/debug.ReadBuildInfo.
func ReadBuildInfo() BuildInfo {
	b := BuildInfo{Version: Version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "(unknown)"
		}
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// Write prints b as `cairn version` does: the version, the revision and
// its commit time, and the toolchain and platform, a line each.
func (b BuildInfo) Write(w io.Writer) {
	rev := b.Revision
	switch {
	case rev == "":
		rev = "unknown"
	case b.Modified:
		rev += "+dirty"
	}
	when := b.Time
	if when == "" {
		when = "unknown"
	}
	fmt.Fprintf(w, "cairn version %s\nrevision %s, committed %s\n%s %s/%s\n", b.Version, rev, when, b.GoVersion, b.OS, b.Arch)
}

// versionMain is `cairn version` (and `cairn --version`).
func versionMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "cairn version: unexpected argument %q\n", args[0])
		return 2
	}
	ReadBuildInfo().Write(stdout)
	return 0
}
