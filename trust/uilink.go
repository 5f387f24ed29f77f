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
	"time"
)

// A browser signs in to metad's HTTP UI with a link an admin prints
// (cairn admin -ui-link), as Jupyter's token links work: the link carries
// a one-time token; opening it sets a session cookie that carries a
// second token. Both are "cairnui1." and the base64url (no padding) of
//
//	version(1)=1 kind(1) id(16) expiry(8, Unix seconds, BE)
//	nameLen(1) name hmac(32)
//
// where kind is 1 for a link, 2 for a session, name is the admin the
// link was made for, and hmac is HMAC-SHA256, under a key derived from
// the CA's join key for the kind, of every byte before it: a session
// cannot pass for a link nor a link for a session. metad records each
// link's ID when it is used and refuses it a second time.

// UIKind tells a sign-in link's token from a session's.
type UIKind byte

// The kinds of UI token.
const (
	UILink    UIKind = 1
	UISession UIKind = 2
)

func (k UIKind) String() string {
	switch k {
	case UILink:
		return "sign-in link"
	case UISession:
		return "UI session"
	}
	return fmt.Sprintf("UI token kind %d", byte(k))
}

const (
	uiPrefix  = "cairnui1."
	uiVersion = 1
	// MaxUITokenLen bounds a UI token before it is decoded.
	MaxUITokenLen = 512
	// DefaultUILinkTTL is how long a sign-in link works unless told.
	DefaultUILinkTTL = 5 * time.Minute
	// MaxUILinkTTL bounds a sign-in link's life.
	MaxUILinkTTL = time.Hour
	// UISessionTTL is how long a session lasts once a link made it.
	UISessionTTL = 12 * time.Hour
	// UISessionCookie is the session cookie's name; UILoginPath is where
	// a link points.
	UISessionCookie = "cairn_session"
	UILoginPath     = "/login"
)

// Errors of UI tokens.
var (
	ErrUITokenMalformed = errors.New("malformed UI token")
	ErrUITokenForged    = errors.New("UI token not signed by this cluster")
	ErrUITokenExpired   = errors.New("UI token expired")
)

// UIToken is a UI token's content.
type UIToken struct {
	Kind   UIKind
	ID     [16]byte
	Expiry time.Time // to the second
	Name   string    // the admin
}

// IDString is the token's ID in hex.
func (t UIToken) IDString() string { return hex.EncodeToString(t.ID[:]) }

// NewUIToken makes a token of kind for the admin name, valid for ttl.
func (ca *CA) NewUIToken(kind UIKind, name string, ttl time.Duration) (string, UIToken, error) {
	if kind != UILink && kind != UISession {
		return "", UIToken{}, fmt.Errorf("UI token: unknown kind %d", kind)
	}
	if err := ValidName(name); err != nil {
		return "", UIToken{}, fmt.Errorf("UI token: %w", err)
	}
	if ttl <= 0 || ttl > max(MaxUILinkTTL, UISessionTTL) {
		return "", UIToken{}, fmt.Errorf("UI token: lifetime %v out of range", ttl)
	}
	t := UIToken{Kind: kind, Expiry: time.Now().Add(ttl).Truncate(time.Second), Name: name}
	if _, err := rand.Read(t.ID[:]); err != nil {
		return "", UIToken{}, err
	}
	body := t.encode()
	return uiPrefix + base64.RawURLEncoding.EncodeToString(ca.uiMAC(kind, body)), t, nil
}

// uiMAC appends to body its HMAC under the kind's key.
func (ca *CA) uiMAC(kind UIKind, body []byte) []byte {
	k := hmac.New(sha256.New, ca.JoinKey)
	fmt.Fprintf(k, "cairn UI token kind %d", byte(kind))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write(body)
	return m.Sum(body)
}

func (t UIToken) encode() []byte {
	b := []byte{uiVersion, byte(t.Kind)}
	b = append(b, t.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expiry.Unix()))
	b = append(b, byte(len(t.Name)))
	return append(b, t.Name...)
}

// ParseUIToken decodes a token without checking its signature or expiry;
// it returns the signed bytes and the signature for VerifyUIToken.
func ParseUIToken(s string) (t UIToken, body, mac []byte, err error) {
	const fixed = 1 + 1 + 16 + 8
	if body, mac, err = openEnvelope(s, uiPrefix, MaxUITokenLen, uiVersion, fixed+1, ErrUITokenMalformed); err != nil {
		return t, nil, nil, err
	}
	t.Kind = UIKind(body[1])
	if t.Kind != UILink && t.Kind != UISession {
		return t, nil, nil, fmt.Errorf("%w: kind %d", ErrUITokenMalformed, body[1])
	}
	copy(t.ID[:], body[2:18])
	exp := binary.BigEndian.Uint64(body[18:26])
	if exp > 1<<40 {
		return t, nil, nil, fmt.Errorf("%w: expiry out of range", ErrUITokenMalformed)
	}
	t.Expiry = time.Unix(int64(exp), 0)
	name, p, ok := cutLen(body[fixed:])
	if !ok || len(p) != 0 {
		return t, nil, nil, fmt.Errorf("%w: truncated name or trailing bytes", ErrUITokenMalformed)
	}
	t.Name = string(name)
	if err := ValidName(t.Name); err != nil {
		return t, nil, nil, fmt.Errorf("%w: %v", ErrUITokenMalformed, err)
	}
	return t, body, mac, nil
}

// VerifyUIToken decodes s and checks it is of kind, was signed by this
// CA and has not expired at now. (Whether a link was used already is
// metad's to check.)
func (ca *CA) VerifyUIToken(s string, kind UIKind, now time.Time) (UIToken, error) {
	t, body, mac, err := ParseUIToken(s)
	if err != nil {
		return t, err
	}
	if t.Kind != kind {
		return t, fmt.Errorf("%w: a %s, not a %s", ErrUITokenForged, t.Kind, kind)
	}
	want := ca.uiMAC(kind, append([]byte(nil), body...))
	if !hmac.Equal(want[len(body):], mac) {
		return t, ErrUITokenForged
	}
	if !now.Before(t.Expiry) {
		return t, fmt.Errorf("%w at %s", ErrUITokenExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	return t, nil
}
