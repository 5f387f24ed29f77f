// Package versionfile reads and writes the VERSION files at the top of metad's
// and blockd's data directories: "key=value" lines, written atomically.
package versionfile

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Name is the file's name inside a data directory.
const Name = "VERSION"

// Read parses DIR/VERSION. A missing file gives an error satisfying
// errors.Is(err, fs.ErrNotExist).
func Read(dir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, Name))
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse parses the contents of a VERSION file. Blank lines and lines
// starting with '#' are skipped; every other line must be key=value.
func Parse(b []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("VERSION line %d: %q is not key=value", n, line)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("VERSION: %w", err)
	}
	return out, nil
}

// Write writes DIR/VERSION atomically (temporary file, fsync, rename, fsync
// of the directory).
func Write(dir string, kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, kv[k])
	}
	tmp := filepath.Join(dir, Name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write VERSION: %w", err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, Name))
	}
	if err == nil {
		err = SyncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write VERSION in %s: %w", dir, err)
	}
	return nil
}

// SyncDir fsyncs a directory so a rename or create in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// NewID returns a random identifier with the given prefix.
func NewID(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(errors.New("versionfile: no randomness: " + err.Error()))
	}
	return prefix + hex.EncodeToString(b[:])
}
