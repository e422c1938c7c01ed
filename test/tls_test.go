package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/cli"
	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/snapshot"
)

// writeCA makes a CA and a server certificate for 127.0.0.1 signed by it, as PEM files in dir.
func writeCA(t *testing.T, dir, name string) sandbox.TLSFiles {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		return k
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, name+"-"+file)
		must(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	caKey, srvKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	must(t, err)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	must(t, err)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	must(t, err)
	return sandbox.TLSFiles{CA: write("ca.pem", "CERTIFICATE", caDER), Cert: write("cert.pem", "CERTIFICATE", srvDER), Key: write("key.pem", "EC PRIVATE KEY", keyDER)}
}

// A source that accepts only encrypted connections (require_secure_transport=ON): ferry copies
// from it and streams its binlog over TLS, verifying the server against the test's CA; without
// TLS, or with another CA, it is refused before anything is copied.
func TestTLSEveryConnectionIncludingTheBinlog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	files := writeCA(t, dir, "server")
	other := writeCA(t, dir, "other")
	src, err := sandbox.Start(ctx, sandbox.Options{TLS: &files, RequireSecureTransport: true})
	must(t, err)
	defer src.Stop()
	must(t, src.Exec(ctx, "CREATE DATABASE sec", "USE sec", "CREATE TABLE sec.t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO sec.t SELECT seq, CONCAT('row ', seq) FROM seq_1_to_500"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS sec"))

	newFerry := func(c ferry.ConnConfig) *ferry.Ferry {
		f, err := ferry.New(ferry.Config{Source: c, Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"sec"}},
			CreateTargetTables: true, Logger: testLogger(t), MaxRetries: 1})
		must(t, err)
		return f
	}
	plain := ferry.ConnConfig{Host: "127.0.0.1", Port: src.Port, User: "root"}
	f := newFerry(plain)
	// MariaDB refuses an unencrypted login under require_secure_transport as access denied; the
	// same user without a password gets in over TLS below, so the transport is what was refused.
	if err := f.Initialize(ctx); err == nil || !strings.Contains(err.Error(), "Access denied") && !strings.Contains(err.Error(), "insecure transport") {
		t.Fatalf("without TLS: %v, want the server's refusal", err)
	}
	f.Close()

	for _, tc := range []struct {
		opts cli.TLSOptions
		ok   bool
	}{
		{cli.TLSOptions{CA: other.CA, Mode: "VERIFY_CA"}, false},
		{cli.TLSOptions{CA: files.CA, Mode: "VERIFY_IDENTITY"}, true},
	} {
		c := plain
		c.TLS, err = tc.opts.Config(c.Host)
		must(t, err)
		f := newFerry(c)
		err := f.Initialize(ctx)
		if !tc.ok {
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("a server certificate from another CA: %v, want a certificate error", err)
			}
			f.Close()
			continue
		}
		must(t, err)
		must(t, f.Start(ctx))
		errc := make(chan error, 1)
		go func() { errc <- f.Run(ctx) }()
		must(t, f.WaitUntilRowCopyIsComplete(ctx))
		must(t, src.Exec(ctx, "UPDATE sec.t SET v = 'over TLS' WHERE id = 7", "DELETE FROM sec.t WHERE id = 8"))
		must(t, f.FlushBinlogAndStopStreaming(ctx))
		must(t, <-errc)
		var cipher, v string
		must(t, f.Source.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(new(string), &cipher))
		if cipher == "" {
			t.Error("the source pool's session is not encrypted")
		}
		f.Close()
		tdb, err := target.DB("sec")
		must(t, err)
		defer tdb.Close()
		var n int
		must(t, tdb.QueryRowContext(ctx, "SELECT COUNT(*), (SELECT v FROM t WHERE id = 7) FROM t").Scan(&n, &v))
		if n != 499 || v != "over TLS" {
			t.Errorf("target: %d rows, row 7 %q; want 499 rows and the change streamed over TLS", n, v)
		}
		// A snapshot reads through its own buffer under the TLS layer (ConnConfig.ReadBufferSize).
		ms, err := snapshot.Take(ctx, snapshot.Options{Source: c, Tables: ferry.TableFilter{Databases: []string{"sec"}},
			Storage: &snapshot.Dir{Path: t.TempDir()}, Logger: testLogger(t)})
		must(t, err)
		if rows := ms[0].Tables[0].Rows; rows != 499 {
			t.Errorf("snapshot over TLS: %d rows, want 499", rows)
		}
	}
}
