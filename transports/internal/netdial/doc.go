// Package netdial connects a source to its destination for the
// transports in transports/: the destination may start listening after
// the source, so the source keeps dialing, backing off, until its
// connect timeout.
//
//	dial ✗ ─ 20 ms ─ dial ✗ ─ 40 ms ─ … ─ 500 ms ─ dial ✓ → *net.TCPConn
//	                                  └ ctx deadline: ErrClosed, naming the address
package netdial
