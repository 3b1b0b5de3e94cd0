package secrets

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// AWS's documented SigV4 example (IAM ListUsers, "Signature Version 4
// signing process"): the same inputs must give the published signature.
func TestSignV4_MatchesAWSDocumentedExample(t *testing.T) {
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	now := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	creds := awsCreds{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	if err := signV4(h, "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08", "", "iam", "us-east-1", creds, now); err != nil {
		t.Fatal(err)
	}
	want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
	if got := h.Get("Authorization"); got != want {
		t.Errorf("Authorization\n got %s\nwant %s", got, want)
	}
}

func TestAWSIAM_CredentialsFromInstanceMetadataV2(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "PUT" && r.URL.Path == "/latest/api/token":
			w.Write([]byte("tok"))
		case r.Header.Get("X-aws-ec2-metadata-token") != "tok":
			w.WriteHeader(401) // IMDSv2 only
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			w.Write([]byte("berth-host\n"))
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/berth-host":
			w.Write([]byte(`{"Code":"Success","AccessKeyId":"ASIAHOST","SecretAccessKey":"hostkey","Token":"sess","Expiration":"2026-11-24T10:00:00Z"}`))
		default:
			w.WriteHeader(404)
		}
	}))
	defer imds.Close()
	a := &AWSIAM{Role: "berth", MetadataURL: imds.URL, ServerIDHeader: "vault.example.org"}
	data, err := a.loginData(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(data["iam_request_headers"].(string))
	var hdr map[string][]string
	json.Unmarshal(raw, &hdr)
	auth := strings.Join(hdr["Authorization"], "")
	if !strings.Contains(auth, "Credential=ASIAHOST/") || !strings.Contains(auth, "x-amz-security-token;x-vault-aws-iam-server-id") ||
		hdr["X-Amz-Security-Token"][0] != "sess" || data["role"] != "berth" {
		t.Errorf("login data: %v / headers %v", data, hdr)
	}
	if u, _ := base64.StdEncoding.DecodeString(data["iam_request_url"].(string)); string(u) != "https://sts.amazonaws.com/" {
		t.Errorf("url %s", u)
	}
}
