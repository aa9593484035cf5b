package lwt

// The entry points stubs.c calls, all on the Lwt thread but
// lwt_go_free_handle, lwt_go_settled_off_thread and lwt_go_cancel when it
// says so (stubs.c checks the thread before calling). Each one recovers its
// panics, so that no Go panic unwinds through a C or OCaml frame, and
// brackets its work on the Lwt thread with loop.arrive and loop.leave,
// which keep the coroutine rule (executor.go). Errors go back in *errOut, a
// malloc'd flat buffer (errors.go) that stubs.c raises as an OCaml
// exception.

/*
#include <stdlib.h>
#include "lwt_interop.h"
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"time"
	"unsafe"
)

// setErr reports err to stubs.c, or on stderr from an entry that cannot
// return an error.
func setErr(errOut *C.struct_lwt_error, err error) {
	if errOut == nil {
		fmt.Fprintf(os.Stderr, "lwt: %v\n", err)
		return
	}
	b := errorBuffer(err)
	errOut.buf, errOut.len = (*C.uchar)(C.CBytes(b)), C.size_t(len(b))
}

// guard turns a panic into a reported error; deferred by every export.
func guard(errOut *C.struct_lwt_error) {
	if r := recover(); r != nil {
		setErr(errOut, &PanicError{Value: r, Stack: debug.Stack()})
	}
}

// leaveGuarded ends an entry (l.arrive(); defer l.leaveGuarded(errOut)):
// a panic in it becomes a reported error, as guard does, then leave
// resumes tasks normally. One deferred call instead of two.
func (l *loop) leaveGuarded(errOut *C.struct_lwt_error) {
	if r := recover(); r != nil {
		setErr(errOut, &PanicError{Value: r, Stack: debug.Stack()})
	}
	l.leave()
}

// entered runs fn inside an entry of the running bridge.
func entered(errOut *C.struct_lwt_error, fn func(l *loop) error) (ok bool) {
	l := current.Load()
	if l == nil {
		if errOut != nil {
			setErr(errOut, ErrNotStarted)
		}
		return false
	}
	l.arrive()
	defer l.leaveGuarded(errOut)
	if err := fn(l); err != nil {
		setErr(errOut, err)
		return false
	}
	return true
}

//export lwt_go_init
func lwt_go_init(api *C.struct_lwt_ocaml, errorCodes *C.char, codesLen C.size_t, errOut *C.struct_lwt_error) C.int {
	defer guard(errOut)
	if err := checkErrorCodes(C.GoStringN(errorCodes, C.int(codesLen))); err != nil {
		setErr(errOut, err)
		return -1
	}
	l, err := start()
	if err != nil {
		setErr(errOut, err)
		return -1
	}
	setAPI(api)
	C.lwt_deferred_call.missed = 0 // a call answered at once after the last bridge's shutdown
	return C.int(l.notify.readFD())
}

//export lwt_go_shutdown
func lwt_go_shutdown(graceNS C.int64_t, errOut *C.struct_lwt_error) C.int {
	ok := entered(errOut, func(l *loop) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(graceNS))
		defer cancel()
		return shutdownBridge(l, ctx, nil)
	})
	if !ok {
		return -1
	}
	return 0
}

// lwt_go_run_pending runs Go's jobs; it returns 1, running nothing, when
// OCaml code that Go called runs a nested Lwt_main.run: jobs run in the
// outermost entry only.
//
//export lwt_go_run_pending
func lwt_go_run_pending() C.int {
	l := current.Load()
	if l == nil {
		return 0
	}
	if l.depth > 0 || inDeferredCall() {
		return 1
	}
	l.arrive()
	defer l.leaveGuarded(nil)
	l.runPending()
	return 0
}

//export lwt_go_lookup
func lwt_go_lookup(name *C.char, nameLen C.size_t, argSig *C.char, argLen C.size_t,
	retSig *C.char, retLen C.size_t, kindOut *C.int, errOut **C.char) (id C.int) {
	// Errors are a message, for Invalid_argument.
	defer func() {
		if r := recover(); r != nil {
			*errOut, id = C.CString(fmt.Sprint("lwt: ", r)), -1
		}
	}()
	n, g, err := lookup(C.GoStringN(name, C.int(nameLen)),
		C.GoStringN(argSig, C.int(argLen)), C.GoStringN(retSig, C.int(retLen)))
	if err != nil {
		*errOut = C.CString(err.Error())
		return -1
	}
	*kindOut = C.int(g.kind)
	return C.int(n)
}

// calledFunc is the Go function that OCaml calls: a registered function's
// binding numbered fn, or, when callback is not 0, the Callback in that
// handle.
func calledFunc(fn C.int, callback C.uintptr_t) (*binding, error) {
	if callback != 0 {
		return calledBinding(callback)
	}
	return bindingByID(int(fn))
}

//export lwt_go_call
func lwt_go_call(fn C.int, callback C.uintptr_t, arg C.lwt_value, resolver C.intptr_t, errOut *C.struct_lwt_error) C.int64_t {
	var id int64
	ok := entered(errOut, func(l *loop) error {
		b, err := calledFunc(fn, callback)
		if err != nil {
			return err
		}
		if l.isClosed() {
			return ErrClosed
		}
		var c *inCall
		id, c = l.newInCall(resolver)
		b.start(arg, c)
		return nil
	})
	if !ok {
		return -1
	}
	return C.int64_t(id)
}

// lwt_go_call_sync runs a sync Go function: the hot path of bind_sync,
// hence no closure but the deferred recover, which turns a panic in the Go
// function into an error like guard does.
//
//export lwt_go_call_sync
func lwt_go_call_sync(fn C.int, callback C.uintptr_t, arg C.lwt_value, result *C.lwt_value, errOut *C.struct_lwt_error) (rc C.int) {
	l := current.Load()
	if l == nil {
		setErr(errOut, ErrNotStarted)
		return -1
	}
	l.arrive()
	defer l.leave()
	defer func() {
		if r := recover(); r != nil {
			setErr(errOut, &PanicError{Value: r, Stack: debug.Stack()})
			rc = -1
		}
	}()
	b, err := calledFunc(fn, callback)
	if err == nil && l.isClosed() {
		err = ErrClosed
	}
	if err == nil {
		var v value
		var outer *holder
		if l.depth > 1 { // nested: the entry around goes on after this call
			outer = l.wd.holder.Load()
		}
		l.wd.hold(b.g.holder)
		v, err = b.call(arg)
		if outer != nil {
			l.wd.hold(outer)
		}
		if err == nil {
			*result = v
			return 0
		}
	}
	setErr(errOut, err)
	return -1
}

//export lwt_go_cancel
func lwt_go_cancel(call C.int64_t, onLwtThread C.int) {
	if onLwtThread == 0 {
		defer guard(nil)
		if l := current.Load(); l != nil {
			l.post(func() { l.cancelInCall(int64(call)) })
		}
		return
	}
	entered(nil, func(l *loop) error {
		l.cancelInCall(int64(call))
		return nil
	})
}

// lwt_go_resolve settles a Go→OCaml call: the hot path of every round trip,
// hence no closures here.
//
//export lwt_go_resolve
func lwt_go_resolve(id C.intptr_t, v C.lwt_value) {
	l := current.Load()
	if l == nil {
		return
	}
	l.arrive()
	defer l.leaveGuarded(nil)
	if s := l.outCalls.take(int(id)); s != nil {
		l.resuming = l.depth == 1 && s.wakesOnlyItsTask()
		s.resolve(v)
	}
}

//export lwt_go_reject
func lwt_go_reject(id C.intptr_t, buf *C.uchar, n C.size_t) {
	defer guard(nil) // around the reading of OCaml's buffer too
	rejectCall(int(id), ocamlError(unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))))
}

// lwt_go_fail rejects a call that a task deferred (func.go's mayDefer) and
// that OCaml rejected at once.
//
//export lwt_go_fail
func lwt_go_fail(id C.intptr_t, out *C.struct_lwt_call_out) {
	defer guard(nil)
	rejectCall(int(id), takeCallError(out)) // frees the error, whatever became of the call
}

// rejectCall settles Go→OCaml call id with OCaml's exception e, in an
// entry from C.
func rejectCall(id int, e *OCamlError) {
	l := current.Load()
	if l == nil {
		return
	}
	l.arrive()
	defer l.leaveGuarded(nil)
	if s := l.outCalls.take(id); s != nil {
		l.resuming = l.depth == 1 && s.wakesOnlyItsTask()
		s.reject(e)
	}
}

//export lwt_go_settled_off_thread
func lwt_go_settled_off_thread(id C.intptr_t) {
	defer guard(nil)
	if l := current.Load(); l != nil {
		l.post(func() { l.failOffThread(int(id)) })
	}
}

//export lwt_go_free_handle
func lwt_go_free_handle(h C.uintptr_t) {
	defer guard(nil)
	freeHandle(uintptr(h))
}

//export lwt_go_stats
func lwt_go_stats(out *C.int64_t, n C.int) {
	defer guard(nil)
	s := CurrentStats()
	vals := []int{s.Roots, s.Handles, s.Jobs, s.Tasks, s.Calls, s.Stalls}
	dst := unsafe.Slice(out, int(n))
	for i := range dst {
		if i < len(vals) {
			dst[i] = C.int64_t(vals[i])
		}
	}
}
