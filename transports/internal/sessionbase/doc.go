// Package sessionbase holds what a session of the transports in
// transports/ is apart from how it moves bytes, so that tcp and rdma
// end, queue and answer alike:
//
//	Transport ── Slot[session] ── Get / Sender / Receiver ──► *session
//	                                                            │ embeds
//	Base: Role; End (the first error wins) ─► Done closed, Err ◄┘
//	      then Landed.End, Umsgs.End (outside the lock: a pusher may write)
//	      Msgs, Umsgs (inbox.Queue) ── RecvMessage, RecvUrgent, PushUrgent
//	      Landed (transport.LandedQueue) ── WaitLanded, PushLanded
//	      Answering (transport.Armed) ── Arm
//
// What it does not hold is each transport's own: how a session winds
// its connections down, what it tells the peer (BYE, ABORT), how it
// counts the peer's BYEs, how it reads and writes frames and pages.
// Nothing here is public API: a third-party transport gets the parts it
// needs (transport.Lane, LandedQueue, Armed, Listened) from
// framework/transport.
package sessionbase
