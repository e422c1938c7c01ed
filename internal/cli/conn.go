// Package cli holds what ferry's command-line tools share, so that they behave the same way:
// connection flags, password handling, TLS, and log flags.
//
// One way to connect. Every tool names a server with the flags a MySQL user knows from the mysql
// client — host, port, user, socket, -defaults-file (the [client] section of a my.cnf file),
// -ssl-ca/-ssl-cert/-ssl-key/-ssl-mode — prefixed with the server's role where a tool talks to two
// servers (-source-host, -target-host). Such tools also take a DSN per side (-source, -target).
//
// Passwords never need the command line, where every user of the machine can read them (ps,
// /proc/PID/cmdline). They come, first found first, from a password file, an environment variable,
// the defaults file, or a prompt (-ask-pass). A password given on the command line anyway (the
// -password flag or inside a DSN) still works but prints a warning naming the safer ways. ferry
// never logs a password: ConnConfig.String and every log field leave it out.
package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/term"

	"github.com/ferrykit/ferry"
)

// ConnSpec describes one server a tool connects to.
type ConnSpec struct {
	// Prefix names the server's flags: "source" gives -source-host, -source-port...; empty gives
	// -host, -port... for tools that talk to one server.
	Prefix string
	// PasswordEnv is the environment variable read for the password, e.g. FERRY_SOURCE_PASSWORD or
	// MYSQL_PWD.
	PasswordEnv string
	// DSN registers -<Prefix> taking a go-sql-driver/mysql DSN (user@tcp(host:port)/) as well.
	DSN bool
	// SocketFlag overrides the name of the unix socket flag (default "socket" after the prefix), for
	// a tool whose -socket already means something else.
	SocketFlag string
}

// Conn holds one server's connection flags; Config resolves them after the flag set is parsed.
type Conn struct {
	spec ConnSpec
	fs   *flag.FlagSet

	dsn, host, user, socket string
	port                    int
	password, passwordFile  string
	defaultsFile            string
	sslCA, sslCert, sslKey  string
	sslMode                 string
}

func (s ConnSpec) flag(name string) string {
	if s.Prefix == "" {
		return name
	}
	return s.Prefix + "-" + name
}

func (s ConnSpec) role() string {
	if s.Prefix == "" {
		return "server"
	}
	return s.Prefix + " server"
}

// AddConn registers the connection flags of one server on fs.
func AddConn(fs *flag.FlagSet, spec ConnSpec) *Conn {
	c := &Conn{spec: spec, fs: fs}
	r := spec.role()
	if spec.DSN && spec.Prefix != "" {
		fs.StringVar(&c.dsn, spec.Prefix, "", r+" as a DSN, user@tcp(host:port)/ or user@unix(/path.sock)/ (the other -"+spec.Prefix+"-* flags override its parts)")
	}
	fs.StringVar(&c.host, spec.flag("host"), "127.0.0.1", r+" host")
	fs.IntVar(&c.port, spec.flag("port"), 3306, r+" port")
	fs.StringVar(&c.user, spec.flag("user"), "root", r+" user")
	sock := spec.SocketFlag
	if sock == "" {
		sock = spec.flag("socket")
	}
	fs.StringVar(&c.socket, sock, "", r+" unix socket (instead of host and port)")
	fs.StringVar(&c.passwordFile, spec.flag("password-file"), "", r+" password: the first line of this file")
	fs.StringVar(&c.defaultsFile, spec.flag("defaults-file"), "", r+" my.cnf-style file whose [client] section gives host, port, user, password, socket and ssl-* (flags override it)")
	env := ""
	if spec.PasswordEnv != "" {
		env = "; prefer -" + spec.flag("password-file") + ", $" + spec.PasswordEnv + ", -" + spec.flag("defaults-file") + " or -ask-pass"
	}
	fs.StringVar(&c.password, spec.flag("password"), "", r+" password on the command line: visible to every user of the machine (ps), so it prints a warning"+env)
	fs.StringVar(&c.sslCA, spec.flag("ssl-ca"), "", r+" TLS: CA certificates (PEM) to verify the server with")
	fs.StringVar(&c.sslCert, spec.flag("ssl-cert"), "", r+" TLS: client certificate (PEM)")
	fs.StringVar(&c.sslKey, spec.flag("ssl-key"), "", r+" TLS: client key (PEM)")
	fs.StringVar(&c.sslMode, spec.flag("ssl-mode"), "", r+" TLS: DISABLED, REQUIRED (encrypt), VERIFY_CA (and check the CA) or VERIFY_IDENTITY (and the host name); default VERIFY_CA with -"+spec.flag("ssl-ca")+", REQUIRED with only a client certificate, else DISABLED")
	return c
}

// Prompter asks for passwords (-ask-pass): without echo on a terminal, else one line of its input.
type Prompter struct {
	In  *os.File
	Out io.Writer

	once sync.Once
	r    *bufio.Reader
}

// AddAskPass registers -ask-pass on fs; the returned function gives the Prompter to pass to
// Conn.Config (nil unless -ask-pass was given).
func AddAskPass(fs *flag.FlagSet, in *os.File, out io.Writer) func() *Prompter {
	ask := fs.Bool("ask-pass", false, "prompt for each password not given by a password file, environment variable or defaults file")
	p := &Prompter{In: in, Out: out}
	return func() *Prompter {
		if !*ask {
			return nil
		}
		return p
	}
}

// Password asks for the password of what.
func (p *Prompter) Password(what string) (string, error) {
	fmt.Fprintf(p.Out, "Enter password for %s: ", what)
	defer fmt.Fprintln(p.Out)
	if term.IsTerminal(int(p.In.Fd())) {
		b, err := term.ReadPassword(int(p.In.Fd()))
		return string(b), err
	}
	p.once.Do(func() { p.r = bufio.NewReader(p.In) })
	line, err := p.r.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return "", fmt.Errorf("read the password for %s: %w", what, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// Config resolves the flags into a ferry.ConnConfig. Values come, first found first, from the
// flags given on the command line, the DSN, the defaults file, and the flags' defaults; the
// password from -password-file, the command line (with a warning written to warn), the
// environment, the defaults file, or the prompt (ask, when not nil).
func (c *Conn) Config(ask *Prompter, warn io.Writer) (ferry.ConnConfig, error) {
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	s := c.spec
	cc := ferry.ConnConfig{Host: c.host, Port: c.port, User: c.user, Socket: c.socket}
	var (
		argvPassword, argvFlag string
		fromDefaults           string
		havePassword           bool
	)
	tlsOpts := TLSOptions{CA: c.sslCA, Cert: c.sslCert, Key: c.sslKey, Mode: c.sslMode}
	if c.defaultsFile != "" {
		d, err := ReadDefaultsFile(c.defaultsFile)
		if err != nil {
			return cc, fmt.Errorf("-%s: %w", s.flag("defaults-file"), err)
		}
		apply := func(flagName, key string, to *string) {
			if v, ok := d[key]; ok && !set[s.flag(flagName)] {
				*to = v
			}
		}
		apply("host", "host", &cc.Host)
		apply("user", "user", &cc.User)
		apply("socket", "socket", &cc.Socket)
		apply("ssl-ca", "ssl-ca", &tlsOpts.CA)
		apply("ssl-cert", "ssl-cert", &tlsOpts.Cert)
		apply("ssl-key", "ssl-key", &tlsOpts.Key)
		apply("ssl-mode", "ssl-mode", &tlsOpts.Mode)
		if _, ok := d["ssl-verify-server-cert"]; ok && !set[s.flag("ssl-mode")] && tlsOpts.Mode == "" {
			tlsOpts.Mode = "VERIFY_IDENTITY"
		}
		if v, ok := d["port"]; ok && !set[s.flag("port")] {
			p, err := strconv.Atoi(v)
			if err != nil {
				return cc, fmt.Errorf("-%s %s: port %q: %w", s.flag("defaults-file"), c.defaultsFile, v, err)
			}
			cc.Port = p
		}
		if v, ok := d["password"]; ok {
			fromDefaults, havePassword = v, true
		}
	}
	if c.dsn != "" {
		d, err := mysql.ParseDSN(c.dsn)
		if err != nil {
			return cc, fmt.Errorf("-%s: %w", s.Prefix, err)
		}
		if !set[s.flag("user")] && d.User != "" {
			cc.User = d.User
		}
		switch d.Net {
		case "unix":
			if !set[s.flag("socket")] && !set[s.flag("host")] {
				cc.Socket = d.Addr
			}
		default:
			host, port, err := net.SplitHostPort(d.Addr)
			if err != nil {
				host, port = d.Addr, ""
			}
			if !set[s.flag("host")] && host != "" {
				cc.Host = host
			}
			if p, err := strconv.Atoi(port); err == nil && !set[s.flag("port")] {
				cc.Port = p
			}
		}
		if d.Passwd != "" {
			argvPassword, argvFlag = d.Passwd, "-"+s.Prefix+" (a DSN with a password)"
		}
	}
	if set[s.flag("password")] {
		argvPassword, argvFlag = c.password, "-"+s.flag("password")
	}
	switch {
	case c.passwordFile != "":
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return cc, fmt.Errorf("-%s: %w", s.flag("password-file"), err)
		}
		cc.Password, _, _ = strings.Cut(string(b), "\n")
		cc.Password = strings.TrimSuffix(cc.Password, "\r")
	case argvFlag != "":
		cc.Password = argvPassword
		if warn != nil {
			fmt.Fprintf(warn, "warning: %s puts the password on the command line, where every user of this machine can read it (ps); use %s\n", argvFlag, c.saferWays())
		}
	case s.PasswordEnv != "" && os.Getenv(s.PasswordEnv) != "":
		cc.Password = os.Getenv(s.PasswordEnv)
	case havePassword:
		cc.Password = fromDefaults
	case ask != nil:
		p, err := ask.Password(s.role() + " " + cc.String())
		if err != nil {
			return cc, err
		}
		cc.Password = p
	}
	if argvFlag != "" && c.passwordFile != "" {
		return cc, fmt.Errorf("%s and -%s both give the password; keep -%s", argvFlag, s.flag("password-file"), s.flag("password-file"))
	}
	host := cc.Host
	if cc.Socket != "" {
		host = "localhost"
	}
	t, err := tlsOpts.Config(host)
	if err != nil {
		return cc, fmt.Errorf("%s TLS (-%s): %w", s.role(), s.flag("ssl-mode"), err)
	}
	cc.TLS = t
	return cc, nil
}

func (c *Conn) saferWays() string {
	s := c.spec
	ways := []string{"-" + s.flag("password-file")}
	if s.PasswordEnv != "" {
		ways = append(ways, "$"+s.PasswordEnv)
	}
	return strings.Join(append(ways, "-"+s.flag("defaults-file"), "-ask-pass"), ", ")
}

// Given reports whether any of the server's flags was set.
func (c *Conn) Given() bool {
	given := false
	c.fs.Visit(func(f *flag.Flag) {
		given = given || f.Name == c.spec.Prefix || strings.HasPrefix(f.Name, c.spec.flag(""))
	})
	return given
}

// DSN is the -<prefix> DSN as given (empty when not).
func (c *Conn) DSN() string { return c.dsn }
