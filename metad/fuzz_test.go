package metad

import (
	"context"
	"errors"
	"strings"
	"testing"

	"cairn"
)

// FuzzPathRequests sends one path to Mkdirs, Create, Symlink, Stat and
// Rename: whatever cairn.ValidatePath refuses, every call refuses with
// the same kind (KindInvalid, or KindNameTooLong) and the store is unchanged; whatever it accepts, Mkdirs
// makes (or finds) and Stat finds.
func FuzzPathRequests(f *testing.F) {
	for _, s := range []string{"/", "/a", "/a/b/c", "", "a", "/a/../b", "/a/./b", "//", "/a/", "/\x00", "/\xff\xfe",
		"/" + strings.Repeat("x", 255), "/" + strings.Repeat("x", 256), "/é/日本", "/a b/c\td"} {
		f.Add(s)
	}
	m := openCfg(f, Config{})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, p string) {
		if err := cairn.ValidatePath(p); err != nil {
			want := cairn.ErrInvalid
			if errors.Is(err, cairn.ErrNameTooLong) {
				want = cairn.ErrNameTooLong
			}
			if !errors.Is(err, want) {
				t.Fatalf("ValidatePath(%q) = %v, not KindInvalid", p, err)
			}
			before := dump(t, m)
			calls := map[string]error{
				"Mkdirs":  m.Mkdirs(ctx, p, 0o755),
				"Symlink": m.Symlink(ctx, "t", p),
				"Rename":  m.Rename(ctx, "/", p),
			}
			_, calls["Create"] = m.Create(ctx, p, cairn.CreateOptions{Client: "c"})
			_, calls["Stat"] = m.Stat(ctx, p)
			for name, err := range calls {
				// Rename refuses its source, the root, first.
				if !errors.Is(err, want) && (name != "Rename" || !errors.Is(err, cairn.ErrInvalid)) {
					t.Errorf("%s(%q) = %v, want %v", name, p, err, want.Kind)
				}
			}
			if after := dump(t, m); after != before {
				t.Fatalf("refused path %q changed the store:\n%s", p, diffLines(before, after))
			}
			return
		}
		err := m.Mkdirs(ctx, p, 0o755)
		if err != nil && !errors.Is(err, cairn.ErrNotDir) {
			t.Fatalf("Mkdirs(%q) = %v", p, err)
		}
		if _, serr := m.Stat(ctx, p); err == nil && serr != nil {
			t.Fatalf("Stat(%q) after Mkdirs = %v", p, serr)
		}
	})
}
