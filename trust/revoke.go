package trust

import (
	"bufio"
	"bytes"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"
)

// Revocation: metad's DIR/trust/revoked lists revoked certificates, one
// serial number a line in hex (SerialString), anything after it on the
// line a comment; '#' starts a comment line. metad reads the file again
// whenever its size or modification time changes, and refuses a revoked
// certificate at every handshake, so `cairn cert revoke` takes effect on
// the next connection without a restart; metad's RPC checks the list at
// every call too (rpc.Auth), so an open connection stops working as well.

// SerialString is how a serial number is written: lower-case hex.
func SerialString(n *big.Int) string { return strings.ToLower(n.Text(16)) }

// Revoked is the revocation list of a running metad.
type Revoked struct {
	path string

	mu      sync.Mutex
	size    int64
	mtime   time.Time
	serials map[string]bool
}

// NewRevoked watches the revocation list at path (which may not exist
// yet); a nil *Revoked revokes nothing.
func NewRevoked(path string) *Revoked { return &Revoked{path: path} }

// IsRevoked reports whether serial is on the list.
func (r *Revoked) IsRevoked(serial *big.Int) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	switch {
	case err != nil:
		r.serials, r.size, r.mtime = nil, 0, time.Time{}
	case fi.Size() != r.size || !fi.ModTime().Equal(r.mtime):
		b, err := os.ReadFile(r.path)
		if err == nil {
			r.serials, r.size, r.mtime = parseRevoked(b), fi.Size(), fi.ModTime()
		}
	}
	return r.serials[SerialString(serial)]
}

func parseRevoked(b []byte) map[string]bool {
	out := map[string]bool{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if n, ok := new(big.Int).SetString(f[0], 16); ok {
			out[SerialString(n)] = true
		}
	}
	return out
}

// Revoke adds serial (hex) to the list in the CA directory dir, with a
// note. It is idempotent.
func Revoke(dir, serial, note string) error {
	n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(serial), "0x"), 16)
	if !ok || n.Sign() <= 0 {
		return fmt.Errorf("revoke: %q is not a hex serial number (cairn cert inspect prints it)", serial)
	}
	path := dir + "/" + RevokedFile
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("revoke: %w", err)
	}
	if parseRevoked(b)[SerialString(n)] {
		return nil
	}
	line := SerialString(n)
	if note = strings.Join(strings.Fields(note), " "); note != "" {
		line += " " + note
	}
	line += " " + time.Now().UTC().Format(time.RFC3339) + "\n"
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return writeFile(path, append(b, line...), 0o644)
}
