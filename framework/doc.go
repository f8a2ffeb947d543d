// Package framework is Ferry's migration engine as a library a VMM embeds.
//
// A VMM implements Source (the VM being migrated away) or Target (the VM
// being migrated in); the engine (framework/engine) moves guest RAM and the
// VMM's state blob between them through a transport (framework/transport),
// usually an out-of-process plugin. Guest RAM is identified by page index:
// the regions of RAM() laid end to end, 4 KiB per page, so page p of a VM
// with regions r0, r1 is in r1 when p >= r0.Size/4096.
//
// Most VMMs do not drive the engine themselves: framework/session starts
// the plugins a job names (transport and hint providers), checks and
// configures them, runs engine.Send or engine.Receive and tears them
// down; the VMM supplies the Source or Target and, optionally, the
// capabilities hint providers call back into (hint.Host).
//
// framework imports nothing from plugins/, transports/, vmm/ or cmd/.
package framework
