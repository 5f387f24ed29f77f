package metad

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/rpc"
	"cairn/trust"
)

// Delegation tokens (trust.DelegationToken, HDFS's
// DelegationTokenSecretManager): a user with a certificate (or a mount
// speaking for one) gets a token naming it, which then authenticates
// requests on metad's HTTP port as that user (role user: never an admin's
// rights). metad keeps one record per token it issued, "d" keys, synced:
// its current expiry, which renewing moves on (never past the token's
// max date); cancelling deletes it. A token without a record, or past
// its expiry or max date, is refused, across restarts too. Sequence
// numbers come from the "mdelegation-seq" key and are never reused, so a
// cancelled token's number never names a live record again.

var _ rpc.Delegations = (*Metad)(nil)

// delegationSeqKey holds the last sequence number given to a token.
var delegationSeqKey = []byte("mdelegation-seq")

// delegationKey is the Pebble key of token seq's record.
func delegationKey(seq uint64) []byte { return idKey(prefixDelegation, seq, 0) }

// delegationRecordLen is a "d" key's value: expiry and max date, Unix
// milliseconds, 8 bytes BE each.
const delegationRecordLen = 16

func encodeDelegationRecord(expiry, maxDate time.Time) []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(expiry.UnixMilli()))
	return binary.BigEndian.AppendUint64(v, uint64(maxDate.UnixMilli()))
}

func decodeDelegationRecord(v []byte) (expiry, maxDate time.Time, err error) {
	if len(v) != delegationRecordLen {
		return time.Time{}, time.Time{}, fmt.Errorf("delegation token record of %d bytes", len(v))
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(v))), time.UnixMilli(int64(binary.BigEndian.Uint64(v[8:]))), nil
}

// delegationCaller is the user a delegation call runs as.
func (m *Metad) delegationCaller(op string, ctx context.Context) (string, error) {
	if m.ca == nil {
		return "", cairn.E(op, cairn.KindInvalid, "", "this metad runs --insecure: it has no CA to sign delegation tokens")
	}
	id, ok := cairn.IdentityFrom(ctx)
	if !ok || id.User == "" {
		return "", cairn.E(op, cairn.KindPermission, "", "a delegation token names a user: the call runs as nobody")
	}
	return id.User, nil
}

// GetDelegationToken signs a token naming the caller, renewable by
// renewer (the caller when empty), and records it.
func (m *Metad) GetDelegationToken(ctx context.Context, renewer string) (string, time.Time, time.Time, error) {
	const op = "metad.GetDelegationToken"
	owner, err := m.delegationCaller(op, ctx)
	if err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	if renewer == "" {
		renewer = owner
	}
	if err := trust.ValidName(renewer); err != nil {
		return "", time.Time{}, time.Time{}, cairn.E(op, cairn.KindInvalid, "", "renewer: "+err.Error())
	}
	now := m.clock.Now()
	t := trust.DelegationToken{KeyID: trust.DelegationKeyID, Issued: now, MaxDate: now.Add(m.cfg.DelegationMaxLifetime), Owner: owner, Renewer: renewer}
	var tok string
	var expiry time.Time
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		var last uint64
		if v, err := m.st.get(delegationSeqKey); err == nil {
			if last, err = parseU64(v); err != nil {
				return err
			}
		} else if !isNotFound(err) {
			return err
		}
		t.Seq = last + 1
		var err error
		if tok, t, err = m.ca.SignDelegationToken(t); err != nil {
			return cairn.E(op, cairn.KindInvalid, "", err.Error())
		}
		expiry = earliest(now.Add(m.cfg.DelegationRenewInterval), t.MaxDate)
		if err := pruneDelegations(m.st.src(), b, now); err != nil {
			return err
		}
		if err := b.Set(delegationSeqKey, u64(t.Seq), nil); err != nil {
			return err
		}
		return b.Set(delegationKey(t.Seq), encodeDelegationRecord(expiry, t.MaxDate), nil)
	})
	if err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	m.log.Info("delegation token issued", zap.Uint64("seq", t.Seq), zap.String("owner", owner), zap.String("renewer", renewer),
		zap.Time("expiry", expiry), zap.Time("max_date", t.MaxDate))
	return tok, expiry, t.MaxDate, nil
}

// pruneDelegations deletes the records of tokens past their expiry: such
// a token is refused all the same, and cannot be renewed.
func pruneDelegations(db pebble.Reader, b *pebble.Batch, now time.Time) error {
	p := []byte{prefixDelegation}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if exp, _, err := decodeDelegationRecord(it.Value()); err == nil && !now.Before(exp) {
			if err := b.Delete(it.Key(), nil); err != nil {
				return err
			}
		}
	}
	return it.Error()
}

// errDelegationGone is a token without a live record.
var errDelegationGone = errors.New("the delegation token was cancelled or has expired")

// delegationRecord verifies tok's signature and returns it with its
// record's expiry, or why it no longer works at now.
func (m *Metad) delegationRecord(tok string, now time.Time) (trust.DelegationToken, time.Time, error) {
	t, err := m.ca.VerifyDelegationToken(tok)
	if err != nil {
		return t, time.Time{}, err
	}
	v, err := m.st.get(delegationKey(t.Seq))
	if isNotFound(err) {
		return t, time.Time{}, errDelegationGone
	}
	if err != nil {
		return t, time.Time{}, err
	}
	exp, _, err := decodeDelegationRecord(v)
	if err != nil {
		return t, time.Time{}, err
	}
	if !now.Before(exp) || !now.Before(t.MaxDate) {
		return t, exp, fmt.Errorf("%w (at %s)", errDelegationGone, earliest(exp, t.MaxDate).UTC().Format(time.RFC3339))
	}
	return t, exp, nil
}

// delegationError classifies an error of delegationRecord.
func delegationError(op string, err error) error {
	switch {
	case errors.Is(err, trust.ErrDelegationMalformed), errors.Is(err, trust.ErrDelegationForged), errors.Is(err, errDelegationGone):
		return cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	return err
}

// RenewDelegationToken moves a live token's expiry to a renew interval
// from now, never past its max date; only its renewer may.
func (m *Metad) RenewDelegationToken(ctx context.Context, tok string) (time.Time, error) {
	const op = "metad.RenewDelegationToken"
	caller, err := m.delegationCaller(op, ctx)
	if err != nil {
		return time.Time{}, err
	}
	var t trust.DelegationToken
	var expiry time.Time
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		now := m.clock.Now()
		var err error
		if t, _, err = m.delegationRecord(tok, now); err != nil {
			return delegationError(op, err)
		}
		if caller != t.Renewer {
			return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("%s may be renewed by %s only, not %s", t, t.Renewer, caller))
		}
		expiry = earliest(now.Add(m.cfg.DelegationRenewInterval), t.MaxDate)
		return b.Set(delegationKey(t.Seq), encodeDelegationRecord(expiry, t.MaxDate), nil)
	})
	if err != nil {
		return time.Time{}, err
	}
	m.log.Info("delegation token renewed", zap.Uint64("seq", t.Seq), zap.String("owner", t.Owner), zap.String("by", caller), zap.Time("expiry", expiry))
	return expiry, nil
}

// CancelDelegationToken deletes a token's record, durably; only its
// owner or its renewer may.
func (m *Metad) CancelDelegationToken(ctx context.Context, tok string) error {
	const op = "metad.CancelDelegationToken"
	caller, err := m.delegationCaller(op, ctx)
	if err != nil {
		return err
	}
	var t trust.DelegationToken
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		var err error
		if t, _, err = m.delegationRecord(tok, m.clock.Now()); err != nil {
			return delegationError(op, err)
		}
		if caller != t.Owner && caller != t.Renewer {
			return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("%s may be cancelled by %s or %s only, not %s", t, t.Owner, t.Renewer, caller))
		}
		return b.Delete(delegationKey(t.Seq), nil)
	})
	if err != nil {
		return err
	}
	m.log.Info("delegation token cancelled", zap.Uint64("seq", t.Seq), zap.String("owner", t.Owner), zap.String("by", caller))
	return nil
}

// delegationPeer is the peer a delegation token on the HTTP port acts
// as: the user it names, while it works.
func (m *Metad) delegationPeer(tok string) (trust.Peer, error) {
	if m.ca == nil {
		return trust.Peer{}, errors.New("this metad runs --insecure")
	}
	t, _, err := m.delegationRecord(tok, m.clock.Now())
	switch {
	case errors.Is(err, trust.ErrDelegationMalformed), errors.Is(err, trust.ErrDelegationForged):
		return trust.Peer{}, errors.New("not a delegation token of this cluster")
	case err != nil:
		m.log.Info("delegation token refused", zap.Uint64("seq", t.Seq), zap.String("owner", t.Owner), zap.Error(err))
		return trust.Peer{}, err
	}
	return trust.Peer{Role: trust.RoleUser, Name: t.Owner}, nil
}

// earliest is the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
