package fleet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is the `fleet:` block of the agent config. Only etcd.endpoints is
// required; Defaults fills the rest.
type Config struct {
	Etcd EtcdConfig `yaml:"etcd"`
	// Prefix is the root of every key berth writes (default /berth).
	Prefix string `yaml:"prefix"`
	// Host is this agent's name in the fleet (default the hostname).
	Host string `yaml:"host"`
	// LeaseTTL is the lifetime of the agent's session lease (default
	// 15 s): how long after an agent dies its slots and locks are freed
	// and it shows as gone.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// Timeout bounds every single etcd call (default 5 s, at most the
	// lease TTL).
	Timeout time.Duration `yaml:"timeout"`
}

// EtcdConfig is how to reach etcd.
type EtcdConfig struct {
	Endpoints []string `yaml:"endpoints"`
	// CACert verifies the etcd servers; Cert and Key are the client
	// certificate (both or neither).
	CACert string `yaml:"ca_cert"`
	Cert   string `yaml:"cert"`
	Key    string `yaml:"key"`
	// Username and PasswordFile log in with etcd's own authentication.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

const (
	defaultPrefix   = "/berth"
	defaultLeaseTTL = 15 * time.Second
	defaultTimeout  = 5 * time.Second
)

// Defaults returns c with every unset field defaulted.
func (c Config) Defaults() Config {
	if c.Prefix == "" {
		c.Prefix = defaultPrefix
	}
	c.Prefix = "/" + strings.Trim(c.Prefix, "/")
	if c.Host == "" {
		if h, err := os.Hostname(); err == nil {
			c.Host = h
		}
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = defaultLeaseTTL
	}
	if c.Timeout == 0 {
		c.Timeout = min(defaultTimeout, c.LeaseTTL)
	}
	return c
}

// Validate reports every problem of a defaulted config at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Etcd.Endpoints) == 0 {
		errs = append(errs, errors.New("fleet.etcd.endpoints: at least one endpoint is required (e.g. https://etcd-1:2379)"))
	}
	for _, e := range c.Etcd.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("fleet.etcd.endpoints: %q is not an http:// or https:// URL", e))
		}
	}
	if (c.Etcd.Cert == "") != (c.Etcd.Key == "") {
		errs = append(errs, errors.New("fleet.etcd.cert and fleet.etcd.key: give both or neither"))
	}
	if (c.Etcd.Username == "") != (c.Etcd.PasswordFile == "") {
		errs = append(errs, errors.New("fleet.etcd.username and fleet.etcd.password_file: give both or neither"))
	}
	if err := checkName("fleet.host", c.Host); err != nil {
		errs = append(errs, err)
	}
	if !strings.HasPrefix(c.Prefix, "/") || strings.Contains(c.Prefix, "//") {
		errs = append(errs, fmt.Errorf("fleet.prefix: %q must be an absolute key path like /berth", c.Prefix))
	}
	// etcd's minimum lease TTL is 1.5 election timeouts (1.5 s with
	// default settings); anything shorter is rounded up by the server.
	if c.LeaseTTL < 2*time.Second || c.LeaseTTL > time.Hour {
		errs = append(errs, fmt.Errorf("fleet.lease_ttl: %s is outside 2s..1h", c.LeaseTTL))
	}
	if c.Timeout <= 0 || c.Timeout > c.LeaseTTL {
		errs = append(errs, fmt.Errorf("fleet.timeout: %s must be positive and at most lease_ttl (%s)", c.Timeout, c.LeaseTTL))
	}
	return errors.Join(errs...)
}

// checkName refuses names that cannot be one key segment.
func checkName(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: empty (set it, or make the hostname readable)", field)
	case len(s) > 253:
		return fmt.Errorf("%s: %q is longer than 253 bytes", field, s)
	case strings.ContainsAny(s, "/\x00") || s == "." || s == "..":
		return fmt.Errorf("%s: %q may not contain '/' or NUL, or be . or ..", field, s)
	}
	return nil
}

// tlsConfig builds the client TLS config, or nil for plain http
// endpoints without certificates.
func (c Config) tlsConfig() (*tls.Config, error) {
	tlsWanted := c.Etcd.CACert != "" || c.Etcd.Cert != ""
	for _, e := range c.Etcd.Endpoints {
		tlsWanted = tlsWanted || strings.HasPrefix(e, "https://")
	}
	if !tlsWanted {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.Etcd.CACert != "" {
		pem, err := readFile(c.Etcd.CACert)
		if err != nil {
			return nil, fmt.Errorf("fleet.etcd.ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("fleet.etcd.ca_cert: %s holds no PEM certificate", c.Etcd.CACert)
		}
		cfg.RootCAs = pool
	}
	if c.Etcd.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Etcd.Cert, c.Etcd.Key)
		if err != nil {
			return nil, fmt.Errorf("fleet.etcd.cert/key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// password reads the password file (one line; trailing newline dropped).
func (c Config) password() (string, error) {
	if c.Etcd.PasswordFile == "" {
		return "", nil
	}
	b, err := readFile(c.Etcd.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("fleet.etcd.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}
