package lwt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unsafe"
)

func readGoError(t *testing.T, err error) goErrorWire {
	t.Helper()
	var w goErrorWire
	r := flatReader{b: errorBuffer(err)}
	goErrorCodec.get(&r, unsafe.Pointer(&w))
	if r.err != nil || len(r.b) != 0 {
		t.Fatalf("%v: %v, %d bytes left", err, r.err, len(r.b))
	}
	return w
}

// TestGoErrorsCrossWithTheirKind: what OCaml is told of each kind of Go
// error (lwt_interop.ml's go_exn makes the exception from it).
func TestGoErrorsCrossWithTheirKind(t *testing.T) {
	t.Cleanup(func() { forgetError("test.eof") })
	MustRegisterError("test.eof", io.EOF)
	if err := RegisterError("test.eof", io.ErrUnexpectedEOF); err == nil {
		t.Error("a name registered twice")
	}
	for _, c := range []struct {
		err  error
		want goErrorWire
	}{
		{errors.New("plain\x00text"), goErrorWire{Message: "plain\x00text", Type: "*errors.errorString"}},
		{ErrClosed, goErrorWire{Kind: exnClosed, Message: ErrClosed.Error(), Type: "*errors.errorString"}},
		{fmt.Errorf("at init: %w", ErrNotStarted), goErrorWire{Kind: exnClosed, Message: "at init: " + ErrNotStarted.Error(), Type: "*fmt.wrapError"}},
		{fmt.Errorf("reading: %w", io.EOF), goErrorWire{Kind: exnRegistered, Name: "test.eof", Message: "reading: EOF", Type: "*fmt.wrapError"}},
		{context.Canceled, goErrorWire{Kind: exnCanceled, Message: "context canceled", Type: "*errors.errorString"}},
		{&OCamlError{Exn: "from Go before", goError: true, goType: "*fs.PathError", goStack: "s"},
			goErrorWire{Message: "from Go before", Type: "*fs.PathError", Stack: "s"}},
	} {
		if got := readGoError(t, c.err); got != c.want {
			t.Errorf("%v:\ngot  %+v\nwant %+v", c.err, got, c.want)
		}
	}
	p := readGoError(t, &PanicError{Value: "boom", Stack: []byte("goroutine 1")})
	if p.Message != "panic: boom" || p.Stack != "goroutine 1" || p.Type != "*lwt.PanicError" {
		t.Errorf("a panic: %+v", p)
	}
}

// TestOCamlErrorsAreSeenThrough: errors.Is and errors.As on what OCaml
// raised.
func TestOCamlErrorsAreSeenThrough(t *testing.T) {
	t.Cleanup(func() { forgetError("test.eof2") })
	MustRegisterError("test.eof2", io.EOF)
	w := ocamlErrorWire{Text: "End_of_file", Name: "End_of_file", Registered: "test.eof2", Args: []string{}}
	b, err := ocamlErrorCodec.put(nil, unsafe.Pointer(&w))
	if err != nil {
		t.Fatal(err)
	}
	e := error(ocamlError(b))
	if !errors.Is(e, io.EOF) || errors.Is(e, context.Canceled) || e.Error() != "ocaml: End_of_file" {
		t.Errorf("registered: %v", e)
	}
	wrapped := fmt.Errorf("in a task: %w", &OCamlError{Exn: "Lwt.Canceled", Name: "Lwt.Canceled"})
	if !errors.Is(wrapped, context.Canceled) || errors.Is(wrapped, ErrClosed) {
		t.Error("Lwt.Canceled is not context.Canceled")
	}
	var oe *OCamlError
	if !errors.As(fmt.Errorf("x: %w", &OCamlError{Name: "Failure", Args: []string{"y"}}), &oe) || oe.Args[0] != "y" {
		t.Error("errors.As does not reach the exception")
	}
	if !errors.Is(&OCamlError{Name: "Lwt_interop.Closed"}, ErrClosed) {
		t.Error("Closed is not ErrClosed")
	}
	if bad := ocamlError([]byte{1, 2}); !strings.Contains(bad.Error(), "could not read") {
		t.Errorf("a malformed exception: %v", bad)
	}
	if err := checkErrorCodes("{go_error:kind:i}\n{x:y:s}"); err == nil || !strings.Contains(err.Error(), "different versions") {
		t.Errorf("mismatched error records: %v", err)
	}
}

// forgetError drops a registered error, for a test that runs again.
func forgetError(name string) {
	r := &registeredErrors
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byName, name)
	for i, n := range r.list {
		if n.name == name {
			r.list = append(r.list[:i], r.list[i+1:]...)
			break
		}
	}
}
