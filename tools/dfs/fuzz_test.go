package dfs

import (
	"strings"
	"testing"

	"cairn"
)

// FuzzGlob: no pattern makes the glob parser or the matcher panic; a
// pattern without glob characters matches itself alone; brace expansion
// stays bounded.
func FuzzGlob(f *testing.F) {
	for _, s := range []string{"*", "a?c", "[ab]*", "[^a]", "[!a-c]x", "{a,b}", "{a,{b,c}}", `a\*b`, "[", "{", "}", "a{/b,/c}d", "[]]", `\`} {
		f.Add(s, "abc")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(expandSlashBraces(pattern)) > maxBraceExpansions+1 {
			t.Fatalf("%q expands without bound", pattern)
		}
		if strings.Contains(pattern, "/") {
			return
		}
		re, err := compileGlob(pattern)
		if err != nil {
			return
		}
		re.MatchString(name)
		if !hasGlob(pattern) && !re.MatchString(pattern) {
			t.Fatalf("literal %q does not match itself", pattern)
		}
	})
}

// FuzzStatFormat: every format splits into pieces that join back to what
// formatStat prints for the directives, without a panic.
func FuzzStatFormat(f *testing.F) {
	for _, s := range []string{"%y", "%b %F %g %n %o %r %u", "%%", "%", "%z", "a%%b%Yc", "%a%A%x%X"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, format string) {
		parts := parseStatFormat(format)
		for _, p := range parts {
			if p == "" {
				t.Fatalf("%q: empty piece in %q", format, parts)
			}
		}
		_ = formatStat(format, item{disp: "/x", abs: "/x", fi: cairn.FileInfo{Name: "x"}})
	})
}

func TestGlobMatches(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"*.txt", "a.txt", true}, {"*.txt", "a.bin", false}, {"?", "ab", false},
		{"[ab]c", "bc", true}, {"[^ab]c", "bc", false}, {"[!ab]c", "dc", true},
		{"{x,y}z", "yz", true}, {"{x,{y,w}}z", "wz", true}, {`a\*`, "a*", true}, {`a\*`, "ab", false},
		{"a.b", "axb", false}, {"(a)", "(a)", true}, {"a,b", "a,b", true},
	}
	for _, c := range cases {
		re, err := compileGlob(c.pattern)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if got := re.MatchString(c.name); got != c.want {
			t.Errorf("%q matching %q: %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
	if _, err := compileGlob("[ab"); err == nil {
		t.Error("an unclosed class compiled")
	}
	if got := expandSlashBraces("/a{/b,/c}/d"); strings.Join(got, " ") != "/a/b/d /a/c/d" {
		t.Errorf("expandSlashBraces: %q", got)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1023: "1023", 1024: "1 K", 1536: "1.5 K", 300000: "293.0 K",
		64 << 20: "64 M", 1048575: "1.0 M", 1<<20 + 1: "1.0 M", 1280: "1.3 K"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
