package trust

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A delegation token (HDFS's DelegationTokenIdentifier) lets a process
// without a certificate act as the user who asked for it on metad's HTTP
// port: `?delegation=TOKEN` (WebHDFS's parameter) or `Authorization:
// Bearer TOKEN`. It is "cairndt1." and the base64url (no padding) of
//
//	version(1)=1 keyID(4 BE) seq(8 BE) issued(8) maxDate(8)
//	ownerLen(1) owner renewerLen(1) renewer hmac(32)
//
// issued and maxDate in Unix milliseconds, BE; hmac is HMAC-SHA256 of
// every byte before it under the delegation key keyID, derived from the
// CA's join key. The signature says metad made it; whether it still works
// (renewed in time, not cancelled, before maxDate) is metad's record of
// seq to say: a token metad holds no record of is refused.

const (
	dtPrefix  = "cairndt1."
	dtVersion = 1
	// MaxDelegationTokenLen bounds a delegation token before it is
	// decoded.
	MaxDelegationTokenLen = 1024
	// DelegationKeyID is the key new delegation tokens are signed with.
	DelegationKeyID = 1
	// DefaultDelegationRenewInterval is how long a token works after it
	// is issued or renewed (HDFS's
	// dfs.namenode.delegation.token.renew-interval).
	DefaultDelegationRenewInterval = 24 * time.Hour
	// DefaultDelegationMaxLifetime bounds a token's life however often it
	// is renewed (dfs.namenode.delegation.token.max-lifetime).
	DefaultDelegationMaxLifetime = 7 * 24 * time.Hour
	// DelegationParam is the URL parameter that carries a token.
	DelegationParam = "delegation"
)

// Errors of delegation tokens.
var (
	ErrDelegationMalformed = errors.New("malformed delegation token")
	ErrDelegationForged    = errors.New("delegation token not signed by this cluster")
)

// DelegationToken is a delegation token's identifier.
type DelegationToken struct {
	KeyID   uint32
	Seq     uint64    // metad's sequence number: the token's record
	Issued  time.Time // to the millisecond
	MaxDate time.Time // to the millisecond: it never works after this
	Owner   string    // the user it acts as
	Renewer string    // the user who may renew it
}

func (t DelegationToken) String() string {
	return fmt.Sprintf("delegation token %d of %s (renewer %s, key %d)", t.Seq, t.Owner, t.Renewer, t.KeyID)
}

// delegationKey is the key keyID, derived from the CA's join key.
func (ca *CA) delegationKey(keyID uint32) []byte {
	k := hmac.New(sha256.New, ca.JoinKey)
	fmt.Fprintf(k, "cairn delegation token key %d", keyID)
	return k.Sum(nil)
}

func (t DelegationToken) encode() []byte {
	b := []byte{dtVersion}
	b = binary.BigEndian.AppendUint32(b, t.KeyID)
	b = binary.BigEndian.AppendUint64(b, t.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Issued.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.MaxDate.UnixMilli()))
	b = append(b, byte(len(t.Owner)))
	b = append(b, t.Owner...)
	b = append(b, byte(len(t.Renewer)))
	return append(b, t.Renewer...)
}

// SignDelegationToken signs t (its times are cut to the millisecond)
// with the key t.KeyID names.
func (ca *CA) SignDelegationToken(t DelegationToken) (string, DelegationToken, error) {
	if err := ValidName(t.Owner); err != nil {
		return "", t, fmt.Errorf("delegation token owner: %w", err)
	}
	if err := ValidName(t.Renewer); err != nil {
		return "", t, fmt.Errorf("delegation token renewer: %w", err)
	}
	t.Issued, t.MaxDate = time.UnixMilli(t.Issued.UnixMilli()), time.UnixMilli(t.MaxDate.UnixMilli())
	if !t.MaxDate.After(t.Issued) {
		return "", t, fmt.Errorf("delegation token: max date %v is not after its issue %v", t.MaxDate, t.Issued)
	}
	body := t.encode()
	m := hmac.New(sha256.New, ca.delegationKey(t.KeyID))
	m.Write(body)
	return dtPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(body)), t, nil
}

// ParseDelegationToken decodes a token without checking its signature;
// it returns the signed bytes and the signature.
func ParseDelegationToken(s string) (t DelegationToken, body, mac []byte, err error) {
	const fixed = 1 + 4 + 8 + 8 + 8
	if body, mac, err = openEnvelope(s, dtPrefix, MaxDelegationTokenLen, dtVersion, fixed+2, ErrDelegationMalformed); err != nil {
		return t, nil, nil, err
	}
	t.KeyID = binary.BigEndian.Uint32(body[1:5])
	t.Seq = binary.BigEndian.Uint64(body[5:13])
	issued, maxDate := binary.BigEndian.Uint64(body[13:21]), binary.BigEndian.Uint64(body[21:29])
	if issued > 1<<50 || maxDate > 1<<50 {
		return t, nil, nil, fmt.Errorf("%w: date out of range", ErrDelegationMalformed)
	}
	t.Issued, t.MaxDate = time.UnixMilli(int64(issued)), time.UnixMilli(int64(maxDate))
	owner, p, ok := cutLen(body[fixed:])
	if !ok {
		return t, nil, nil, fmt.Errorf("%w: truncated owner", ErrDelegationMalformed)
	}
	renewer, p, ok := cutLen(p)
	if !ok || len(p) != 0 {
		return t, nil, nil, fmt.Errorf("%w: truncated renewer or trailing bytes", ErrDelegationMalformed)
	}
	t.Owner, t.Renewer = string(owner), string(renewer)
	if err := ValidName(t.Owner); err != nil {
		return t, nil, nil, fmt.Errorf("%w: owner: %v", ErrDelegationMalformed, err)
	}
	if err := ValidName(t.Renewer); err != nil {
		return t, nil, nil, fmt.Errorf("%w: renewer: %v", ErrDelegationMalformed, err)
	}
	return t, body, mac, nil
}

// VerifyDelegationToken decodes s and checks this CA signed it. Whether
// it still works is metad's record's to say.
func (ca *CA) VerifyDelegationToken(s string) (DelegationToken, error) {
	t, body, mac, err := ParseDelegationToken(s)
	if err != nil {
		return t, err
	}
	m := hmac.New(sha256.New, ca.delegationKey(t.KeyID))
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), mac) {
		return t, ErrDelegationForged
	}
	return t, nil
}
