package pagemap

import "fmt"

// decide says, for one region, whether its file holes must be confirmed
// by the VMM's page tables (veto), or why the region cannot be
// classified soundly with method.
//
//	method \ mapping  MAP_SHARED   MAP_PRIVATE   unknown          other
//	auto              holes        holes+veto    holes (contract)  error
//	seek              holes        error         holes (contract)  error
//	pagemap           holes+veto   holes+veto    error            error
//
// "Contract": hint.VM promises MAP_SHARED guest RAM; without the PID or
// the host address there is nothing to check it against.
func decide(method string, i int, kind mapKind, why string) (veto bool, err error) {
	switch {
	case kind == mapOther:
		return false, fmt.Errorf("pagemap: RAM region %d: the VMM's mapping at its host address is %s: %s; "+
			"check the host addresses the VMM reports", i, kind, why)
	case kind == mapShared:
		return method == MethodPagemap, nil
	case kind == mapPrivate && method == MethodSeek:
		return false, badConfig("RAM region %d is mapped MAP_PRIVATE by the VMM: its file's holes do not show "+
			`the guest's writes; use method = "auto" or "pagemap"`, i)
	case kind == mapPrivate:
		return true, nil
	case method == MethodPagemap: // mapUnknown
		return false, badConfig(`RAM region %d: method = "pagemap" needs the VMM's page tables (%s); use "auto" or "seek"`, i, why)
	}
	return false, nil
}
