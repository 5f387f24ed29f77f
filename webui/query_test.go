package webui

import (
	"net/url"
	"strings"
	"testing"

	"cairn"
)

func TestParseBrowse(t *testing.T) {
	good := map[string]browseQuery{
		"":                              {Path: "/"},
		"path=%2F":                      {Path: "/"},
		"path=/a/b":                     {Path: "/a/b"},
		"path=/a%3Fb%23c&after=x%26y":   {Path: "/a?b#c", After: "x&y"},
		"path=/f&from=200":              {Path: "/f", From: 200},
		"path=/%3Cscript%3E&after=":     {Path: "/<script>"},
		"path=" + url.QueryEscape("/é"): {Path: "/é"},
	}
	for raw, want := range good {
		got, err := parseBrowse(raw)
		if err != nil || got != want {
			t.Errorf("parseBrowse(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	bad := map[string]string{
		"path=a":          "not absolute",
		"path=/a/../b":    `".."`,
		"path=/a//b":      "empty path component",
		"path=/a%00":      "NUL",
		"path=/%ff":       "UTF-8",
		"path=/a&path=/b": "given 2 times",
		"path=/" + strings.Repeat("n", cairn.MaxNameLen+1): "longer than",
		"path=/a&after=x/y":        "'/'",
		"path=/a&after=..":         `".."`,
		"path=/a&from=-1":          "not a row number",
		"path=/a&from=1e3":         "not a row number",
		"path=/a&from=99999999999": "not a row number",
		"path=/a&op=OPEN":          "unknown parameter",
		"path=%zz":                 "malformed",
		"path=/a;b":                "malformed",
	}
	for raw, want := range bad {
		if _, err := parseBrowse(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseBrowse(%q): %v, want an error with %q", raw, err, want)
		}
	}
}

func TestParseFrom(t *testing.T) {
	if n, err := parseFrom(""); n != 0 || err != nil {
		t.Errorf("parseFrom(\"\") = %d, %v", n, err)
	}
	if n, err := parseFrom("from=7"); n != 7 || err != nil {
		t.Errorf("parseFrom(from=7) = %d, %v", n, err)
	}
	for _, raw := range []string{"from=x", "path=/", "from=1&from=2"} {
		if _, err := parseFrom(raw); err == nil {
			t.Errorf("parseFrom(%q) took it", raw)
		}
	}
}

func TestDownloadURL(t *testing.T) {
	for p, want := range map[string]string{
		"/a/b":       "/webhdfs/v1/a/b?op=OPEN",
		"/a?b#c%d e": "/webhdfs/v1/a%3Fb%23c%25d%20e?op=OPEN",
	} {
		if got := downloadURL(p); got != want {
			t.Errorf("downloadURL(%q) = %q, want %q", p, got, want)
		}
		u, err := url.Parse(downloadURL(p))
		if err != nil || u.Path != "/webhdfs/v1"+p || u.RawQuery != "op=OPEN" {
			t.Errorf("downloadURL(%q) parses back as %v %v", p, u, err)
		}
	}
}

// FuzzParseBrowse: any query string is parsed without a panic; what is
// taken is valid, and the link made of it reads back the same.
func FuzzParseBrowse(f *testing.F) {
	for _, s := range []string{"", "path=/a/b", "path=/a%3Fb&after=x&from=3", "path=/../x", "path=%00", "after=%ff", "from=-0", "path=/a;b", "path=/a&path=/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseBrowse(raw)
		if err != nil {
			return
		}
		if err := cairn.ValidatePath(q.Path); err != nil {
			t.Fatalf("parseBrowse(%q) took path %q: %v", raw, q.Path, err)
		}
		if q.After != "" {
			if err := cairn.ValidateName(q.After); err != nil {
				t.Fatalf("parseBrowse(%q) took after %q: %v", raw, q.After, err)
			}
		}
		if q.From < 0 || q.From > maxIndex {
			t.Fatalf("parseBrowse(%q) took from %d", raw, q.From)
		}
		u, err := url.Parse(browseURL(q))
		if err != nil {
			t.Fatalf("browseURL(%+v) = %q: %v", q, browseURL(q), err)
		}
		back, err := parseBrowse(u.RawQuery)
		if err != nil || back != q {
			t.Fatalf("browseURL(%+v) reads back as %+v, %v", q, back, err)
		}
		d, err := url.Parse(downloadURL(q.Path))
		if err != nil || d.Path != "/webhdfs/v1"+q.Path {
			t.Fatalf("downloadURL(%q) = %q: %v", q.Path, downloadURL(q.Path), err)
		}
	})
}
