package plugproc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"time"
)

// The host and a plugin it starts authenticate each other with two
// one-time certificates, both minted by the host (mintPairing): its own,
// whose certificate it puts in PLUGIN_CLIENT_CERT as go-plugin's AutoMTLS
// does, and the plugin's, whose certificate and key it writes into a pipe
// the plugin inherits (descriptor in tlsEnv) and reads once at start
// (ServerTLS). Each side trusts exactly the other's certificate.
//
// Why not go-plugin's AutoMTLS itself: it has each side mint a P-521 key
// and certificate at every start, and the handshake signs and verifies
// with them. Measured here (perf, ferry-transport-tcp started 10 times):
// about 20 ms of CPU per plugin start of the 77 ms host and plugin
// together, a quarter of a migration's setup. P-256 does the same in well
// under a millisecond.
//
// The protocol stays AutoMTLS's on the wire, so both kinds of peer still
// work: a plugin built before this change ignores the pipe, mints its
// own certificate and sends it in the handshake line, and go-plugin's
// client pins that one instead; a plugin started by an older host finds
// no pipe and falls back to AutoMTLS (ServerTLS returns nil).
//
// The plugin's private key passes through the host. That adds no trust:
// the host starts the process and hands it guest RAM; what the
// certificates keep out is every other local client of the socket.

// tlsEnv names the descriptor of the pipe that holds the plugin's
// one-time certificate and key (PEM), after the RAM files, the channel
// and the held sockets (Launch).
const tlsEnv = "FERRY_PLUGIN_TLS"

// clientCertEnv is go-plugin's variable for the host's certificate (PEM).
const clientCertEnv = "PLUGIN_CLIENT_CERT"

// maxTLSPEM bounds what ServerTLS reads from the pipe.
const maxTLSPEM = 16 << 10

// pairing is what mintPairing makes for one plugin start.
type pairing struct {
	host      *tls.Config // the host's client side: its certificate, the plugin's pinned
	hostPEM   []byte      // the host's certificate, for clientCertEnv
	pluginPEM []byte      // the plugin's certificate and key, for the pipe
}

// mintPairing mints the host's and the plugin's one-time certificates.
func mintPairing() (*pairing, error) {
	host, hostPEM, _, err := oneTimeCert()
	if err != nil {
		return nil, err
	}
	plug, plugPEM, plugKeyPEM, err := oneTimeCert()
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(plug.Certificate[0])
	if err != nil {
		return nil, err
	}
	pinned := x509.NewCertPool()
	pinned.AddCert(leaf)
	return &pairing{
		host:      pinnedTLS(host, pinned),
		hostPEM:   hostPEM,
		pluginPEM: append(plugPEM, plugKeyPEM...),
	}, nil
}

// pipe returns the read end of a pipe that holds the plugin's PEM, for
// the plugin to inherit; the caller closes it once the process started.
func (p *pairing) pipe() (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if _, err := w.Write(p.pluginPEM); err != nil { // a few hundred bytes: within the pipe's buffer
		r.Close()
		return nil, err
	}
	return r, nil
}

// oneTimeCert mints a self-signed P-256 certificate for "localhost",
// usable for client and server authentication, and returns it with its
// certificate and key in PEM.
func oneTimeCert() (cert tls.Certificate, certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cert, nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return cert, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"Ferry plugin channel"}},
		DNSNames:              []string{"localhost"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(10, 0, 0), // outlives any plugin process
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed and pinned as its own root
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return cert, nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return cert, nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, keyPEM, nil
}

// ServerTLS is the plugin's side (go-plugin's ServeConfig.TLSProvider):
// its certificate and key from the pipe the host handed over, and only
// the host's certificate (clientCertEnv) trusted. Without the pipe (a
// host from before the pairing) it returns nil, and go-plugin does its
// own AutoMTLS.
func ServerTLS() (*tls.Config, error) {
	v := os.Getenv(tlsEnv)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < FirstFile {
		return nil, fmt.Errorf("%s=%q: want the descriptor of the certificate pipe", tlsEnv, v)
	}
	f := os.NewFile(uintptr(fd), "plugin-tls")
	if f == nil {
		return nil, fmt.Errorf("%s=%q: not a descriptor", tlsEnv, v)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTLSPEM+1))
	f.Close()
	switch {
	case err != nil:
		return nil, fmt.Errorf("read the certificate pipe (fd %d): %w", fd, err)
	case len(b) > maxTLSPEM:
		return nil, fmt.Errorf("certificate pipe (fd %d): more than %d bytes", fd, maxTLSPEM)
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, fmt.Errorf("certificate pipe (fd %d): %w", fd, err)
	}
	hostPEM := os.Getenv(clientCertEnv)
	pool := x509.NewCertPool()
	if hostPEM == "" || !pool.AppendCertsFromPEM([]byte(hostPEM)) {
		return nil, errors.New(clientCertEnv + " holds no certificate: the host cannot be authenticated")
	}
	return pinnedTLS(cert, pool), nil
}

// pinnedTLS is either side's configuration: own is presented, only the
// peer's certificate (peer) is trusted, whichever side dials. Each side
// also serves (the plugin its gRPC server, the host go-plugin's broker,
// which plugins dial back to reach host services such as hint.Host).
func pinnedTLS(own tls.Certificate, peer *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{own},
		RootCAs:      peer,
		ClientCAs:    peer,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   "localhost",
		MinVersion:   tls.VersionTLS13,
	}
}
