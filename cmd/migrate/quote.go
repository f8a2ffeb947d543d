package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The commands migrate prints for an operator to copy (manual steps,
// post-copy's quit) carry paths from the job file, and migration ids
// that a VMM reports: any client of its control socket may have set one
// (at most api.MaxIDLen bytes, any characters). Each is printed so that
// it stays one word of the shell and one address of socat, and an id
// cannot break a line: a newline in it could otherwise print a command
// of its own.

// shellArg is s as one POSIX shell word: as it is when it holds only
// characters no shell treats specially, else in single quotes.
func shellArg(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=@%,:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// socatSpecial are the characters socat (1.7.4 on) reads as address
// syntax, each taken literally after a backslash.
const socatSpecial = `\'",:!()[]{}`

// socatUnix is socat's address of the unix socket at path, as one shell
// word. A path without socat's special characters is left as it is
// (socat before 1.7.4 knows no escapes); one with them is escaped.
func socatUnix(path string) string {
	var b strings.Builder
	for _, r := range path {
		if strings.ContainsRune(socatSpecial, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return shellArg("UNIX-CONNECT:" + b.String())
}

// requestJSON is the control request cmd with args (nil: none) as one
// JSON line for controlLine: a ' in a value is written as JSON's
// \u0027, a newline as \n.
func requestJSON(cmd string, args any) string {
	req, _ := json.Marshal(struct {
		Cmd  string `json:"cmd"`
		Args any    `json:"args,omitempty"`
	}{cmd, args}) // strings only: cannot fail
	return strings.ReplaceAll(string(req), "'", `\u0027`)
}

// controlLine is the shell command that sends one control command (a
// JSON line, without single quotes) to the VMM at sock.
func controlLine(cmd, sock string) string {
	return fmt.Sprintf("echo '%s' | socat - %s", cmd, socatUnix(sock))
}

// idText is a migration id as printed: as it is when it is a plain word
// (migrate's own are), else quoted with Go's escapes; "(no id)" for "".
func idText(id string) string {
	switch {
	case id == "":
		return "(no id)"
	case strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == "":
		return id
	}
	return strconv.Quote(id)
}
