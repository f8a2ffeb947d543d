package transport

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Credentials are one side's trust material for one session, in PEM:
// this side's certificate chain and private key, and what the peer is
// checked against. Either the peer is pinned (PinPeer; what
// MintCredentials makes): it must present exactly the first certificate
// of PeerRoots, its own; or PeerRoots are an operator's CA certificates,
// and any certificate they issued is accepted (like QEMU's tls-creds
// without tls-authz, no host name is checked) on every Open, a post-copy
// reconnect's included: to bind a migration to one peer, pin it (what
// migrate does with an operator's CA, after CheckIssued).
type Credentials struct {
	Certificate []byte `json:"certificate,omitempty"` // PEM, leaf first, then intermediates
	Key         []byte `json:"key,omitempty"`         // PEM, PKCS #8, EC or RSA private key
	PeerRoots   []byte `json:"peer_roots,omitempty"`  // PEM, one or more certificates
	// PinPeer: the first certificate in PeerRoots is the peer's own
	// (leaf), and the peer is accepted only if it presents that very
	// certificate, byte for byte, within its validity dates. No chain is
	// built: the rest of PeerRoots (a chain file's issuers) is ignored,
	// so another certificate from the same issuer is refused.
	PinPeer bool `json:"pin_peer,omitempty"`
	// Plaintext authenticates the peer (a TLS 1.3 handshake) and then
	// moves frames on the bare socket: after the handshake nothing is
	// encrypted or integrity-protected, so anyone on the path can read
	// them and inject or alter frames. Only for a link that is trusted
	// anyway: benchmarks, and test proxies that must see frames. Both
	// sides must agree.
	Plaintext bool `json:"plaintext,omitempty"`
}

// PlaintextRisk says what Plaintext gives up, in the words the engine's
// warning (engine.Send, engine.Receive) and migrate's use. It speaks of
// the session only: who may read the credentials themselves, on their
// way to each side, it cannot know.
const PlaintextRisk = "only the handshake authenticates the peer; the frames after it (pages, the VM's state, control " +
	"messages) are neither encrypted nor integrity-protected, so anyone on the path can read, change or inject them; " +
	"the credentials still keep out whoever is not on the path (use it only on a trusted link)"

// CleartextPages is the boolean attribute of a transport's configuration
// block by which a job accepts that the transport moves page contents
// unencrypted although the credentials ask for encryption (RDMA writes
// cannot be encrypted; the transport's messages stay inside TLS). Nor
// are the pages integrity-protected: whoever is on the path can change
// them or write its own into guest RAM. A
// transport that cannot encrypt pages declares it in its schema and opens
// an encrypted session only with it set to true; the engine then reports
// the session's encryption as covering its control channel only, and
// Send and Receive each log one Warn saying what the pages give up
// (CleartextPagesRisk).
const CleartextPages = "cleartext_pages"

// CleartextPagesRisk says what CleartextPages gives up with encryption
// on, in the words the engine's warning (engine.Send, engine.Receive)
// and migrate's use. It speaks of the pages only: the transport's
// messages, the VM's state among them, stay inside TLS.
const CleartextPagesRisk = "page contents travel outside TLS, neither encrypted nor integrity-protected, so anyone on the " +
	"path can read or change them, or write pages of their own into the destination's guest RAM (use it only on a " +
	"trusted link or fabric)"

// ErrUnauthenticated is the class of a session refused because the peer
// did not prove it holds credentials this side trusts (or refused ours).
var ErrUnauthenticated = errors.New("the peer could not be authenticated")

// Empty reports whether c carries no material at all.
func (c Credentials) Empty() bool {
	return len(c.Certificate) == 0 && len(c.Key) == 0 && len(c.PeerRoots) == 0
}

// TLSConfig checks c and returns the TLS 1.3 configuration for role:
// RoleReceive is the TLS server, RoleSend the client. Both sides present
// their certificate and verify the peer's: pinned (PinPeer) or against
// PeerRoots as CAs (mutual TLS); host names are not checked. Unusable
// credentials are ErrBadConfig with a message that says what is missing.
func (c Credentials) TLSConfig(role Role) (*tls.Config, error) {
	if c.Empty() {
		return nil, fmt.Errorf("%w: no credentials: every session is authenticated, so Open needs this side's certificate and key "+
			"and the peer's trust roots (transport.MintCredentials makes a pair)", ErrBadConfig)
	}
	cert, err := tls.X509KeyPair(c.Certificate, c.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: credentials: this side's certificate and key: %v", ErrBadConfig, err)
	}
	verify, err := c.peerCheck(role)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Verification is ours (verify): the pinned certificate or a
		// chain to PeerRoots, no host name. InsecureSkipVerify only turns
		// off Go's host-name-bound check.
		InsecureSkipVerify:    true,
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verify,
		// No tickets: nothing but the handshake may travel before the
		// plaintext switch (see Secure).
		SessionTicketsDisabled: true,
		// Bulk transfer: full 16 KiB records from the first byte.
		DynamicRecordSizingDisabled: true,
	}
	return cfg, nil
}

// peerCheck returns the check of the peer's certificates for role:
// verifyPinned with PinPeer, else verifyPeer.
func (c Credentials) peerCheck(role Role) (func([][]byte, [][]*x509.Certificate) error, error) {
	if c.PinPeer {
		pin := firstCertificate(c.PeerRoots)
		if pin == nil {
			return nil, fmt.Errorf("%w: credentials: no PEM certificate to pin in the peer's certificate file", ErrBadConfig)
		}
		return verifyPinned(pin), nil
	}
	roots := x509.NewCertPool()
	if len(c.PeerRoots) == 0 || !roots.AppendCertsFromPEM(c.PeerRoots) {
		return nil, fmt.Errorf("%w: credentials: no PEM certificate in the peer's trust roots", ErrBadConfig)
	}
	usage := x509.ExtKeyUsageServerAuth // what the source checks the destination for
	if role == RoleReceive {
		usage = x509.ExtKeyUsageClientAuth
	}
	return verifyPeer(roots, usage), nil
}

// firstCertificate returns the first CERTIFICATE block of pemBytes,
// parsed, or nil if there is none that parses.
func firstCertificate(pemBytes []byte) *x509.Certificate {
	for rest := pemBytes; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}

// verifyPinned accepts a peer whose leaf is pin, byte for byte, within
// its validity dates; the rest of the peer's chain is not looked at.
// The handshake proves the peer holds the pinned certificate's key.
func verifyPinned(pin *x509.Certificate) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("the peer sent no certificate")
		}
		if !bytes.Equal(raw[0], pin.Raw) {
			return errors.New("the peer's certificate is not the pinned one")
		}
		if now := time.Now(); now.Before(pin.NotBefore) || now.After(pin.NotAfter) {
			return fmt.Errorf("the pinned certificate is valid from %v to %v, not now",
				pin.NotBefore.UTC().Format(time.RFC3339), pin.NotAfter.UTC().Format(time.RFC3339))
		}
		return nil
	}
}

// CheckIssued reports whether the certificate chain in chainPEM (leaf
// first, then intermediates) would pass a CA-mode check (PeerRoots =
// rootsPEM, no PinPeer) by a peer in the other role: a chain for
// RoleSend (the TLS client) needs the client-auth usage, one for
// RoleReceive the server-auth usage (or no extended usage at all), and
// it must be valid now.
func CheckIssued(chainPEM, rootsPEM []byte, role Role) error {
	roots := x509.NewCertPool()
	if len(rootsPEM) == 0 || !roots.AppendCertsFromPEM(rootsPEM) {
		return errors.New("no PEM certificate in the CA file")
	}
	var raw [][]byte
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			raw = append(raw, b.Bytes)
		}
	}
	if len(raw) == 0 {
		return errors.New("no PEM certificate in it")
	}
	usage := x509.ExtKeyUsageClientAuth
	if role == RoleReceive {
		usage = x509.ExtKeyUsageServerAuth
	}
	return verifyPeer(roots, usage)(raw, nil)
}

// verifyPeer checks the peer's chain against roots for usage.
func verifyPeer(roots *x509.CertPool, usage x509.ExtKeyUsage) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("the peer sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, b := range raw {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return fmt.Errorf("peer certificate %d: %w", i, err)
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
}
