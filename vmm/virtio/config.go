package virtio

// CopyConfig serves a config-space read of len(data) bytes at off from a
// device's config bytes, reading zeros past their end.
func CopyConfig(data, cfg []byte, off uint64) {
	clear(data)
	if off < uint64(len(cfg)) {
		copy(data, cfg[off:])
	}
}
