// Package getg tells goroutines apart in a few instructions: G returns the
// running goroutine's g pointer, as the runtime's getg does, or 0 on an
// architecture this package has no assembly for. A value to compare, never
// to dereference. It is a package of its own because Go assembly is not
// allowed in a package that uses cgo, as lwt does.
package getg
