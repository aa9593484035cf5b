package lwt

// Errors as they cross, both ways: a Go error reaches OCaml as a structured
// exception (Go_error, Closed, Lwt.Canceled, or the exception OCaml
// registered for it), and an OCaml exception reaches Go as an *OCamlError
// that errors.Is and errors.As see through. Each crosses as a flat buffer
// (flat.go) of a record that lwt_interop.ml declares too; init checks that
// both sides declare the same. Lwt thread, but RegisterError (any
// goroutine).

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sync"
	"unsafe"
)

// PanicError is a Go panic recovered at the boundary: in a task, a
// goroutine started for OCaml, or a Go function called from OCaml. OCaml
// gets Go_error with the panic value as its message and the stack apart.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

// Error returns the panic value and the stack.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v\n\n%s", e.Value, e.Stack) }

// OCamlError is an OCaml exception, raised or carried by a rejected Lwt
// promise, seen from Go. errors.Is(err, context.Canceled) holds for
// Lwt.Canceled, errors.Is(err, ErrClosed) for Lwt_interop.Closed, and
// errors.Is(err, e) for an exception registered with RegisterError and
// Lwt_interop.register_exception.
type OCamlError struct {
	// Exn is Printexc.to_string of the exception; for Lwt_interop.Go_error,
	// its message.
	Exn string
	// Name is the exception's constructor, with its module path:
	// "Not_found", "Failure", "Lwt.Canceled", "Lwt_interop.Go_error".
	Name string
	// Args are its arguments: strings as they are, ints and floats in
	// decimal, any other value "_".
	Args []string
	// Backtrace is Printexc.get_backtrace when the function Go called raised
	// the exception itself and OCaml records backtraces
	// (Printexc.record_backtrace true); "" otherwise.
	Backtrace string

	goError         bool   // the exception is Go_error: Exn is a Go error's text
	goType, goStack string // and the Go error's type and panic stack
	registered      error  // the Go error registered for the exception
}

// Error returns the exception's text, without the backtrace: "ocaml: "
// and Printexc's text, or a Go_error's message unchanged, so that an error
// that crosses back and forth keeps its text.
func (e *OCamlError) Error() string {
	if e.goError {
		return e.Exn
	}
	return "ocaml: " + e.Exn
}

// Is reports whether the exception is Lwt.Canceled (for context.Canceled)
// or Lwt_interop.Closed (for ErrClosed).
func (e *OCamlError) Is(target error) bool {
	switch target {
	case context.Canceled:
		return e.Name == "Lwt.Canceled"
	case ErrClosed:
		return e.Name == "Lwt_interop.Closed"
	}
	return false
}

// Unwrap returns the Go error registered for the exception, if any.
func (e *OCamlError) Unwrap() error { return e.registered }

// registeredErrors maps Go errors and OCaml exceptions to each other, by
// the name both sides register them under.
var registeredErrors struct {
	mu     sync.RWMutex
	list   []namedError // in registration order: the first match wins
	byName map[string]error
}

type namedError struct {
	name string
	err  error
}

// RegisterError maps the Go error err to the OCaml exception that
// Lwt_interop.register_exception registers under name, both ways: a Go
// function's error that errors.Is err reaches OCaml as that exception, and
// that exception reaches Go as an *OCamlError that errors.Is err (for
// example io.EOF and End_of_file). Any goroutine.
func RegisterError(name string, err error) error {
	if err == nil {
		return fmt.Errorf("lwt: RegisterError(%q): a nil error", name)
	}
	r := &registeredErrors
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byName[name]; dup {
		return fmt.Errorf("lwt: an error is already registered as %q", name)
	}
	if r.byName == nil {
		r.byName = map[string]error{}
	}
	r.byName[name] = err
	r.list = append(r.list, namedError{name, err})
	return nil
}

// MustRegisterError is RegisterError that panics on error.
func MustRegisterError(name string, err error) { must(RegisterError(name, err)) }

func registeredName(err error) (string, bool) {
	r := &registeredErrors
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, n := range r.list {
		if errors.Is(err, n.err) {
			return n.name, true
		}
	}
	return "", false
}

func registeredError(name string) error {
	r := &registeredErrors
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byName[name]
}

// goErrorWire is a Go error as it crosses to OCaml (lwt_interop.ml's
// go_error): which exception it becomes, and Go_error's fields. The
// message comes last, so that a message of any size is handed over in
// place (errorParts).
type goErrorWire struct {
	Kind    int64  // one of the exn* below
	Name    string // exnRegistered: the name of the OCaml exception
	Type    string
	Stack   string
	Message string
}

const (
	exnGoError    = 0
	exnClosed     = 1 // Lwt_interop.Closed
	exnRegistered = 2 // the OCaml exception registered under Name
	exnCanceled   = 3 // Lwt.Canceled
)

// ocamlErrorWire is an OCaml exception as it crosses to Go (lwt_interop.ml's
// ocaml_error).
type ocamlErrorWire struct {
	Text       string
	Name       string
	Args       []string
	Registered string // the name the exception is registered under, or ""
	GoError    bool
	GoType     string
	GoStack    string
	Backtrace  string
}

// The OCaml types of the two records, as lwt_interop.ml declares them:
// init checks that OCaml's are the same.
const (
	goErrorCode    = "{go_error:kind:iname:stype:sstack:smessage:s}"
	ocamlErrorCode = "{ocaml_error:text:sname:sargs:Lsregistered:sgo_error:bgo_type:sgo_stack:sbacktrace:s}"
)

var goErrorCodec, ocamlErrorCodec = errorCodec[goErrorWire](goErrorCode), errorCodec[ocamlErrorWire](ocamlErrorCode)

func errorCodec[T any](code string) *flatCodec {
	o, err := parseOType(code)
	if err == nil {
		var c *flatCodec
		if c, err = flatCodecOf(o, reflect.TypeFor[T]()); err == nil {
			return c
		}
	}
	panic(err)
}

// checkErrorCodes compares OCaml's error records with Go's: a program that
// vendored lwt_interop.ml and the Go package of different versions.
func checkErrorCodes(ocaml string) error {
	if want := goErrorCode + "\n" + ocamlErrorCode; ocaml != want {
		return fmt.Errorf("lwt: lwt_interop.ml and the Go package lwt are of different versions (error records %q, Go has %q)",
			ocaml, want)
	}
	return nil
}

// errorBuffer is err as it crosses to OCaml, in one buffer.
func errorBuffer(err error) []byte {
	head, msg := errorParts(err, false)
	return append(head, msg...)
}

// errorParts is err as it crosses to OCaml, in two parts: the buffer but
// the message's bytes, and the message (not copied: it may be large). If
// shutDown, shutdown ended the context of the call that err fails: a
// context.Canceled crosses as Closed, not as OCaml's own Lwt.cancel. A panic
// in err's own methods (Error, Is, As, Unwrap) crosses in its place: the
// promise that err rejects must still be settled.
func errorParts(err error, shutDown bool) (head []byte, msg string) {
	defer func() {
		if r := recover(); r != nil {
			head, msg = errorParts(&PanicError{Value: fmt.Sprintf("a method of the error (%T) panicked: %v", err, r), Stack: debug.Stack()}, false)
		}
	}()
	w := goErrorWire{Message: err.Error(), Type: fmt.Sprintf("%T", err)}
	var p *PanicError
	var o *OCamlError
	if name, ok := registeredName(err); ok {
		w.Kind, w.Name = exnRegistered, name
	} else if errors.Is(err, ErrClosed) || errors.Is(err, ErrNotStarted) || shutDown && errors.Is(err, context.Canceled) {
		w.Kind = exnClosed
	} else if errors.Is(err, context.Canceled) {
		w.Kind = exnCanceled
	}
	if errors.As(err, &p) {
		w.Message, w.Stack = fmt.Sprintf("panic: %v", p.Value), string(p.Stack)
	} else if errors.As(err, &o) && o == err && o.goError { // a Go_error back again: as it was
		w.Type, w.Stack = o.goType, o.goStack
	}
	msg, w.Message = w.Message, ""
	head, _ = goErrorCodec.put(nil, unsafe.Pointer(&w)) // only ints in range and strings: no error
	return le.AppendUint64(head[:len(head)-8], uint64(len(msg))), msg
}

// ocamlError reads an exception that OCaml wrote, or returns an error
// saying that it could not.
func ocamlError(b []byte) *OCamlError {
	var w ocamlErrorWire
	r := flatReader{b: b}
	ocamlErrorCodec.get(&r, unsafe.Pointer(&w))
	if r.err != nil {
		return &OCamlError{Exn: "an exception that Go could not read (" + r.err.Error() + ")"}
	}
	e := &OCamlError{Exn: w.Text, Name: w.Name, Args: w.Args, Backtrace: w.Backtrace,
		goError: w.GoError, goType: w.GoType, goStack: w.GoStack}
	if w.Registered != "" {
		e.registered = registeredError(w.Registered)
	}
	return e
}
