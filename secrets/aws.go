package secrets

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// AWSIAM logs in with Vault's aws auth method, IAM type: the agent signs an
// STS GetCallerIdentity request with the host's AWS credentials (the EC2
// instance profile, or AWS_* environment variables), and Vault sends it to
// STS to learn who the host is. No secret leaves the host.
//
// The request is signed here (SigV4, below) instead of with
// vault/api/auth/aws: that package brings the AWS SDK, whose init alone
// costs the idle daemon ~4.5 MiB of its 25 MiB budget.
type AWSIAM struct {
	Role  string `yaml:"role"`  // the Vault role
	Mount string `yaml:"mount"` // default "aws"
	// Region signs for a regional STS endpoint; default us-east-1 with the
	// global endpoint, as Vault expects by default.
	Region string `yaml:"region"`
	// ServerIDHeader is the X-Vault-AWS-IAM-Server-ID value, when the Vault
	// mount requires one (iam_server_id_header_value).
	ServerIDHeader string `yaml:"server_id_header"`
	// STSURL and MetadataURL override AWS's addresses (tests, partitions).
	STSURL      string `yaml:"sts_url"`
	MetadataURL string `yaml:"metadata_url"`
}

type awsCreds struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// loginData builds the body of auth/<mount>/login.
func (a *AWSIAM) loginData(ctx context.Context, now time.Time) (map[string]any, error) {
	creds, err := a.credentials(ctx)
	if err != nil {
		return nil, err
	}
	region, endpoint := a.Region, a.STSURL
	if region == "" {
		region = "us-east-1"
	}
	if endpoint == "" {
		endpoint = "https://sts.amazonaws.com/"
		if a.Region != "" {
			endpoint = "https://sts." + a.Region + ".amazonaws.com/"
		}
	}
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if a.ServerIDHeader != "" {
		h.Set("X-Vault-AWS-IAM-Server-ID", a.ServerIDHeader)
	}
	if err := signV4(h, "POST", endpoint, body, "sts", region, creds, now); err != nil {
		return nil, err
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString
	return map[string]any{
		"role":                    a.Role,
		"iam_http_request_method": "POST",
		"iam_request_url":         b64([]byte(endpoint)),
		"iam_request_body":        b64([]byte(body)),
		"iam_request_headers":     b64(hj),
	}, nil
}

// credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and
// AWS_SESSION_TOKEN), else from the EC2 instance profile through IMDSv2.
func (a *AWSIAM) credentials(ctx context.Context) (awsCreds, error) {
	if id, key := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"); id != "" && key != "" {
		return awsCreds{id, key, os.Getenv("AWS_SESSION_TOKEN")}, nil
	}
	base := a.MetadataURL
	if base == "" {
		base = "http://169.254.169.254"
	}
	c := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path string, hdr map[string]string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
		if err != nil {
			return "", err
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
		return string(b), nil
	}
	token, err := do("PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "300"})
	if err != nil {
		return awsCreds{}, fmt.Errorf("vault: aws credentials: no AWS_* variables and no instance metadata (IMDSv2): %w", err)
	}
	tok := map[string]string{"X-aws-ec2-metadata-token": token}
	roles, err := do("GET", "/latest/meta-data/iam/security-credentials/", tok)
	if err != nil {
		return awsCreds{}, fmt.Errorf("vault: aws credentials: instance profile: %w", err)
	}
	role, _, _ := strings.Cut(strings.TrimSpace(roles), "\n")
	if role == "" {
		return awsCreds{}, errors.New("vault: aws credentials: the instance has no IAM role")
	}
	doc, err := do("GET", "/latest/meta-data/iam/security-credentials/"+url.PathEscape(role), tok)
	if err != nil {
		return awsCreds{}, fmt.Errorf("vault: aws credentials: instance profile %s: %w", role, err)
	}
	var cr struct{ AccessKeyId, SecretAccessKey, Token string }
	if err := json.Unmarshal([]byte(doc), &cr); err != nil || cr.AccessKeyId == "" {
		return awsCreds{}, fmt.Errorf("vault: aws credentials: instance profile %s: unreadable credentials", role)
	}
	return awsCreds{cr.AccessKeyId, cr.SecretAccessKey, cr.Token}, nil
}

// signV4 adds AWS Signature Version 4 headers (X-Amz-Date, the session
// token, Authorization) for a request with the given body; every header
// already in h is signed, with Host.
func signV4(h http.Header, method, rawURL, body, service, region string, c awsCreds, now time.Time) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	amzDate := now.UTC().Format("20060102T150405Z")
	day := amzDate[:8]
	h.Set("X-Amz-Date", amzDate)
	if c.SessionToken != "" {
		h.Set("X-Amz-Security-Token", c.SessionToken)
	}
	canon := map[string]string{"host": u.Host}
	for k, vs := range h {
		canon[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	names := make([]string, 0, len(canon))
	for k := range canon {
		names = append(names, k)
	}
	sort.Strings(names)
	var ch strings.Builder
	for _, k := range names {
		ch.WriteString(k + ":" + strings.TrimSpace(canon[k]) + "\n")
	}
	signed := strings.Join(names, ";")
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	sum := func(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }
	canonical := strings.Join([]string{method, path, canonicalQuery(u.Query()), ch.String(), signed, sum(body)}, "\n")
	scope := day + "/" + region + "/" + service + "/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + sum(canonical)
	mac := func(key []byte, data string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(data))
		return m.Sum(nil)
	}
	key := mac(mac(mac(mac([]byte("AWS4"+c.SecretAccessKey), day), region), service), "aws4_request")
	sig := hex.EncodeToString(mac(key, toSign))
	h.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", c.AccessKeyID, scope, signed, sig))
	return nil
}

func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, awsEscape(k)+"="+awsEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

// awsEscape is RFC 3986 escaping as SigV4 wants it (space as %20).
func awsEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
