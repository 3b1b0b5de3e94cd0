// Package secrets resolves x-berth secret references (path#field) against
// HashiCorp Vault: auth (token file, AppRole, AWS IAM), token renewal, KV v1/v2
// reads, and a value type that redacts itself wherever it could be printed.
package secrets
