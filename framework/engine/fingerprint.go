package engine

import (
	"crypto/sha256"
	"encoding/hex"
)

// A migration's tag (migrationTag) binds its RESUMEs and the ABORT that
// answers one, so it is never reported. Its fingerprint is:
//
//	tag (16 bytes) ─► SHA-256("ferry migration tag fingerprint\x00" ‖ tag) ─► first 8 bytes ─► 16 hex digits
//
// Both sides of one migration report the same fingerprint once HELLO
// carried the tag (Report.TagFingerprint, Progress.TagFingerprint), also
// without a MigrationID, whose random tag only HELLO shares; two
// migrations report two (barring a 2^-64 chance). A caller that resolves
// a handover pairs two id-less sides by it (cmd/migrate, resolver.pair).
// The fingerprint's prefix is not tagFor's, so it is not the tag of a
// MigrationID either.
//
// What it cannot do: prove anything. It is no secret (with a
// MigrationID it follows from the id, which is reported too), and a VMM
// may report any fingerprint it likes; it tells honest migrations apart.

// TagFingerprintLen is the length of a tag fingerprint: lower-case hex
// digits, two per byte.
const TagFingerprintLen = 16

// fingerprint is t's fingerprint.
func (t migrationTag) fingerprint() string {
	sum := sha256.Sum256(append([]byte("ferry migration tag fingerprint\x00"), t[:]...))
	return hex.EncodeToString(sum[:TagFingerprintLen/2])
}

// ValidTagFingerprint reports whether s has the form of a tag
// fingerprint: TagFingerprintLen lower-case hex digits. A caller checks
// a fingerprint another process reports before it prints or compares it.
func ValidTagFingerprint(s string) bool {
	if len(s) != TagFingerprintLen {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
