package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// writeCert writes a P-256 certificate and key signed by parent (nil:
// self-signed, a CA) and returns them for signing more.
func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	return writeCertFor(t, dir, name, parent, parentKey, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth)
}

// writeCertFor is writeCert with the extended key usages given.
func writeCertFor(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, usage ...x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: usage}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "src", ca, caKey)
	writeCert(t, dir, "dst", ca, caKey)
	files := job.Security{SourceCert: "src.pem", SourceKey: "src.key", DestinationCert: "dst.pem", DestinationKey: "dst.key"}
	withCA := files
	withCA.CAFile = "ca.pem"
	for name, s := range map[string]job.Security{"minted": {Encryption: true}, "minted, clear": {},
		"operator CA": withCA, "operator, pinned": files} {
		j := &job.Job{File: filepath.Join(dir, "job.hcl"), Security: s}
		src, dst, err := credentials(j)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if src.Plaintext != !s.Encryption || strings.Contains(string(src.Key), string(dst.Key)) {
			t.Errorf("%s: plaintext %v, or the source holds the destination's key", name, src.Plaintext)
		}
		handshake(t, name, src, dst)
	}
	missing := files
	missing.SourceKey = "nope.key"
	if _, _, err := credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: missing}); err == nil {
		t.Error("a missing key file was accepted")
	}
}

// TestCredentialsPinnedChain: without ca_file each side pins the other's
// certificate. The files are chains (leaf, then issuer), as docs/JOBS.md
// allows; a stranger with another certificate from the same issuer is
// refused as the source and as the destination, and the job's own pair
// still authenticates.
func TestCredentialsPinnedChain(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	for _, n := range []string{"src", "dst", "stranger"} {
		writeCert(t, dir, n, ca, caKey)
		leaf, _ := os.ReadFile(filepath.Join(dir, n+".pem"))
		os.WriteFile(filepath.Join(dir, n+"-chain.pem"), append(leaf, caPEM...), 0o600)
	}
	s := job.Security{Encryption: true, SourceCert: "src-chain.pem", SourceKey: "src.key",
		DestinationCert: "dst-chain.pem", DestinationKey: "dst.key"}
	src, dst, err := credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: s})
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, "chain files", src, dst)
	cert, _ := os.ReadFile(filepath.Join(dir, "stranger-chain.pem"))
	key, _ := os.ReadFile(filepath.Join(dir, "stranger.key"))
	strangerSrc := transport.Credentials{Certificate: cert, Key: key, PeerRoots: dst.Certificate, PinPeer: true}
	strangerDst := transport.Credentials{Certificate: cert, Key: key, PeerRoots: src.Certificate, PinPeer: true}
	if _, dstErr := authenticate(t, strangerSrc, dst); dstErr == nil {
		t.Error("the destination took a stranger from the source's issuer for the job's source")
	}
	if srcErr, _ := authenticate(t, src, strangerDst); srcErr == nil {
		t.Error("the source took a stranger from the destination's issuer for the job's destination")
	}
}

// TestCredentialsCABindsPeers: with ca_file each side still accepts only
// the certificate the job names for the other, so an insider holding
// another certificate from the same CA can neither pose as the source nor
// answer a (reconnecting) source as its destination; and migrate refuses
// a job whose certificates do not chain to the CA, or lack the usage
// their role needs, before any side is told anything.
func TestCredentialsCABindsPeers(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	other, otherKey := writeCert(t, dir, "other-ca", nil, nil)
	for _, n := range []string{"src", "dst", "stranger"} {
		writeCert(t, dir, n, ca, caKey)
	}
	writeCert(t, dir, "foreign", other, otherKey)
	writeCertFor(t, dir, "client-only", ca, caKey, x509.ExtKeyUsageClientAuth)
	s := job.Security{Encryption: true, CAFile: "ca.pem", SourceCert: "src.pem", SourceKey: "src.key",
		DestinationCert: "dst.pem", DestinationKey: "dst.key"}
	src, dst, err := credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: s})
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, "CA", src, dst)
	cert, _ := os.ReadFile(filepath.Join(dir, "stranger.pem"))
	key, _ := os.ReadFile(filepath.Join(dir, "stranger.key"))
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	// The stranger trusts the CA, as any holder of its certificates would.
	strangerSrc := transport.Credentials{Certificate: cert, Key: key, PeerRoots: caPEM}
	strangerDst := strangerSrc
	if _, dstErr := authenticate(t, strangerSrc, dst); dstErr == nil {
		t.Error("the destination took another certificate of the job's CA for the job's source")
	}
	if srcErr, _ := authenticate(t, src, strangerDst); srcErr == nil {
		t.Error("the source took another certificate of the job's CA for the job's destination")
	}
	for _, c := range []struct {
		name string
		set  func(*job.Security)
		want string
	}{
		{"source from another CA", func(s *job.Security) { s.SourceCert, s.SourceKey = "foreign.pem", "foreign.key" },
			"the source's certificate foreign.pem does not chain to ca_file ca.pem"},
		{"destination without server-auth", func(s *job.Security) { s.DestinationCert, s.DestinationKey = "client-only.pem", "client-only.key" },
			"the destination's certificate client-only.pem does not chain to ca_file ca.pem"},
	} {
		bad := s
		c.set(&bad)
		_, _, err := credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: bad})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// TestCredentialsCAFileUnusable: a ca_file that holds no certificate (a
// key named by mistake, a DER file) is refused naming the ca_file.
// Before, the check of the source's certificate found it first, and the
// error blamed "the source's certificate ... does not chain to ca_file";
// and a certificate file without a certificate was "the peer sent no
// certificate", as if the handshake had run.
func TestCredentialsCAFileUnusable(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "src", ca, caKey)
	writeCert(t, dir, "dst", ca, caKey)
	s := job.Security{Encryption: true, CAFile: "ca.key", SourceCert: "src.pem", SourceKey: "src.key",
		DestinationCert: "dst.pem", DestinationKey: "dst.key"}
	_, _, err := credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: s})
	if err == nil || !strings.Contains(err.Error(), "ca_file ca.key holds no PEM certificate") || strings.Contains(err.Error(), "source") {
		t.Fatalf("got %v, want an error that names ca_file ca.key, not the source", err)
	}
	s.CAFile, s.SourceCert = "ca.pem", "src.key" // a certificate file without a certificate
	_, _, err = credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: s})
	if err == nil || !strings.Contains(err.Error(), "the source's certificate src.key") || !strings.Contains(err.Error(), "no PEM certificate in it") {
		t.Fatalf("got %v, want an error that says the source's certificate file holds none", err)
	}
}

// handshake authenticates the two sides to each other over TCP.
func handshake(t *testing.T, name string, src, dst transport.Credentials) {
	srcErr, dstErr := authenticate(t, src, dst)
	if srcErr != nil {
		t.Errorf("%s: source: %v", name, srcErr)
	}
	if dstErr != nil {
		t.Errorf("%s: destination: %v", name, dstErr)
	}
}

// authenticate runs both sides of transport.Secure over TCP and returns
// what each side's Secure returned.
func authenticate(t *testing.T, src, dst transport.Credentials) (srcErr, dstErr error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			cfg, _ := dst.TLSConfig(transport.RoleReceive)
			_, err = transport.Secure(ctx, c, transport.RoleReceive, cfg, dst.Plaintext)
		}
		done <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg, _ := src.TLSConfig(transport.RoleSend)
	_, srcErr = transport.Secure(ctx, c, transport.RoleSend, cfg, src.Plaintext)
	return srcErr, <-done
}

// TestRunWarnsWithoutEncryption: a job with encryption = false gets one
// line saying what it gives up, and the report says the same; a job
// with encryption gets neither. The JSON value stays engine.EncryptionOff.
func TestRunWarnsWithoutEncryption(t *testing.T) {
	for _, encrypt := range []bool{false, true} {
		c := newRunCase(t)
		c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
		c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		j := fakeJob(c.src, c.dst)
		j.Security.Encryption = encrypt
		var log strings.Builder
		if _, err := run(context.Background(), time.Now(), j, pluginSet{}, verifyOff, newProgress(io.Discard), &log); err != nil {
			t.Fatalf("encryption %v: %v", encrypt, err)
		}
		if n := strings.Count(log.String(), plaintextWarning); n != map[bool]int{false: 1, true: 0}[encrypt] {
			t.Errorf("encryption %v: the warning came %d times in\n%s", encrypt, n, log.String())
		}
	}
	var b strings.Builder
	printReport(&b, report{Report: engine.Report{Encryption: engine.EncryptionOff}})
	if !strings.Contains(b.String(), "encryption    off: only the handshake was authenticated; "+
		"the frames after it were neither encrypted nor integrity-protected\n") {
		t.Errorf("the report says\n%s", b.String())
	}
	if engine.EncryptionOff != "off (authenticated only)" {
		t.Errorf("the JSON value changed to %q; scripts parse it", engine.EncryptionOff)
	}
}

// TestCredentialsFilesGuarded: the security block's files decide whom
// each side trusts: a certificate file another user could replace would
// make a side pin that user's certificate (and hand the guest to it), a
// key file every user can read lets anyone pose as that side. Such files
// are refused, naming the file, before either side is told anything.
// Until an audit found it, migrate read them wherever they lay.
func TestCredentialsFilesGuarded(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"private files", func(*testing.T, string) {}, ""},
		{"key readable by every user", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "src.key"), 0o644) },
			"src.key (-rw-r--r--) is readable by every user"},
		{"certificate writable by every user", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "dst.pem"), 0o666) },
			"dst.pem (-rw-rw-rw-, owner uid "},
		{"directory writable by every user", func(t *testing.T, dir string) { os.Chmod(dir, 0o777) },
			"writable by every user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(openTempDir(t), "pki")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeCert(t, dir, "src", nil, nil)
			writeCert(t, dir, "dst", nil, nil)
			c.setup(t, dir)
			files := job.Security{SourceCert: "src.pem", SourceKey: "src.key", DestinationCert: "dst.pem", DestinationKey: "dst.key"}
			_, _, err := credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: files})
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestRunWarnsCleartextPages: a job whose transport block accepts
// cleartext pages (transport.CleartextPages, rdma) with encryption on
// gets one line saying that its pages are neither encrypted nor
// integrity-protected: on the path (a provider's TCP connection, a
// fabric) they can be read, changed or injected into guest RAM, which
// "pages in cleartext" alone does not say. With encryption = false the
// plaintext warning already says it, and comes alone; a job without the
// attribute gets neither. The report's line for people says the same;
// the JSON value stays engine.EncryptionControl. Until review U a
// cleartext_pages job ran without a word.
func TestRunWarnsCleartextPages(t *testing.T) {
	for _, c := range []struct {
		name                 string
		encrypt, cleartext   bool
		wantClear, wantPlain int
	}{
		{"encrypted, cleartext pages", true, true, 1, 0},
		{"encrypted", true, false, 0, 0},
		{"plaintext, cleartext pages", false, true, 0, 1},
	} {
		rc := newRunCase(t)
		rc.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
		rc.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		j := fakeJob(rc.src, rc.dst)
		j.Security.Encryption = c.encrypt
		if c.cleartext {
			j.Transport.Config = map[string]any{transport.CleartextPages: true}
		}
		var log strings.Builder
		if _, err := run(context.Background(), time.Now(), j, pluginSet{}, verifyOff, newProgress(io.Discard), &log); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n := strings.Count(log.String(), cleartextPagesWarning); n != c.wantClear {
			t.Errorf("%s: the cleartext pages warning came %d times, want %d, in\n%s", c.name, n, c.wantClear, log.String())
		}
		if n := strings.Count(log.String(), plaintextWarning); n != c.wantPlain {
			t.Errorf("%s: the plaintext warning came %d times, want %d, in\n%s", c.name, n, c.wantPlain, log.String())
		}
	}
	var b strings.Builder
	printReport(&b, report{Report: engine.Report{Encryption: engine.EncryptionControl}})
	if !strings.Contains(b.String(), "encryption    tls1.3 control channel only; pages in cleartext: "+
		"neither encrypted nor integrity-protected on the path\n") {
		t.Errorf("the report says\n%s", b.String())
	}
	if engine.EncryptionControl != "tls1.3 control channel only; pages in cleartext" {
		t.Errorf("the JSON value changed to %q; scripts parse it", engine.EncryptionControl)
	}
}
