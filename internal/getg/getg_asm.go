//go:build amd64 || arm64

package getg

// G returns the running goroutine's g pointer.
func G() uintptr
