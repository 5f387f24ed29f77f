// Package cert is `cairn cert`: the offline path to a cluster's
// certificates, for operators who run their own PKI or have no admin
// certificate yet: create a CA, issue a certificate (for a new key or a
// certificate request), make a join token, join with one, inspect, and
// revoke. Everything but join works on a CA directory (metad's
// DATA/trust) and needs no running metad.
package cert

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cairn/internal/daemon"
	"cairn/rpc"
	"cairn/trust"
)

const usage = `Usage: cairn cert COMMAND [flags]

  create-ca  --dir DIR                               a new cluster CA in DIR (metad --format makes one in DATA/trust)
  issue      --ca DIR --role ROLE [--name NAME] (--out DIR | --csr FILE --cert FILE) [--ttl 720h]
                                                     sign a certificate for a new key (written to --out) or for a request
  join-token --ca DIR --role ROLE [--name NAME] [--ttl 1h]
                                                     print a join token, as cairn admin -join-token does
  join       --token TOKEN [--metad HOST:PORT] [--certs DIR] [--name NAME]
                                                     get a user, admin or mount certificate from metad with a token
  inspect    FILE|DIR                                print a certificate's role, identity, serial and validity
  revoke     --ca DIR SERIAL [--note TEXT]           add a serial to metad's revocation list (checked at every handshake)

ROLE is blockd, mount, user or admin; user and admin need --name.
`

// Main is `cairn cert`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"create-ca": createCA, "issue": issue, "join-token": joinToken, "join": join, "inspect": inspect, "revoke": revoke,
	}
	f, ok := cmds[args[0]]
	if !ok {
		return daemon.Usage(stderr, "cairn cert", fmt.Sprintf("unknown command %q", args[0]))
	}
	return f(ctx, args[1:], stdout, stderr)
}

func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "cairn cert %s: %v\n", cmd, err)
	return 1
}

func createCA(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn cert create-ca", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "", "directory of the new CA (required)")
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if *dir == "" {
		return daemon.Usage(stderr, "cairn cert create-ca", "--dir DIR is required")
	}
	if _, err := trust.LoadCA(*dir); err == nil {
		return fail(stderr, "create-ca", fmt.Errorf("%s holds a CA already", *dir))
	}
	ca, err := trust.CreateCA(*dir, "")
	if err != nil {
		return fail(stderr, "create-ca", err)
	}
	fmt.Fprintf(stdout, "CA created in %s\nfingerprint %s\n", *dir, ca.Fingerprint())
	return 0
}

// peerFlags reads --role and --name (or a positional NAME).
func peerFlags(fl *flag.FlagSet) (*string, *string) {
	return fl.String("role", "", "blockd, mount, user or admin (required)"), fl.String("name", "", "the identity: a user name, a host, a storage ID")
}

func parsePeer(role, name string, pos []string) (trust.Role, string, error) {
	if name == "" && len(pos) == 1 {
		name = pos[0]
	} else if len(pos) > 0 {
		return "", "", fmt.Errorf("unexpected argument %q", pos[0])
	}
	r, err := trust.ParseRole(role)
	if err != nil {
		return "", "", err
	}
	return r, name, nil
}

func issue(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn cert issue", flag.ContinueOnError)
	fl.SetOutput(stderr)
	caDir := fl.String("ca", "", "the CA directory (metad's DATA/trust) (required)")
	role, name := peerFlags(fl)
	out := fl.String("out", "", "make a new key and write key, certificate and CA here")
	csrFile := fl.String("csr", "", "sign this certificate request (PEM) instead")
	certFile := fl.String("cert", "", "with --csr: write the certificate (PEM) here")
	ttl := fl.Duration("ttl", trust.DefaultCertTTL, "lifetime of the certificate")
	pos, code, ok := daemon.ParseFlags(fl, args, -1, stderr)
	if !ok {
		return code
	}
	r, n, err := parsePeer(*role, *name, pos)
	if err != nil || *caDir == "" || (*out == "") == (*csrFile == "") || *csrFile != "" && *certFile == "" {
		return daemon.Usage(stderr, "cairn cert issue", "give --ca DIR, --role ROLE, --name NAME, and --out DIR or --csr FILE --cert FILE")
	}
	ca, err := trust.LoadCA(*caDir)
	if err != nil {
		return fail(stderr, "issue", err)
	}
	if *out != "" {
		key, err := trust.NewKey()
		if err != nil {
			return fail(stderr, "issue", err)
		}
		der, err := ca.Issue(key.Public(), trust.Peer{Role: r, Name: n}, *ttl, nil)
		if err != nil {
			return fail(stderr, "issue", err)
		}
		c, err := trust.SaveCreds(*out, key, der, ca.Cert.Raw)
		if err != nil {
			return fail(stderr, "issue", err)
		}
		fmt.Fprintf(stdout, "%s: serial %s, until %s, in %s\n", c.Peer, trust.SerialString(c.Cert.SerialNumber), c.Cert.NotAfter.UTC().Format(time.RFC3339), *out)
		return 0
	}
	b, err := os.ReadFile(*csrFile)
	if err != nil {
		return fail(stderr, "issue", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	req, p, err := trust.ParseCSR(b)
	if err != nil {
		return fail(stderr, "issue", err)
	}
	if p.Role != r || p.Name != n {
		return fail(stderr, "issue", fmt.Errorf("the request names %s, not %s/%s", p, r, n))
	}
	der, err := ca.Issue(req.PublicKey, p, *ttl, nil)
	if err != nil {
		return fail(stderr, "issue", err)
	}
	if err := os.WriteFile(*certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fail(stderr, "issue", err)
	}
	fmt.Fprintf(stdout, "%s: certificate written to %s\n", p, *certFile)
	return 0
}

func joinToken(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn cert join-token", flag.ContinueOnError)
	fl.SetOutput(stderr)
	caDir := fl.String("ca", "", "the CA directory (metad's DATA/trust) (required)")
	role, name := peerFlags(fl)
	ttl := fl.Duration("ttl", trust.DefaultJoinTTL, "how long the token lasts")
	pos, code, ok := daemon.ParseFlags(fl, args, -1, stderr)
	if !ok {
		return code
	}
	r, n, err := parsePeer(*role, *name, pos)
	if err != nil || *caDir == "" {
		return daemon.Usage(stderr, "cairn cert join-token", "give --ca DIR and --role ROLE (user and admin: a NAME)")
	}
	ca, err := trust.LoadCA(*caDir)
	if err != nil {
		return fail(stderr, "join-token", err)
	}
	tok, _, err := ca.NewJoinToken(r, n, *ttl)
	if err != nil {
		return fail(stderr, "join-token", err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

func join(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn cert join", flag.ContinueOnError)
	fl.SetOutput(stderr)
	token := fl.String("token", os.Getenv("CAIRN_JOIN"), "the join token (default $CAIRN_JOIN)")
	metad := fl.String("metad", "", "metad address (default $CAIRN_METAD or 127.0.0.1:9000)")
	certs := fl.String("certs", "", "where to keep the key and certificate (default $CAIRN_CERTS, else ~/.cairn/certs)")
	name := fl.String("name", "", "the identity to ask for when the token names none (a mount: its host)")
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if *token == "" {
		return daemon.Usage(stderr, "cairn cert join", "--token TOKEN is required (an admin makes one: cairn admin -join-token --role user NAME)")
	}
	jt, _, _, err := trust.ParseJoinToken(*token)
	if err != nil {
		return fail(stderr, "join", err)
	}
	if *certs == "" {
		*certs = trust.CertsDir()
	}
	n := *name
	if n == "" {
		n, _ = os.Hostname()
	}
	addr := *metad
	if addr == "" {
		addr = daemon.MetadAddr()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := rpc.Join(ctx, addr, *token, trust.Peer{Role: jt.Role, Name: n}, *certs)
	if err != nil {
		return fail(stderr, "join", err)
	}
	fmt.Fprintf(stdout, "joined as %s; key and certificate in %s (until %s)\n", c.Peer, *certs, c.Cert.NotAfter.UTC().Format(time.RFC3339))
	return 0
}

func inspect(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		return daemon.Usage(stderr, "cairn cert inspect", "give one certificate file or credentials directory")
	}
	path := args[0]
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, trust.CertFile)); err == nil {
			path = filepath.Join(path, trust.CertFile)
		} else {
			path = filepath.Join(path, "ca.pem")
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fail(stderr, "inspect", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return fail(stderr, "inspect", fmt.Errorf("%s holds no PEM certificate", path))
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fail(stderr, "inspect", err)
	}
	who := "cluster CA"
	if !c.IsCA {
		p, err := trust.PeerOf(c)
		if err != nil {
			return fail(stderr, "inspect", err)
		}
		who = p.String()
	}
	var sans []string
	for _, u := range c.URIs {
		sans = append(sans, u.String())
	}
	fmt.Fprintf(stdout, "peer:        %s\nserial:      %s\nnot before:  %s\nnot after:   %s\nrenew after: %s\nissuer:      %s\nfingerprint: %s\nURIs:        %s\n",
		who, trust.SerialString(c.SerialNumber), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339),
		trust.RenewAt(c).UTC().Format(time.RFC3339), c.Issuer.CommonName, trust.Fingerprint(c), strings.Join(sans, " "))
	return 0
}

func revoke(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn cert revoke", flag.ContinueOnError)
	fl.SetOutput(stderr)
	caDir := fl.String("ca", "", "the CA directory (metad's DATA/trust) (required)")
	note := fl.String("note", "", "why, kept beside the serial")
	pos, code, ok := daemon.ParseFlags(fl, args, 1, stderr)
	if !ok {
		return code
	}
	if *caDir == "" {
		return daemon.Usage(stderr, "cairn cert revoke", "--ca DIR is required")
	}
	if err := trust.Revoke(*caDir, pos[0], *note); err != nil {
		return fail(stderr, "revoke", err)
	}
	fmt.Fprintf(stdout, "serial %s revoked: metad refuses it from the next handshake\n", pos[0])
	return 0
}
