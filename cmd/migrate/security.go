package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// credentials returns what each side of the job gets through its own
// control socket: fresh keys minted for this job (the default), or the
// operator's files named in the security block, read here. Each side gets
// its own key and the roots it checks the other against, nothing more.
func credentials(j *job.Job) (src, dst transport.Credentials, err error) {
	s := j.Security
	if s.Minted() {
		return transport.MintCredentials(!s.Encryption)
	}
	files := map[string][]byte{}
	for _, p := range []string{s.SourceCert, s.SourceKey, s.DestinationCert, s.DestinationKey, s.CAFile} {
		if p == "" {
			continue
		}
		path := p
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(j.File), path)
		}
		// Whoever can change a certificate file chooses the peer that
		// side pins; whoever can read a key poses as its side.
		check := job.CheckTrustedFile
		if p == s.SourceKey || p == s.DestinationKey {
			check = job.CheckKeyFile
		}
		if err := check(path); err != nil {
			return src, dst, fmt.Errorf("security block: %w", err)
		}
		if files[p], err = os.ReadFile(path); err != nil {
			return src, dst, fmt.Errorf("security block: %w", err)
		}
	}
	// Each side pins the other's certificate, the first (leaf) one of
	// its file; the issuers after it are not trusted for pinning. With a
	// CA the two certificates must also chain to it, checked here once:
	// the job names both, so no other certificate the CA issued passes.
	// A post-copy reconnect is thereby bound to the first session's
	// peers (an insider with another certificate from the same CA cannot
	// answer it), which CA checking in the handshake alone could not do.
	if s.CAFile != "" {
		if !x509.NewCertPool().AppendCertsFromPEM(files[s.CAFile]) {
			return src, dst, fmt.Errorf("security block: ca_file %s holds no PEM certificate: name the CA's certificate "+
				"(-----BEGIN CERTIFICATE-----), or no ca_file to pin the two certificates alone", s.CAFile)
		}
		for _, c := range []struct {
			side, file string
			role       transport.Role
		}{{"source", s.SourceCert, transport.RoleSend}, {"destination", s.DestinationCert, transport.RoleReceive}} {
			if err := transport.CheckIssued(files[c.file], files[s.CAFile], c.role); err != nil {
				return src, dst, fmt.Errorf("security block: the %s's certificate %s does not chain to ca_file %s: %w", c.side, c.file, s.CAFile, err)
			}
		}
	}
	src = transport.Credentials{Certificate: files[s.SourceCert], Key: files[s.SourceKey], PeerRoots: files[s.DestinationCert],
		PinPeer: true, Plaintext: !s.Encryption}
	dst = transport.Credentials{Certificate: files[s.DestinationCert], Key: files[s.DestinationKey], PeerRoots: files[s.SourceCert],
		PinPeer: true, Plaintext: !s.Encryption}
	if _, err := src.TLSConfig(transport.RoleSend); err != nil {
		return src, dst, fmt.Errorf("security block: source: %w", err)
	}
	if _, err := dst.TLSConfig(transport.RoleReceive); err != nil {
		return src, dst, fmt.Errorf("security block: destination: %w", err)
	}
	return src, dst, nil
}

// plaintextWarning is what migrate says when a job turns encryption off,
// in the words each side's engine logs too (transport.PlaintextRisk).
const plaintextWarning = "migrate: warning: encryption = false: " + transport.PlaintextRisk

// cleartextPagesWarning is what migrate says when a job with encryption
// accepts cleartext pages (transport.CleartextPages: rdma's writes):
// the control channel stays inside TLS, the pages do not, and nothing
// on the path authenticates them either (a provider's TCP connection,
// a fabric's packets), so whoever is on the path can change them or
// write pages of its own into the destination's guest RAM, in the words
// each side's engine logs too (transport.CleartextPagesRisk).
const cleartextPagesWarning = "migrate: warning: " + transport.CleartextPages + " = true: " + transport.CleartextPagesRisk

// securityWarnings says, once each, what the job gives up on the path:
// everything after the handshake (encryption = false), or the pages
// (cleartextPagesWarning; implied by the first, so not said with it).
func securityWarnings(log io.Writer, j *job.Job) {
	cleartext, _ := map[string]any(j.Transport.Config)[transport.CleartextPages].(bool)
	switch {
	case !j.Security.Encryption:
		fmt.Fprintln(log, plaintextWarning)
	case cleartext:
		fmt.Fprintln(log, cleartextPagesWarning)
	}
}

// encryptionText is the report's encryption value for people: the
// value stays as it is for whoever parses the JSON report.
func encryptionText(v string) string {
	switch v {
	case engine.EncryptionOff:
		return "off: only the handshake was authenticated; the frames after it were neither encrypted nor integrity-protected"
	case engine.EncryptionControl:
		return v + ": neither encrypted nor integrity-protected on the path"
	}
	return v
}

// withCredentials returns a copy of args that carries c.
func withCredentials(args api.MigrateArgs, c transport.Credentials) api.MigrateArgs {
	args.Credentials = &c
	return args
}
