package metad

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"cairn"
)

func openTest(t *testing.T, dir string) *Metad {
	t.Helper()
	if _, err := Format(dir, false); err != nil && !strings.Contains(err.Error(), "already formatted") {
		t.Fatal(err)
	}
	m, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func names(t *testing.T, m *Metad, dir string) []string {
	t.Helper()
	es, _, err := m.List(context.Background(), dir, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestFormatRefusesFormatted(t *testing.T) {
	dir := t.TempDir()
	id1, err := Format(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Format(dir, false); err == nil || !strings.Contains(err.Error(), id1) {
		t.Fatalf("second format: %v, want a refusal naming %s", err, id1)
	}
	id2, err := Format(dir, true)
	if err != nil || id2 == id1 {
		t.Fatalf("forced format: %s, %v", id2, err)
	}
}

func TestNamespaceErrorsChangeNothing(t *testing.T) {
	ctx := context.Background()
	m := openTest(t, t.TempDir())
	defer m.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Mkdirs(ctx, "/a/b", 0o755))
	if _, err := m.Create(ctx, "/a/f", cairn.CreateOptions{Client: "c1"}); err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprint(names(t, m, "/"), names(t, m, "/a"), names(t, m, "/a/b"))
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"mkdir exists", m.Mkdir(ctx, "/a", 0o755), cairn.ErrExist},
		{"mkdir no parent", m.Mkdir(ctx, "/x/y", 0o755), cairn.ErrNotExist},
		{"mkdir under file", m.Mkdir(ctx, "/a/f/z", 0o755), cairn.ErrNotDir},
		{"mkdirs through file", m.Mkdirs(ctx, "/a/f/z", 0o755), cairn.ErrNotDir},
		{"create exists", func() error { _, err := m.Create(ctx, "/a/f", cairn.CreateOptions{Client: "c2"}); return err }(), cairn.ErrExist},
		{"delete non-empty", m.Delete(ctx, "/a", false), cairn.ErrNotEmpty},
		{"delete missing", m.Delete(ctx, "/nope", true), cairn.ErrNotExist},
		{"rename into own subtree", m.Rename(ctx, "/a", "/a/b/c"), cairn.ErrInvalid},
		{"rename missing", m.Rename(ctx, "/nope", "/x"), cairn.ErrNotExist},
		{"rename dir over file", m.Rename(ctx, "/a/b", "/a/f"), cairn.ErrNotDir},
		{"rename file over dir", m.Rename(ctx, "/a/f", "/a/b"), cairn.ErrIsDir},
		{"dotdot", m.Mkdir(ctx, "/a/../b", 0o755), cairn.ErrInvalid},
		{"relative", m.Mkdir(ctx, "a", 0o755), cairn.ErrInvalid},
		{"nul", m.Mkdir(ctx, "/a\x00b", 0o755), cairn.ErrInvalid},
		{"long name", m.Mkdir(ctx, "/"+strings.Repeat("n", 256), 0o755), cairn.ErrNameTooLong},
		{"second writer", func() error {
			_, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/a/f", Client: "c2"}, nil, nil)
			return err
		}(), cairn.ErrBusy},
		{"list a file", func() error { _, _, err := m.List(ctx, "/a/f", "", 0); return err }(), cairn.ErrNotDir},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want kind %v", c.name, c.err, c.want)
		}
	}
	if after := fmt.Sprint(names(t, m, "/"), names(t, m, "/a"), names(t, m, "/a/b")); after != before {
		t.Errorf("failed operations changed the namespace: %s -> %s", before, after)
	}
}

func TestRenameAndDeletePersist(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := openTest(t, dir)
	for _, p := range []string{"/d1/x", "/d2"} {
		if err := m.Mkdirs(ctx, p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/d1/f", "/d2/g"} {
		if _, err := m.Create(ctx, p, cairn.CreateOptions{Client: "c"}); err != nil {
			t.Fatal(err)
		}
		if err := m.Complete(ctx, cairn.WriterRef{Path: p, Client: "c"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Rename(ctx, "/d1/f", "/d2/g"); err != nil { // over an existing file
		t.Fatal(err)
	}
	if err := m.Rename(ctx, "/d1", "/d3"); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "/d3", true); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openTest(t, dir)
	defer m.Close()
	if got := fmt.Sprint(names(t, m, "/"), names(t, m, "/d2")); got != "[d2] [g]" {
		t.Fatalf("after restart: %s", got)
	}
	st, _ := m.Statfs(ctx)
	if st.Files != 3 { // "/", "/d2", "/d2/g"
		t.Errorf("files = %d, want 3", st.Files)
	}
}

func TestListPages(t *testing.T) {
	ctx := context.Background()
	m := openTest(t, filepath.Join(t.TempDir(), "m"))
	defer m.Close()
	const n = 2500
	for i := 0; i < n; i++ {
		if err := m.Mkdir(ctx, fmt.Sprintf("/e%05d", i), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen, after, pages := 0, "", 0
	for {
		es, more, err := m.List(ctx, "/", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range es {
			if want := fmt.Sprintf("e%05d", seen); e.Name != want || !e.Mode.IsDir() || e.Mode.Perm() != fs.FileMode(0o755) {
				t.Fatalf("entry %d = %s %v, want %s", seen, e.Name, e.Mode, want)
			}
			seen++
		}
		if !more {
			break
		}
		after = es[len(es)-1].Name
	}
	if seen != n || pages != 3 {
		t.Fatalf("listed %d entries in %d pages, want %d in 3", seen, pages, n)
	}
}
