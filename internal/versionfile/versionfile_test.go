package versionfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	want := map[string]string{"namespaceID": "ns-1", "cTime": "5", "empty": ""}
	if err := Write(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil || len(got) != 3 || got["namespaceID"] != "ns-1" || got["empty"] != "" {
		t.Fatalf("Read = %v, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, Name+".tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, bad := range []string{"novalue\n", "=x\n", "a=b\nbroken\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if m, err := Parse([]byte("# comment\n\nkey=value\n")); err != nil || len(m) != 1 || m["key"] != "value" {
		t.Errorf("Parse with a comment and a blank line: %v, %v", m, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("namespaceID=ns-1\ncTime=1\n"))
	f.Add([]byte("#x\n=\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		for k := range m {
			if k == "" {
				t.Fatal("empty key accepted")
			}
		}
	})
}
