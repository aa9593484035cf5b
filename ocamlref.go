package lwt

// OCaml values that Go holds (closures, opaque values, the functions OCaml
// registered by name that Go looked up): each is a generational global root that stubs.c
// made, kept in its bridge's roots set. Everything here runs on the Lwt
// thread but release, which posts from elsewhere, and the cleanup that Go's
// GC runs for a dropped ocamlRef, which posts too. A root is freed once:
// by Release, by that cleanup, or by shutdown (which frees them all), and
// an ocamlRef of a closed bridge is never used again (usable).

/*
#include "ocaml_api.h"
*/
import "C"

import (
	"errors"
	"runtime"
)

// ocamlRoot is one OCaml root; the roots set keeps it, not the ocamlRef,
// so that an ocamlRef dropped by Go can be collected and clean up.
type ocamlRoot struct {
	root  C.lwt_root
	l     *loop // whose roots set keeps it
	freed bool
}

// ocamlRef is Go's reference to an OCaml value. Its root is freed on the
// Lwt thread by release, by a cleanup once Go drops the handle, or by
// shutdown, whichever comes first.
type ocamlRef struct {
	cell   *ocamlRoot
	l      *loop
	pinned bool // the bridge's root to a looked-up function: freed at shutdown only
}

// newOCamlRef roots the OCaml value v: until shutdown if pinned, else
// until Go drops the ocamlRef (or releases it). Lwt thread only.
func newOCamlRef(v value, pinned bool) (*ocamlRef, error) {
	r := C.lwt_root_new(v)
	if r == nil {
		return nil, errors.New("lwt: out of memory rooting an OCaml value")
	}
	l := current.Load()
	cell := &ocamlRoot{root: r, l: l}
	l.roots[cell] = struct{}{}
	l.rootsLive.Add(1)
	h := &ocamlRef{cell: cell, l: l, pinned: pinned}
	// A pinned ref is the bridge's (l keeps it): a cleanup, which reaches l,
	// would keep it reachable, and so l and all it holds, for good.
	if !pinned {
		runtime.AddCleanup(h, func(c *ocamlRoot) { c.l.post(c.free) }, cell)
	}
	return h, nil
}

// usable returns nil if the root may be used now. Lwt thread only.
func (h *ocamlRef) usable() error {
	if h.l != current.Load() || h.l.isClosed() {
		return ErrClosed
	}
	if h.cell.freed {
		return ErrReleased
	}
	return nil
}

func (h *ocamlRef) release() {
	if h.pinned {
		return
	}
	if onLoopThread() {
		h.cell.free()
	} else {
		h.l.post(h.cell.free)
	}
}

// free frees the root once. Lwt thread only.
func (c *ocamlRoot) free() {
	if !c.freed {
		c.freed = true
		delete(c.l.roots, c)
		c.l.rootsLive.Add(-1)
		C.lwt_root_free(c.root)
	}
}

// freeAllRoots frees every root, at shutdown.
func (l *loop) freeAllRoots() {
	for c := range l.roots {
		c.free()
	}
}
