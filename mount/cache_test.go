package mount

import (
	"bytes"
	"os"
	"testing"
)

// readsOf returns how many reads of the backend reading path whole
// through the mount (open, read to the end, close) took, and the bytes.
func (m *testMount) readsOf(t *testing.T, path string) (int, []byte) {
	t.Helper()
	m.b.mu.Lock()
	before := m.b.reads
	m.b.mu.Unlock()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	return m.b.reads - before, data
}

// A closed file read again is read from the kernel's page cache
// (FOPEN_KEEP_CACHE): the second open and read reach the backend for the
// open only. An append by another client, seen at the next open, drops the
// cache, and the reader gets the whole new file at once, not the size the
// kernel had cached.
func TestReReadFromPageCache(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("f")
	want := randomBytes(300 << 10)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, got := m.readsOf(t, p); n == 0 || !bytes.Equal(got, want) {
		t.Fatalf("first read: %d backend reads, %d bytes (equal %v)", n, len(got), bytes.Equal(got, want))
	}
	if n, got := m.readsOf(t, p); n != 0 || !bytes.Equal(got, want) {
		t.Errorf("second read: %d backend reads, want 0 (page cache); %d bytes (equal %v)", n, len(got), bytes.Equal(got, want))
	}

	more := randomBytes(5000)
	m.b.appendRaw("/f", more)
	want = append(want, more...)
	if n, got := m.readsOf(t, p); n == 0 || !bytes.Equal(got, want) {
		t.Errorf("read after another client's append: %d backend reads, %d bytes of %d (equal %v)", n, len(got), len(want), bytes.Equal(got, want))
	}
	if n, got := m.readsOf(t, p); n != 0 || !bytes.Equal(got, want) {
		t.Errorf("read again: %d backend reads, want 0; %d bytes (equal %v)", n, len(got), bytes.Equal(got, want))
	}
}

// A file this mount appends to is read afresh after the append's close:
// its pages are dropped then, and the next open does not keep them.
func TestReReadAfterOwnAppend(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("f")
	if err := os.WriteFile(p, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, got := m.readsOf(t, p); string(got) != "one\n" {
			t.Fatalf("read: %q", got)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, got := m.readsOf(t, p); string(got) != "one\ntwo\n" {
		t.Errorf("read after the append: %q", got)
	}
}
