package trust

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Role is what a certificate's holder is to the cluster.
type Role string

// The roles. metad's own certificate has RoleMetad; every other role is
// given by a join token or `cairn cert issue`.
const (
	RoleMetad  Role = "metad"  // the metadata daemon; name: the namespace ID
	RoleBlockd Role = "blockd" // a block daemon; name: its storage ID
	RoleMount  Role = "mount"  // a FUSE mount; name: its host. Speaks for the host's users
	RoleUser   Role = "user"   // one user; name: the user name. That user and nobody else
	RoleAdmin  Role = "admin"  // an administrator; name: a user name. Superuser, admin operations
)

// ParseRole checks a role named on a command line or in a token.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleMetad, RoleBlockd, RoleMount, RoleUser, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want blockd, mount, user, admin)", s)
}

// Peer is a certificate's holder: its role and identity.
type Peer struct {
	Role Role
	Name string
}

func (p Peer) String() string { return string(p.Role) + "/" + p.Name }

// uriScheme is the scheme of the URI SAN that names a certificate's peer.
const uriScheme = "cairn"

// URI is the SAN that names p: cairn://ROLE/NAME, NAME path-escaped.
func (p Peer) URI() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: string(p.Role), Path: "/" + p.Name}
}

// ValidName checks a peer's name: 1 to 255 bytes of UTF-8 without control
// characters, '/', ',' or ':' (a user name, a host name, a storage ID).
func ValidName(n string) error {
	if n == "" || len(n) > 255 || !utf8.ValidString(n) ||
		strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '/' || r == ',' || r == ':' }) {
		return fmt.Errorf("name %q is not valid (1-255 bytes, no control characters, '/', ',' or ':')", n)
	}
	return nil
}

// Check checks p's role and name.
func (p Peer) Check() error {
	if _, err := ParseRole(string(p.Role)); err != nil {
		return err
	}
	return ValidName(p.Name)
}

// peerFromURIs finds the one cairn:// URI among a certificate's or a
// request's SANs.
func peerFromURIs(uris []*url.URL) (Peer, error) {
	var found []Peer
	for _, u := range uris {
		if u.Scheme != uriScheme {
			continue
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
			return Peer{}, fmt.Errorf("malformed peer URI %q", u)
		}
		p := Peer{Role: Role(u.Host), Name: strings.TrimPrefix(u.Path, "/")}
		if !strings.HasPrefix(u.Path, "/") {
			return Peer{}, fmt.Errorf("malformed peer URI %q", u)
		}
		if err := p.Check(); err != nil {
			return Peer{}, fmt.Errorf("peer URI %q: %w", u, err)
		}
		found = append(found, p)
	}
	if len(found) != 1 {
		return Peer{}, fmt.Errorf("a cairn certificate names exactly one cairn:// URI; this one has %d", len(found))
	}
	return found[0], nil
}

// PeerOf returns the role and identity a certificate names. The caller
// has verified the certificate.
func PeerOf(c *x509.Certificate) (Peer, error) { return peerFromURIs(c.URIs) }

type peerKey struct{}

// WithPeer returns ctx carrying the verified peer of an RPC.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerFrom returns the verified peer ctx carries, if any.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}
