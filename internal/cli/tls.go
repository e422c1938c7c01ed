package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLSOptions are the mysql client's TLS options.
type TLSOptions struct {
	CA, Cert, Key string
	// Mode is DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY (any case). Empty means VERIFY_CA
	// when CA is set, REQUIRED when only a client certificate is, else DISABLED. PREFERRED (try
	// TLS, fall back to plain text) is refused: a connection that silently loses its encryption is
	// the hazard the option exists for.
	Mode string
}

// Config builds the tls.Config for a server reached as host, or nil when TLS is disabled.
func (o TLSOptions) Config(host string) (*tls.Config, error) {
	mode := strings.ToUpper(strings.TrimSpace(o.Mode))
	if mode == "" {
		switch {
		case o.CA != "":
			mode = "VERIFY_CA"
		case o.Cert != "" || o.Key != "":
			mode = "REQUIRED"
		default:
			mode = "DISABLED"
		}
	}
	if mode == "REQUIRED" && o.CA != "" {
		mode = "VERIFY_CA" // as the mysql client: a CA given is a CA checked
	}
	switch mode {
	case "DISABLED":
		if o.CA != "" || o.Cert != "" || o.Key != "" {
			return nil, errors.New("ssl-mode DISABLED with ssl-ca/ssl-cert/ssl-key given; drop one or the other")
		}
		return nil, nil
	case "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY":
	case "PREFERRED":
		return nil, errors.New("ssl-mode PREFERRED would fall back to an unencrypted connection silently; use REQUIRED, VERIFY_CA or VERIFY_IDENTITY, or DISABLED")
	default:
		return nil, fmt.Errorf("ssl-mode %q: want DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY", o.Mode)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (o.Cert == "") != (o.Key == "") {
		return nil, errors.New("ssl-cert and ssl-key go together")
	}
	if o.Cert != "" {
		pair, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	var roots *x509.CertPool
	if o.CA != "" {
		pem, err := os.ReadFile(o.CA)
		if err != nil {
			return nil, fmt.Errorf("ssl-ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ssl-ca %s: no PEM certificate in it", o.CA)
		}
	}
	switch mode {
	case "REQUIRED":
		cfg.InsecureSkipVerify = true // encrypted, server not authenticated: what REQUIRED means
	case "VERIFY_CA":
		// The chain must lead to the CA; the name in the certificate is not checked.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, roots)
		}
	case "VERIFY_IDENTITY":
		cfg.RootCAs = roots // nil: the system's CAs
		cfg.ServerName = host
	}
	return cfg, nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("tls: server certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}
