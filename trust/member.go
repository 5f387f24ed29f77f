package trust

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A metad group's members share the cluster CA: whichever member leads
// signs certificates (joins, renewals) and checks join tokens,
// delegation tokens and UI links, all under the CA's keys. A new member
// gets them once, from the group, with a join token of role metad naming
// its address (metad's JoinMetad).

// CAMaterial is what a member of a metad group holds of the cluster CA.
type CAMaterial struct {
	Cert    []byte // the CA certificate, DER
	Key     []byte // its private key, PKCS#8 DER
	JoinKey []byte // the HMAC key of join tokens, delegation tokens and UI links
}

// Material returns ca's material, for a new member of the group.
func (ca *CA) Material() (CAMaterial, error) {
	key, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return CAMaterial{}, fmt.Errorf("cluster CA: %w", err)
	}
	return CAMaterial{Cert: ca.Cert.Raw, Key: key, JoinKey: bytes.Clone(ca.JoinKey)}, nil
}

// InstallCA checks mat (a CA certificate whose SHA-256 is fingerprint,
// hex; a key that matches it; a join key of at least 32 bytes) and
// writes it in dir (created 0700), the certificate last, as CreateCA
// does. Nothing is written when a check fails.
func InstallCA(dir, fingerprint string, mat CAMaterial) (*CA, error) {
	cert, err := x509.ParseCertificate(mat.Cert)
	if err != nil {
		return nil, fmt.Errorf("install the cluster CA: certificate: %w", err)
	}
	if !cert.IsCA || Fingerprint(cert) != fingerprint {
		return nil, errors.New("install the cluster CA: the certificate is not the CA the join token names")
	}
	k, err := x509.ParsePKCS8PrivateKey(mat.Key)
	if err != nil {
		return nil, fmt.Errorf("install the cluster CA: key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok || !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("install the cluster CA: the key does not match the certificate")
	}
	if len(mat.JoinKey) < 32 {
		return nil, errors.New("install the cluster CA: the join key is shorter than 32 bytes")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("install the cluster CA: %w", err)
	}
	_ = os.Remove(filepath.Join(dir, caCertFile))
	for _, f := range []struct {
		name string
		b    []byte
		perm os.FileMode
	}{
		{caKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mat.Key}), 0o600},
		{joinKeyFile, []byte(fmt.Sprintf("%x\n", mat.JoinKey)), 0o600},
		{caCertFile, certPEM(mat.Cert), 0o644},
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.b, f.perm); err != nil {
			return nil, fmt.Errorf("install the cluster CA: %w", err)
		}
	}
	return LoadCA(dir)
}

// ValidMemberAddr checks the address of a metad group's member (its RPC
// address, HOST:PORT, its ID in the group), as a join token names it.
func ValidMemberAddr(s string) error {
	bad := func() error {
		return fmt.Errorf("member address %q is not valid (HOST:PORT, at most 255 bytes)", s)
	}
	if s == "" || len(s) > 255 || !utf8.ValidString(s) ||
		strings.ContainsFunc(s, func(r rune) bool { return r <= 0x20 || r == 0x7f || r == '/' || r == ',' }) {
		return bad()
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return bad()
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return bad()
	}
	return nil
}
