package webui

import (
	"runtime/debug"
	"strings"
)

// BuildVersion describes the running binary from its build information:
// the module's version, the commit it was built from (marked "+dirty"
// when the tree had changes) and the Go release, e.g.
// "(devel) 1a2b3c4d5e6f+dirty go1.26.8".
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	parts := []string{bi.Main.Version}
	if parts[0] == "" {
		parts[0] = "(devel)"
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		rev = rev[:min(12, len(rev))]
		if dirty {
			rev += "+dirty"
		}
		parts = append(parts, rev)
	}
	return strings.Join(append(parts, bi.GoVersion), " ")
}
