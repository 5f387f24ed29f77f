package trust

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A join token lets one new node get a certificate, once, before it
// expires. It is "cairnjoin1." and the base64url (no padding) of
//
//	version(1)=1 id(16) expiry(8, Unix seconds, BE) caSHA256(32)
//	roleLen(1) role nameLen(1) name hmac(32)
//
// where hmac is HMAC-SHA256 under the CA's join key (DIR/trust/join.key)
// of every byte before it. The CA fingerprint is what the joiner checks
// metad's certificate chain against, so the token is all a joiner needs.
// An empty name lets the joiner name itself (a blockd its storage ID, a
// mount its host). A token of role metad names the new member's address
// in its group (ValidMemberAddr): it hands over the cluster CA's keys
// (member.go). metad records the ID of each token used, durably, and
// refuses it a second time.

const (
	tokenPrefix  = "cairnjoin1."
	tokenVersion = 1
	// MaxTokenLen bounds a token before it is decoded.
	MaxTokenLen = 1024
	// DefaultJoinTTL is how long a join token lasts unless told.
	DefaultJoinTTL = time.Hour
	// MaxJoinTTL bounds a join token's life.
	MaxJoinTTL = 7 * 24 * time.Hour
)

// Errors of join tokens; metad wraps them with what to do.
var (
	ErrTokenMalformed = errors.New("malformed join token")
	ErrTokenForged    = errors.New("join token not signed by this cluster")
	ErrTokenExpired   = errors.New("join token expired")
)

// JoinToken is a token's content.
type JoinToken struct {
	ID     [16]byte
	Expiry time.Time // to the second
	CA     [32]byte  // SHA-256 of the CA certificate
	Role   Role
	Name   string // empty: the joiner names itself
}

// IDString is the token's ID in hex, as logs and metad's store name it.
func (t JoinToken) IDString() string { return hex.EncodeToString(t.ID[:]) }

// CAFingerprint is the CA fingerprint in hex.
func (t JoinToken) CAFingerprint() string { return hex.EncodeToString(t.CA[:]) }

// NewJoinToken makes a token for role (and name, when not empty) valid
// for ttl.
func (ca *CA) NewJoinToken(role Role, name string, ttl time.Duration) (string, JoinToken, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return "", JoinToken{}, fmt.Errorf("join token: role %q cannot join (want blockd, mount, user NAME, admin NAME, metad HOST:PORT)", role)
	}
	if (role == RoleUser || role == RoleAdmin || role == RoleMetad) && name == "" {
		return "", JoinToken{}, fmt.Errorf("join token: role %s needs a name", role)
	}
	if err := validTokenName(role, name); err != nil {
		return "", JoinToken{}, fmt.Errorf("join token: %w", err)
	}
	if ttl <= 0 || ttl > MaxJoinTTL {
		return "", JoinToken{}, fmt.Errorf("join token: lifetime %v out of range (0, %v]", ttl, MaxJoinTTL)
	}
	t := JoinToken{Expiry: time.Now().Add(ttl).Truncate(time.Second), Role: role, Name: name}
	if _, err := rand.Read(t.ID[:]); err != nil {
		return "", JoinToken{}, err
	}
	copy(t.CA[:], fingerprintBytes(ca.Cert))
	body := t.encode()
	m := hmac.New(sha256.New, ca.JoinKey)
	m.Write(body)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(body)), t, nil
}

func (t JoinToken) encode() []byte {
	b := []byte{tokenVersion}
	b = append(b, t.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expiry.Unix()))
	b = append(b, t.CA[:]...)
	b = append(b, byte(len(t.Role)))
	b = append(b, t.Role...)
	b = append(b, byte(len(t.Name)))
	return append(b, t.Name...)
}

// ParseJoinToken decodes a token without checking its signature or
// expiry (a joiner does this to learn the CA fingerprint); it returns the
// signed bytes and the signature for VerifyJoinToken.
func ParseJoinToken(s string) (t JoinToken, body, mac []byte, err error) {
	s = strings.TrimSpace(s)
	const fixed = 1 + 16 + 8 + 32
	if body, mac, err = openEnvelope(s, tokenPrefix, MaxTokenLen, tokenVersion, fixed+2, ErrTokenMalformed); err != nil {
		return t, nil, nil, err
	}
	copy(t.ID[:], body[1:17])
	exp := binary.BigEndian.Uint64(body[17:25])
	if exp > 1<<40 {
		return t, nil, nil, fmt.Errorf("%w: expiry out of range", ErrTokenMalformed)
	}
	t.Expiry = time.Unix(int64(exp), 0)
	copy(t.CA[:], body[25:57])
	p := body[fixed:]
	role, p, ok := cutLen(p)
	if !ok {
		return t, nil, nil, fmt.Errorf("%w: truncated role", ErrTokenMalformed)
	}
	name, p, ok := cutLen(p)
	if !ok || len(p) != 0 {
		return t, nil, nil, fmt.Errorf("%w: truncated name or trailing bytes", ErrTokenMalformed)
	}
	t.Role, t.Name = Role(role), string(name)
	if _, err := ParseRole(string(t.Role)); err != nil {
		return t, nil, nil, fmt.Errorf("%w: role %q", ErrTokenMalformed, t.Role)
	}
	if t.Role == RoleMetad && t.Name == "" {
		return t, nil, nil, fmt.Errorf("%w: a metad token names no member", ErrTokenMalformed)
	}
	if err := validTokenName(t.Role, t.Name); err != nil {
		return t, nil, nil, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	return t, body, mac, nil
}

// validTokenName checks the name a token of role gives: a member address
// for a metad, a peer name otherwise (empty: the joiner names itself).
func validTokenName(role Role, name string) error {
	switch {
	case name == "":
		return nil
	case role == RoleMetad:
		return ValidMemberAddr(name)
	}
	return ValidName(name)
}

func cutLen(p []byte) (v, rest []byte, ok bool) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return nil, nil, false
	}
	n := int(p[0])
	return p[1 : 1+n], p[1+n:], true
}

// VerifyJoinToken decodes s and checks it was signed with this CA's join
// key, names this CA, and has not expired at now. (Whether it was used
// already is metad's to check.)
func (ca *CA) VerifyJoinToken(s string, now time.Time) (JoinToken, error) {
	t, body, mac, err := ParseJoinToken(s)
	if err != nil {
		return t, err
	}
	m := hmac.New(sha256.New, ca.JoinKey)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), mac) || t.CAFingerprint() != ca.Fingerprint() {
		return t, ErrTokenForged
	}
	if !now.Before(t.Expiry) {
		return t, fmt.Errorf("%w at %s", ErrTokenExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	return t, nil
}
