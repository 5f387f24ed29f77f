package trust

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// openEnvelope checks the text form the cluster's signed tokens share
// (join tokens, UI links and sessions, delegation tokens): at most maxLen
// bytes, prefix, then base64url of a body starting with the version byte
// and at least minBody bytes long, followed by its HMAC-SHA256. It returns
// the body and the MAC; each error wraps malformed.
func openEnvelope(s, prefix string, maxLen int, version byte, minBody int, malformed error) (body, mac []byte, err error) {
	if len(s) > maxLen {
		return nil, nil, fmt.Errorf("%w: %d bytes, at most %d", malformed, len(s), maxLen)
	}
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return nil, nil, fmt.Errorf("%w: it does not start with %q", malformed, prefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", malformed, err)
	}
	if len(b) < minBody+sha256.Size || b[0] != version {
		return nil, nil, fmt.Errorf("%w: bad length or version", malformed)
	}
	return b[:len(b)-sha256.Size], b[len(b)-sha256.Size:], nil
}
