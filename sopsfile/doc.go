// Package sopsfile reads dotenv files that SOPS encrypted for age
// recipients (a Compose .env, or a value file x-berth names) and decrypts
// them with the host's age identity, as `sops decrypt` does: the data key
// opened with filippo.io/age, each value with AES-256-GCM, the MAC
// checked. It is a small strict reader of SOPS's documented format, not
// SOPS itself: importing sops/v3/decrypt would link every cloud KMS SDK
// (+62 MB) for a format of a few hundred lines.
//
// Without the key, Parse and Keys say what a file holds (berth validate):
// which keys are encrypted, to which recipients. Values never appear in
// an error.
//
// Not read (an error, never a silent skip): Shamir key groups, master
// keys other than age, and encrypted values of types other than string
// (SOPS writes dotenv values as strings).
package sopsfile
