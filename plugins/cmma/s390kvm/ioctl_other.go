//go:build !(linux && s390x)

package s390kvm

func getCMMA(int, *cmmaLog, []byte) error           { return ErrNotS390 }
func setCMMA(int, *cmmaLog, []byte) error           { return ErrNotS390 }
func setDeviceAttr(int, *deviceAttr) error          { return ErrNotS390 }
func getMigrationStatus(fd int, mode *uint64) error { return ErrNotS390 }
