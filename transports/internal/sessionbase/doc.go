// Package sessionbase holds what a session of the transports in
// transports/ is apart from how it moves bytes, so that tcp and rdma
// end, queue and answer alike:
//
//	Transport ── Slot[session]: CheckOpen, Put (Open), Get, Sender,
//	             │              Take (Close)
//	             └──► *session ── embeds Base:
//	  Role; End (the first error wins) ─► Done closed, Err;
//	        then Landed.End, Umsgs.End (outside the lock: a pusher may write)
//	  Msgs, Umsgs (inbox.Queue) ── RecvMessage, RecvUrgent (Umsgs.Attach: PushUrgent)
//	  Landed (transport.LandedQueue) ── WaitLanded, PushLanded
//	  Answering (transport.Armed) ── Arm (Answer), Claim (the urgent reader)
//
// MsgHeader checks a message and frames its header for SendMessage and
// SendUrgent. AbortCode says which ABORT code tells the peer of a
// failure found here: CodeProtocol only for the peer's protocol error,
// CodeFailed for this side's (tcp's reads, rdma's channel readers and
// completion pollers, and both PushUrgents use it; a read that fails,
// the connection's end of stream included, is CodeFailed in both
// transports, told on the connections still whole). CutWrite says what
// a write this side's deadline cut leaves (its call's context, or the
// session's wind-down), over TLS with TLS's rules whichever record the
// cut met; each transport still classifies its connection's own
// failures (tcp's connErr, rdma's writeFailed). What it does not
// hold is each transport's
// own: how a session winds its connections down, when it tells the peer
// (BYE, ABORT), how it counts the peer's BYEs, how it
// reads and writes frames and pages, and how it keeps per-page order
// between the bulk and the urgent path (tcp drops an overtaken bulk
// copy under transport.Lane; rdma cannot, its writes land without the
// destination's CPU, so its source orders them: rdma/urgent.go).
// Nothing here is public API: a third-party transport gets the parts it
// needs (transport.Lane, LandedQueue, Armed, Listened) from
// framework/transport.
package sessionbase
