package engine

import "time"

// Two waits end a freshly opened transport session that stays silent:
// the destination's for its first message, HELLO or RESUME
// (receiver.first), and a post-copy source's for the answer to its
// RESUME (sender.answer). Each side sends that message as soon as its
// Open returned, so a silent session is most likely dead (its
// connection died right after the transport's handshake) and is closed,
// letting the peer's next try in.
//
// What neither side can tell is a dead session from a peer that is only
// slow, and slow every time by the same margin: a transport whose Open
// returns on one side later than on the other (a third party's that
// registers guest RAM after the connection is up), or a switchover_timeout
// set below the link's round trip. A fixed bound would refuse such a
// peer on every try, and in post-copy that ends, after reconnect_timeout,
// with the guest halted on the destination: lost. So the bound grows:
//
//	silent sessions in a row:   0    1     2     3   ...  6 and more
//	bound:                      S    2S    4S    8S  ...  64S        (S = SwitchoverTimeout)
//
// and any first message (any answer) resets it. One dead session still
// costs S; a peer slower than that by D gets through once the bound
// passed D. What the growth cannot do: let in a peer slower than 64 S,
// or one slower than what is left of reconnect_timeout; and a peer that
// holds the job's credentials can still keep the destination busy, with
// or without it (docs/POSTCOPY.md).

// quietMaxDoublings caps the growth of quietBound at 64 times its base.
const quietMaxDoublings = 6

// quietBound is how long a wait for a fresh session's first message (or
// for the answer to RESUME) lasts after quiet sessions in a row stayed
// silent: base (SwitchoverTimeout, less than an hour) doubled for each
// of them, at most quietMaxDoublings times.
func quietBound(base time.Duration, quiet int) time.Duration {
	return base << min(max(quiet, 0), quietMaxDoublings)
}
