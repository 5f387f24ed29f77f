package metad

import (
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"math/big"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"cairn"
	"cairn/trust"
)

// The blockd identities metad signed certificates for: an "n" key per
// storage ID holds the expiry and serial of the last certificate metad
// signed for it (at a join or a renewal). A join token that names no
// storage ID lets the joiner pick its own, but not one that already
// holds a valid certificate (unexpired, not revoked): that would let the
// joiner speak for an existing blockd in the registry. Re-joining such a
// node takes a token naming it (cairn admin -join-token --role blockd
// --name DS-...). Certificates issued offline (cairn cert issue) are not
// recorded until they are renewed.

// nodeCertKey is the Pebble key of storage ID id's record.
func nodeCertKey(id string) []byte { return append([]byte{prefixNodeCert}, id...) }

func encodeNodeCert(notAfter time.Time, serial *big.Int) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(notAfter.Unix())), serial.Bytes()...)
}

func decodeNodeCert(v []byte) (time.Time, *big.Int, error) {
	if len(v) < 9 || len(v) > 8+20 {
		return time.Time{}, nil, fmt.Errorf("blockd certificate record of %d bytes", len(v))
	}
	return time.Unix(int64(binary.BigEndian.Uint64(v)), 0), new(big.Int).SetBytes(v[8:]), nil
}

// recordBlockdCert records in b the certificate der metad signed for a
// blockd. When named is false (the join token named no storage ID), it
// first refuses a storage ID that holds a valid certificate already.
func (m *Metad) recordBlockdCert(b *pebble.Batch, op string, id string, named bool, der []byte, now time.Time) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return cairn.E(op, cairn.KindInvalid, "", "parse the signed certificate: "+err.Error())
	}
	if !named {
		v, err := m.st.get(nodeCertKey(id))
		switch {
		case err == nil:
			notAfter, serial, derr := decodeNodeCert(v)
			if derr == nil && now.Before(notAfter) && !m.revoked.IsRevoked(serial) {
				return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf(
					"storage ID %s holds a valid certificate (serial %s, until %s): a join token that names no storage ID cannot take it; "+
						"to re-join that node, use a token naming it: cairn admin -join-token --role blockd --name %s",
					id, trust.SerialString(serial), notAfter.UTC().Format(time.RFC3339), id))
			}
		case !isNotFound(err):
			return err
		}
	}
	return b.Set(nodeCertKey(id), encodeNodeCert(cert.NotAfter, cert.SerialNumber), nil)
}
