// Package inbox holds the engine messages a stream transport received
// and RecvMessage (or RecvUrgent) has not taken yet. The transports in
// transports/ share it so that their flood limits and their delivery
// after the session ended stay the same.
//
//	stream reader ── Push ──► Queue (≤ MaxMsgs, ≤ MaxBytes) ── Recv ──► engine
//	                   │ over a limit: ErrProtocol,
//	                   └ the reader fails the session
//
// Push never blocks, so a stream reader never waits on the engine.
package inbox
