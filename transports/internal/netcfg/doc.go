// Package netcfg parses the transport-block attributes that every
// network transport in transports/ shares, so that tcp and rdma accept
// and refuse them alike:
//
//	listen          "host:port", required: where the destination listens
//	connect         "host:port", optional: where the source dials instead
//	connect_timeout duration (int64 ns, time.Duration, or a string as in a
//	                job file: "10s", "500 ms", schema.ParseDuration), > 0
//
// Each transport still owns its schema, its other attributes and its
// list of known attributes. Every error is a *schema.Problem naming its
// attribute (or several, errors.Join'ed), of the class
// transport.ErrBadConfig: Open returns it, and Validate (the same parse)
// hands it to `migrate`, which reports it at the attribute's file:line.
package netcfg
